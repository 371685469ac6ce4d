use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::{GzDecoder, MultiGzDecoder};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use sluice_core::exporter_helper::Sender;
use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{BuildContext, ComponentId, ExporterFactory, Health, Kind, Telemetry};
use sluice_pdata::{from_json, Batch, Payload, Signal};

use super::{
    timestamp, BackupNames, Compression, FileConfig, FileFactory, FileQueue, FileSender, Format,
    RotationConfig, Writer,
};

fn ctx() -> BuildContext {
    BuildContext {
        id: ComponentId::new("file", None),
        kind: Kind::Exporter,
        pipeline: None,
        signal: None,
        telemetry: Telemetry::new(MetricsLevel::Normal),
        health: Health::default(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    }
}

fn config(path: &Path) -> FileConfig {
    FileConfig {
        path: path.to_path_buf(),
        format: Format::Json,
        compression: Compression::None,
        rotation: None,
        sending_queue: FileQueue::default(),
    }
}

fn traces(n: u64) -> Payload {
    Payload::Traces(ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("checkout".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans: (0..n)
                    .map(|i| Span {
                        trace_id: (0..16).map(|b| b as u8 ^ i as u8).collect(),
                        span_id: (i + 1).to_be_bytes().to_vec(),
                        name: format!("GET /item/{i}"),
                        start_time_unix_nano: 1_700_000_000_000_000_000 + i,
                        end_time_unix_nano: 1_700_000_000_500_000_000 + i,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn metrics() -> Payload {
    Payload::Metrics(ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "queue.depth".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: 42,
                            value: Some(
                                opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(7),
                            ),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

/// Logs whose one record carries `body_len` bytes of text, tagged `tag`.
fn logs(tag: u64, body_len: usize) -> Payload {
    Payload::Logs(ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord {
                    time_unix_nano: tag,
                    body: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(
                            // Varied text so gzip cannot shrink it to nothing.
                            (0..body_len)
                                .map(|i| (b'a' + ((i * 7 + tag as usize * 13) % 26) as u8) as char)
                                .collect(),
                        )),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    })
}

fn log_tag(p: &Payload) -> u64 {
    match p {
        Payload::Logs(r) => r.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano,
        other => panic!("not logs: {other:?}"),
    }
}

fn signal_of_json_line(line: &str) -> Signal {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    if v.get("resourceSpans").is_some() {
        Signal::Traces
    } else if v.get("resourceMetrics").is_some() {
        Signal::Metrics
    } else {
        Signal::Logs
    }
}

fn parse_lines(text: &str) -> Vec<Payload> {
    text.lines()
        .map(|l| from_json(signal_of_json_line(l), l.as_bytes()).unwrap())
        .collect()
}

fn gunzip(path: &Path) -> String {
    let mut out = String::new();
    MultiGzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// Every rotated backup of `path`, oldest first.
fn backups(path: &Path) -> Vec<PathBuf> {
    BackupNames::new(path).list().unwrap()
}

#[tokio::test]
async fn json_lines_parse_back_to_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/out.json");
    let exporter = FileFactory.create(ctx(), &config(&path)).unwrap();
    exporter.start().await.unwrap();
    assert!(
        path.parent().unwrap().is_dir(),
        "parent directories are created"
    );

    let sent = vec![traces(3), metrics(), logs(9, 20)];
    for p in &sent {
        exporter.consume(Batch::new(p.clone())).await.unwrap();
    }
    exporter.shutdown().await.unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.ends_with('\n'));
    let mut got = parse_lines(&text);
    // The queue's workers may write in any order.
    got.sort_by_key(|p| p.signal());
    assert_eq!(got, sent);
    // Ids are hex strings in OTLP/JSON.
    assert!(text.contains(r#""spanId":"0000000000000001""#), "{text}");
}

#[tokio::test]
async fn each_batch_is_flushed_as_a_whole_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let sender = FileSender::new(&ctx(), &config(&path));
    sender.start().await.unwrap();
    sender.send(&Batch::new(traces(2))).await.unwrap();
    // Readable before shutdown.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_lines(&text), vec![traces(2)]);
    sender.send(&Batch::new(logs(1, 10))).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_lines(&text), vec![traces(2), logs(1, 10)]);
    sender.shutdown().await.unwrap();
    // After shutdown the file is closed for good.
    assert!(sender.send(&Batch::new(traces(1))).await.is_err());
}

#[tokio::test]
async fn without_a_queue_the_batch_is_written_when_consume_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    let mut c = config(&path);
    c.sending_queue.enabled = false;
    let exporter = FileFactory.create(ctx(), &c).unwrap();
    exporter.start().await.unwrap();
    for n in 1..=3 {
        exporter.consume(Batch::new(traces(n))).await.unwrap();
        // Nothing waits in a queue: the line is there now.
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), n as usize);
    }
    exporter.shutdown().await.unwrap();
    let parsed: FileConfig =
        serde_yaml_ng::from_str("path: x.json\nsending_queue: {enabled: false}").unwrap();
    assert!(!parsed.sending_queue.enabled);
    assert!(
        serde_yaml_ng::from_str::<FileConfig>("path: x.json\nsending_queue: {queue_size: 5}")
            .is_err()
    );
}

#[tokio::test]
async fn existing_content_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json");
    for n in 1..=2 {
        let sender = FileSender::new(&ctx(), &config(&path));
        sender.start().await.unwrap();
        sender.send(&Batch::new(traces(n))).await.unwrap();
        sender.shutdown().await.unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(parse_lines(&text), vec![traces(1), traces(2)]);
}

#[tokio::test]
async fn gzip_output_decodes_and_is_readable_before_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.json.gz");
    let mut cfg = config(&path);
    cfg.compression = Compression::Gzip;
    let sender = FileSender::new(&ctx(), &cfg);
    sender.start().await.unwrap();
    sender.send(&Batch::new(traces(4))).await.unwrap();

    // Sync-flushed but not finished: a decoder gets the whole line, then
    // hits the end of the unfinished stream.
    let raw = std::fs::read(&path).unwrap();
    let mut partial = Vec::new();
    let mut dec = GzDecoder::new(&raw[..]);
    let mut chunk = [0u8; 4096];
    loop {
        match dec.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => partial.extend_from_slice(&chunk[..n]),
        }
    }
    let partial = String::from_utf8(partial).unwrap();
    assert_eq!(parse_lines(&partial), vec![traces(4)]);

    sender.send(&Batch::new(metrics())).await.unwrap();
    sender.shutdown().await.unwrap();
    // Finished: a strict single-stream decoder reads it to the end.
    let mut all = String::new();
    GzDecoder::new(std::fs::File::open(&path).unwrap())
        .read_to_string(&mut all)
        .unwrap();
    assert_eq!(parse_lines(&all), vec![traces(4), metrics()]);
}

#[tokio::test]
async fn proto_records_are_length_prefixed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.binpb");
    let mut cfg = config(&path);
    cfg.format = Format::Proto;
    let sender = FileSender::new(&ctx(), &cfg);
    sender.start().await.unwrap();
    sender.send(&Batch::new(traces(3))).await.unwrap();
    sender.send(&Batch::new(traces(1))).await.unwrap();
    sender.shutdown().await.unwrap();

    let raw = std::fs::read(&path).unwrap();
    let mut rest = &raw[..];
    let mut got = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        got.push(Payload::decode_proto(Signal::Traces, &rest[4..4 + len]).unwrap());
        rest = &rest[4 + len..];
    }
    assert_eq!(got, vec![traces(3), traces(1)]);
}

