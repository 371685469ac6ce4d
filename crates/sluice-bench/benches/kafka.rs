//! Throughput of the `kafka` exporter and receiver against a local broker,
//! for the figures in BENCHMARKS.md and docs/deployment.md. Run:
//!
//! ```sh
//! SLUICE_TANSU_BIN=... cargo bench -p sluice-bench --bench kafka
//! ```
//!
//! (scripts/test installs Tansu and prints nothing; `source
//! scripts/lib/kafka-tools.sh; kafka_tools_setup` sets the variable.)
//!
//! Spans are the benchmark harness's realistic ones (`sluice_bench::gen`:
//! ~620 bytes encoded, 8 to a trace), 512 to a batch, 64 distinct batches
//! reused, `KAFKA_BENCH_BATCHES` (default 1500) batches per case. The exporter is built by its factory, with the exporter helper's
//! queue (4 senders, blocking when full) in front of it; batches are handed
//! to it as fast as it takes them, and the run ends when the brokers
//! acknowledged every span. The receiver reads back the topic the exporter
//! filled, into a pipeline that counts and accepts at once. CPU is this
//! process's (user + system, every thread: tokio, librdkafka); the broker
//! runs in its own process and its CPU is shown apart. Figures per core are
//! items per CPU-second of this process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    Batch, BuildContext, ComponentId, ConsumeError, Consumer, ConsumerRef, ExporterFactory, Health,
    Kind, Lifecycle, Payload, Signal, SignalConsumers, Telemetry,
};
use sluice_kafka::exporters::kafka::{KafkaExporterConfig, KafkaExporterFactory};
use sluice_kafka::receivers::kafka::{KafkaReceiver, KafkaReceiverConfig};
use sluice_pdata::Bytes;

const SPANS_PER_BATCH: usize = 512;

