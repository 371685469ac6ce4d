//! Test support: a real Kinesis API server, the npm package `kinesis-local`
//! (installed by `scripts/lib/kinesis-tools.sh`, located through
//! `SLUICE_KINESIS_LOCAL_DIR` and `SLUICE_NODE`). Tests fail when it is
//! missing. The server binds every interface by itself; a `--require`
//! preload makes its listeners use 127.0.0.1.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kinesis::Client;

const LOOPBACK_PRELOAD: &str = r#"
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const cb = typeof args[args.length - 1] === 'function' ? args.pop() : undefined;
  let opts = args[0];
  if (typeof opts === 'number' || typeof opts === 'string') opts = { port: Number(opts) };
  return listen.call(this, { ...opts, host: '127.0.0.1' }, cb);
};
"#;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// A running kinesis-local, killed on drop.
pub struct LocalKinesis {
    child: Option<Child>,
    pub endpoint: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for LocalKinesis {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl LocalKinesis {
    /// A handle on a server another handle started (for clients in other
    /// threads); dropping it leaves the server running.
    pub fn attach(endpoint: &str) -> LocalKinesis {
        LocalKinesis {
            child: None,
            endpoint: endpoint.to_string(),
            _dir: None,
        }
    }

    pub async fn start() -> LocalKinesis {
        let pkg = std::env::var("SLUICE_KINESIS_LOCAL_DIR").expect(
            "SLUICE_KINESIS_LOCAL_DIR is not set: run scripts/test (scripts/lib/kinesis-tools.sh installs kinesis-local)",
        );
        let node = std::env::var("SLUICE_NODE").unwrap_or_else(|_| "node".to_string());
        let dir = tempfile::tempdir().expect("tempdir");
        let preload = dir.path().join("loopback.js");
        std::fs::write(&preload, LOOPBACK_PRELOAD).expect("write preload");
        let plain = free_port();
        let tls = free_port();
        let child = Command::new(node)
            .arg(format!("{pkg}/main.js"))
            .current_dir(dir.path())
            .env("NODE_OPTIONS", format!("--require {}", preload.display()))
            .env("KINESIS_MOCK_PLAIN_PORT", plain.to_string())
            .env("KINESIS_MOCK_TLS_PORT", tls.to_string())
            .env("KINESIS_MOCK_CERT_PATH", format!("{pkg}/server.json"))
            .env("CREATE_STREAM_DURATION", "10ms")
            .env("DELETE_STREAM_DURATION", "10ms")
            .env("SPLIT_SHARD_DURATION", "10ms")
            .env("MERGE_SHARDS_DURATION", "10ms")
            .env("UPDATE_SHARD_COUNT_DURATION", "10ms")
            .env("SHARD_LIMIT", "20")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kinesis-local with node");
        let server = LocalKinesis {
            child: Some(child),
            endpoint: format!("http://127.0.0.1:{plain}"),
            _dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let client = server.client();
        while client.list_streams().send().await.is_err() {
            assert!(Instant::now() < deadline, "kinesis-local did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    pub fn client(&self) -> Client {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .build();
        Client::from_conf(config)
    }

    /// Creates a stream and waits until it is ACTIVE.
    pub async fn create_stream(&self, name: &str, shards: i32) {
        let client = self.client();
        client
            .create_stream()
            .stream_name(name)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = client
                .describe_stream_summary()
                .stream_name(name)
                .send()
                .await
                .expect("DescribeStreamSummary");
            let status = s
                .stream_description_summary()
                .map(|d| d.stream_status().as_str().to_string());
            if status.as_deref() == Some("ACTIVE") {
                return;
            }
            assert!(Instant::now() < deadline, "stream {name} not ACTIVE");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Puts one record.
    pub async fn put(&self, stream: &str, partition_key: &str, data: Vec<u8>) {
        self.client()
            .put_record()
            .stream_name(stream)
            .partition_key(partition_key)
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
    }

    /// The number of open shards of `stream`.
    pub async fn open_shards(&self, stream: &str) -> usize {
        let out = self
            .client()
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        out.shards()
            .iter()
            .filter(|s| {
                s.sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_none()
            })
            .count()
    }
}