#[tokio::test]
async fn rotation_creates_backups_and_keeps_at_most_max_backups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.json");
    let mut cfg = config(&path);
    cfg.rotation = Some(RotationConfig {
        max_megabytes: 1,
        max_backups: 2,
    });
    let sender = FileSender::new(&ctx(), &cfg);
    sender.start().await.unwrap();
    // ~400 KB per record: two fit in 1 MiB, the third starts a new file.
    for tag in 0..9 {
        sender.send(&Batch::new(logs(tag, 400_000))).await.unwrap();
    }
    sender.shutdown().await.unwrap();

    let kept = backups(&path);
    assert_eq!(kept.len(), 2, "{kept:?}");
    let mut tags = Vec::new();
    for file in kept.iter().chain(std::iter::once(&path)) {
        let len = std::fs::metadata(file).unwrap().len();
        assert!(len <= 1024 * 1024, "{} is {len} bytes", file.display());
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("logs") && name.ends_with(".json"),
            "{name}"
        );
        let text = std::fs::read_to_string(file).unwrap();
        tags.extend(parse_lines(&text).iter().map(log_tag));
    }
    // Files of 2 records: 0-1, 2-3, 4-5, 6-7, 8. The two newest backups and
    // the current file remain, in order.
    assert_eq!(tags, vec![4, 5, 6, 7, 8]);
}

#[tokio::test]
async fn rotation_with_gzip_finishes_each_backup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logs.json.gz");
    let mut cfg = config(&path);
    cfg.compression = Compression::Gzip;
    cfg.rotation = Some(RotationConfig {
        max_megabytes: 1,
        max_backups: 0,
    });
    let sender = FileSender::new(&ctx(), &cfg);
    sender.start().await.unwrap();
    // Random-looking text compresses poorly enough to fill 1 MiB quickly.
    for tag in 0..12 {
        let mut state = 0x2545_F491_4F6C_DD1D ^ (tag + 1);
        let body: String = (0..300_000)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (b'0' + (state % 64) as u8) as char
            })
            .collect();
        let mut p = logs(tag, 0);
        if let Payload::Logs(r) = &mut p {
            r.resource_logs[0].scope_logs[0].log_records[0].body = Some(AnyValue {
                value: Some(any_value::Value::StringValue(body)),
            });
        }
        sender.send(&Batch::new(p)).await.unwrap();
    }
    sender.shutdown().await.unwrap();

    let kept = backups(&path);
    assert!(kept.len() >= 2, "expected several rotations, got {kept:?}");
    let mut tags = Vec::new();
    for file in kept.iter().chain(std::iter::once(&path)) {
        // Each file is one complete gzip stream.
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, gunzip(file));
        tags.extend(parse_lines(&text).iter().map(log_tag));
    }
    // max_backups 0 keeps every backup: nothing is lost.
    assert_eq!(tags, (0..12).collect::<Vec<_>>());
}

