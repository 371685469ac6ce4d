//! Kafka for the end-to-end tests: the Tansu broker (`SLUICE_TANSU_BIN`,
//! installed by scripts/test) on a free port of 127.0.0.1 with in-memory
//! storage, and kcat (`SLUICE_KCAT`, run with the newer librdkafka in
//! `SLUICE_KCAT_LIBRARY_PATH`) to produce and read messages from outside
//! sluice. A missing tool fails the test with instructions; it never skips.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, wait_for_port};

fn tool(var: &str, what: &str) -> PathBuf {
    let Some(p) = std::env::var_os(var) else {
        panic!(
            "{var} is not set. Run the tests with scripts/test, which installs {what} \
             (scripts/lib/kafka-tools.sh) and sets it."
        );
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "{var}={} does not exist. Run the tests with scripts/test.",
        p.display()
    );
    p
}

/// A running Tansu broker; killed on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
        };
        b.launch();
        b
    }

    fn launch(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tool("SLUICE_TANSU_BIN", "the Tansu broker"))
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
        assert!(
            wait_for_port(addr, Duration::from_secs(20)),
            "the tansu broker did not listen on {addr}"
        );
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the broker (its data is gone with it) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new, empty broker on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Creates `topic` with `partitions` partitions (`tansu topic create`);
    /// a topic that already exists (a producer's metadata request can create
    /// it first) is left as it is.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tool("SLUICE_TANSU_BIN", "the Tansu broker"))
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.address()),
                "--partitions",
                &partitions.to_string(),
                topic,
            ])
            .output()
            .expect("run tansu topic create");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains("already exists") {
            return;
        }
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs kcat with `args` (bounded by `timeout`) and returns its output.
pub fn kcat(args: &[&str], timeout: Duration) -> Output {
    let mut child = Command::new(tool("SLUICE_KCAT", "kcat"))
        .args(args)
        .env(
            "LD_LIBRARY_PATH",
            tool("SLUICE_KCAT_LIBRARY_PATH", "a librdkafka for kcat"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kcat");
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().expect("wait for kcat").is_some() {
            return child.wait_with_output().expect("kcat output");
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("kcat output");
            panic!(
                "kcat {args:?} did not finish within {timeout:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every message of `topic` from the beginning, read by kcat, as
/// (partition, key, value).
pub fn kcat_read_all(broker: &str, topic: &str) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let out = kcat(
        &[
            "-b",
            broker,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            FRAME,
        ],
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "kcat read {topic}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_frames(&out.stdout)
}

/// kcat's output format for [`parse_frames`]: partition, key length and
/// value length as text on a line, then the key and value bytes.
const FRAME: &str = "%p %K %S\n%k%s";

/// Messages printed by kcat with [`FRAME`]; a frame cut short at the end is
/// left out.
fn parse_frames(out: &[u8]) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let mut rest: &[u8] = out;
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            break;
        };
        let header = String::from_utf8_lossy(&rest[..nl]).to_string();
        let mut parts = header.split_whitespace();
        let mut num = || -> i64 {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("bad kcat frame header {header:?}"))
        };
        let (partition, key_len, value_len) = (num() as i32, num(), num());
        rest = &rest[nl + 1..];
        let key_len = key_len.max(0) as usize;
        let value_len = value_len.max(0) as usize;
        if rest.len() < key_len + value_len {
            break;
        }
        let key = rest[..key_len].to_vec();
        let value = rest[key_len..key_len + value_len].to_vec();
        rest = &rest[key_len + value_len..];
        messages.push((partition, key, value));
    }
    messages
}

/// The consumer settings every test receiver uses: short sessions, so
/// joining and leaving a group takes a second or two.
pub const FAST_GROUP_PROPERTIES: &str =
    "{session.timeout.ms: 3000, heartbeat.interval.ms: 300, topic.metadata.refresh.interval.ms: 1000}";

/// A kcat consumer following a topic from the beginning, collecting what it
/// prints until [`Follower::stop`].
pub struct Follower {
    child: Child,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    pub fn start(broker: &str, topic: &str) -> Follower {
        let mut child = Command::new(tool("SLUICE_KCAT", "kcat"))
            .args([
                "-b",
                broker,
                "-C",
                "-t",
                topic,
                "-o",
                "beginning",
                "-q",
                "-u",
                "-f",
                FRAME,
            ])
            .env(
                "LD_LIBRARY_PATH",
                tool("SLUICE_KCAT_LIBRARY_PATH", "a librdkafka for kcat"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kcat");
        let mut stdout = child.stdout.take().expect("kcat stdout");
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 65536];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Follower {
            child,
            out,
            reader: Some(reader),
        }
    }

    /// Bytes printed so far (grows while messages arrive).
    pub fn bytes(&self) -> usize {
        self.out.lock().unwrap().len()
    }

    /// The messages printed so far.
    pub fn messages(&self) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
        parse_frames(&self.out.lock().unwrap())
    }

    /// Stops kcat and returns every message it printed.
    pub fn stop(mut self) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let out = self.out.lock().unwrap().clone();
        parse_frames(&out)
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