/// Batches per case: `KAFKA_BENCH_BATCHES`, default 1500 (768,000 spans).
fn batches_per_case() -> usize {
    std::env::var("KAFKA_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}
const PARTITIONS: i32 = 8;

fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks / hz
}

struct Broker {
    child: std::process::Child,
    address: String,
}

impl Broker {
    fn start() -> Broker {
        let bin = std::env::var_os("SLUICE_TANSU_BIN").expect(
            "SLUICE_TANSU_BIN is not set: `source scripts/lib/kafka-tools.sh; kafka_tools_setup`",
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = std::process::Command::new(bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tansu");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, address }
    }

    async fn create_topic(&self, topic: &str) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.address)
            .create()
            .expect("admin");
        admin
            .create_topics(
                &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topic");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctx(kind: Kind, id: &str, telemetry: &Arc<Telemetry>) -> BuildContext {
    BuildContext {
        id: ComponentId::parse(id).expect("id"),
        kind,
        pipeline: None,
        signal: None,
        telemetry: telemetry.clone(),
        health: Health::default(),
        extensions: Default::default(),
        signals: vec![Signal::Traces],
    }
}

fn counter(telemetry: &Telemetry, name: &str) -> f64 {
    telemetry
        .encode()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

struct Result {
    wall: f64,
    cpu: f64,
    broker_cpu: f64,
    spans: f64,
    messages: f64,
    bytes: f64,
}

impl Result {
    fn print(&self, what: &str) {
        println!(
            "{what:<34} {:>9.0} spans/s {:>9.0} msgs/s {:>7.1} MB/s | per CPU-s: {:>9.0} spans {:>9.0} msgs {:>6.1} MB | cpu {:.2}s wall {:.2}s broker cpu {:.2}s",
            self.spans / self.wall,
            self.messages / self.wall,
            self.bytes / self.wall / 1e6,
            self.spans / self.cpu,
            self.messages / self.cpu,
            self.bytes / self.cpu / 1e6,
            self.cpu,
            self.wall,
            self.broker_cpu,
        );
    }
}

async fn export(broker: &Broker, batches: &[Batch], topic: &str, extra: &str) -> Result {
    broker.create_topic(topic).await;
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let config: KafkaExporterConfig = serde_yaml_ng::from_str(&format!(
        "brokers: [{}]\ntopic: {topic}\nsending_queue: {{num_consumers: 4, queue_size: 32, block_on_overflow: true}}\n{extra}",
        broker.address
    ))
    .expect("config");
    let exporter = KafkaExporterFactory
        .create(ctx(Kind::Exporter, "kafka", &telemetry), &config)
        .expect("exporter");
    exporter.start().await.expect("start");
    let want = (batches_per_case() * SPANS_PER_BATCH) as f64;
    let (cpu0, bcpu0, t0) = (
        cpu_seconds(None),
        cpu_seconds(Some(broker.child.id())),
        Instant::now(),
    );
    for i in 0..batches_per_case() {
        exporter
            .consume(batches[i % batches.len()].clone())
            .await
            .expect("consume");
    }
    while counter(&telemetry, "otelcol_exporter_sent_spans_total") < want {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = Result {
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds(None) - cpu0,
        broker_cpu: cpu_seconds(Some(broker.child.id())) - bcpu0,
        spans: want,
        messages: counter(&telemetry, "sluice_kafka_exporter_messages_sent_total"),
        bytes: counter(&telemetry, "sluice_kafka_exporter_sent_bytes_total"),
    };
    exporter.shutdown().await.expect("shutdown");
    r
}

/// Counts spans and accepts.
struct Count(AtomicU64);

#[async_trait]
impl Consumer for Count {
    async fn consume(&self, batch: Batch) -> std::result::Result<(), ConsumeError> {
        self.0.fetch_add(batch.items() as u64, Ordering::Relaxed);
        Ok(())
    }
}

async fn receive(
    broker: &Broker,
    topic: &str,
    encoding: &str,
    messages: f64,
    bytes: f64,
) -> Result {
    let telemetry = Telemetry::new(MetricsLevel::Normal);
    let count = Arc::new(Count(AtomicU64::new(0)));
    let c: ConsumerRef = count.clone();
    let mut consumers = SignalConsumers::default();
    consumers.set(Signal::Traces, c);
    let config: KafkaReceiverConfig = serde_yaml_ng::from_str(&format!(
        "brokers: [{}]\ngroup_id: bench-{topic}\ntopics: [{topic}]\nencoding: {encoding}\ninitial_offset: earliest\nproperties: {{session.timeout.ms: 6000}}",
        broker.address
    ))
    .expect("config");
    let receiver = KafkaReceiver::new(
        &ctx(Kind::Receiver, "kafka", &telemetry),
        &config,
        &consumers,
    )
    .expect("receiver");
    let want = (batches_per_case() * SPANS_PER_BATCH) as u64;
    receiver.start().await.expect("start");
    // Joining the group takes a moment; time from the first span on.
    while count.0.load(Ordering::Relaxed) == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (cpu0, bcpu0, t0) = (
        cpu_seconds(None),
        cpu_seconds(Some(broker.child.id())),
        Instant::now(),
    );
    let first = count.0.load(Ordering::Relaxed) as f64;
    while count.0.load(Ordering::Relaxed) < want {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let r = Result {
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds(None) - cpu0,
        broker_cpu: cpu_seconds(Some(broker.child.id())) - bcpu0,
        spans: want as f64 - first,
        messages: messages * (1.0 - first / want as f64),
        bytes: bytes * (1.0 - first / want as f64),
    };
    receiver.shutdown().await.expect("shutdown");
    r
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let broker = Broker::start();
        let batches: Vec<Batch> = (0..64)
            .map(|v| {
                let req = sluice_bench::gen::traces(SPANS_PER_BATCH, v);
                let bytes = Payload::Traces(req).encode_proto();
                Batch::from_encoded(Signal::Traces, Bytes::from(bytes)).expect("valid")
            })
            .collect();
        if let Some(path) = std::env::var_os("KAFKA_BENCH_DUMP") {
            // One encoded batch, to measure compression ratios with the CLIs.
            std::fs::write(path, batches[0].to_bytes()).expect("write the dump");
            return;
        }
        println!(
            "{} batches of {SPANS_PER_BATCH} spans ({} KB encoded each), {PARTITIONS} partitions, broker Tansu (in memory) on 127.0.0.1",
            batches_per_case(),
            batches[0].encoded_len() / 1000
        );
        let cases = [
            ("otlp_proto", "none", ""),
            ("otlp_proto", "lz4", ""),
            ("otlp_proto", "zstd", ""),
            ("otlp_proto", "none", "partition_traces_by_id: true"),
            ("otlp_json", "none", ""),
            ("haystack_proto", "none", ""),
            ("haystack_json", "none", ""),
        ];
        let mut filled = Vec::new();
        for (encoding, compression, extra) in cases {
            let keyed = if extra.is_empty() { "" } else { "-keyed" };
            let topic = format!("bench-{encoding}-{compression}{keyed}");
            let r = export(
                &broker,
                &batches,
                &topic,
                &format!("encoding: {encoding}\ncompression: {compression}\n{extra}"),
            )
            .await;
            r.print(&format!("export {encoding} {compression}{keyed}"));
            filled.push((topic, encoding, compression, keyed, r.messages, r.bytes));
        }
        for (topic, encoding, compression, keyed, messages, bytes) in filled {
            if compression == "zstd" {
                continue;
            }
            let r = receive(&broker, &topic, encoding, messages, bytes).await;
            r.print(&format!("receive {encoding} {compression}{keyed}"));
        }
    });
}