#[tokio::test]
async fn start_error_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "x").unwrap();
    let path = blocker.join("sub/out.json");
    let exporter = FileFactory.create(ctx(), &config(&path)).unwrap();
    let err = exporter.start().await.unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn backup_names() {
    assert_eq!(timestamp(0), "1970-01-01T00-00-00.000");
    assert_eq!(timestamp(1_700_000_000_123), "2023-11-14T22-13-20.123");
    assert_eq!(timestamp(951_825_600_007), "2000-02-29T12-00-00.007");

    let names = BackupNames::new(Path::new("/var/out/traces.json"));
    assert_eq!(
        names.name(1_700_000_000_123),
        PathBuf::from("/var/out/traces-2023-11-14T22-13-20.123.json")
    );
    assert_eq!(
        names.timestamp_of("traces-2023-11-14T22-13-20.123.json"),
        Some("2023-11-14T22-13-20.123")
    );
    assert_eq!(names.timestamp_of("traces.json"), None);
    assert_eq!(names.timestamp_of("traces-notes.json"), None);
    assert_eq!(
        names.timestamp_of("traces-2023-11-14T22-13-20.123.json.bak"),
        None
    );

    let bare = BackupNames::new(Path::new("out"));
    assert_eq!(bare.name(0), PathBuf::from("./out-1970-01-01T00-00-00.000"));
}

#[test]
fn pruning_deletes_only_the_oldest_backups_of_this_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.json");
    let unrelated = [
        "t-notes.json",
        "other-2023-11-14T22-13-20.123.json",
        "t.json.old",
    ];
    for name in unrelated {
        std::fs::write(dir.path().join(name), "keep").unwrap();
    }
    let names = BackupNames::new(&path);
    for millis in [3, 1, 2] {
        std::fs::write(names.name(millis), "").unwrap();
    }
    let writer = Writer::open(
        &path,
        Format::Json,
        Compression::None,
        Some(RotationConfig {
            max_megabytes: 1,
            max_backups: 2,
        }),
    )
    .unwrap();
    writer.prune();
    assert_eq!(names.list().unwrap(), vec![names.name(2), names.name(3)]);
    for name in unrelated {
        assert!(dir.path().join(name).exists(), "{name} was deleted");
    }
}

#[test]
fn config_defaults_and_validation() {
    let parse = |yaml: &str| -> Result<(), Vec<String>> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        parse_config::<FileConfig>(&v)
            .map(drop)
            .map_err(|e| e.into_iter().map(|e| e.path).collect())
    };
    let cfg: FileConfig = serde_yaml_ng::from_str("path: out.json").unwrap();
    assert_eq!(cfg, config(Path::new("out.json")));

    let cfg: FileConfig = serde_yaml_ng::from_str("path: out.json\nrotation:\n").unwrap();
    assert_eq!(cfg.rotation, Some(RotationConfig::default()));
    assert_eq!(
        RotationConfig::default(),
        RotationConfig {
            max_megabytes: 100,
            max_backups: 100
        }
    );
    let cfg: FileConfig = serde_yaml_ng::from_str(
        "path: o\nformat: proto\ncompression: gzip\nrotation: {max_backups: 3}",
    )
    .unwrap();
    assert_eq!(cfg.format, Format::Proto);
    assert_eq!(cfg.compression, Compression::Gzip);
    assert_eq!(
        cfg.rotation,
        Some(RotationConfig {
            max_megabytes: 100,
            max_backups: 3
        })
    );

    assert_eq!(parse("path: out.json"), Ok(()));
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("format: json").unwrap();
    let missing = parse_config::<FileConfig>(&v).err().unwrap();
    assert!(
        missing[0].message.contains("missing field `path`"),
        "{missing:?}"
    );
    assert_eq!(parse("path: ''"), Err(vec!["path".to_string()]));
    assert_eq!(
        parse("path: a\nformat: xml"),
        Err(vec!["format".to_string()])
    );
    assert_eq!(
        parse("path: a\ncompression: zstd"),
        Err(vec!["compression".to_string()])
    );
    assert_eq!(
        parse("path: a\nrotation: {max_megabytes: 0}"),
        Err(vec!["rotation::max_megabytes".to_string()])
    );
    assert!(parse("path: a\nrotation: {max_days: 3}").is_err());
    assert!(parse("path: a\nappend: true").is_err());
}

#[test]
fn factory_shape() {
    assert_eq!(FileFactory.type_name(), "file");
    assert_eq!(FileFactory.signals(), &Signal::ALL);
    let _: Arc<FileFactory> = Arc::new(FileFactory);
}
