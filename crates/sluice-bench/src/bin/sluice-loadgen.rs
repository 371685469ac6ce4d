//! `sluice-loadgen`: sends pre-encoded OTLP export requests over gRPC or
//! HTTP/protobuf and prints one JSON line with what was accepted and how
//! fast.
//!
//! A pool of `--pool` distinct requests of `--batch` items each is built and
//! encoded once; every request sent gets unique trace and span ids by
//! rewriting id bytes while copying (see `sluice_bench::template`).
//!
//! `--concurrency` workers, each with its own connection, send for
//! `--warmup` + `--duration`. Without `--rate` each worker sends its next
//! request as soon as the previous one is answered (closed loop); with
//! `--rate` (items/s in total) each worker sends on a fixed schedule and
//! latency is measured from the scheduled time, so a slow server is not
//! hidden by a sender that waited for it.
//!
//! Requests answered during the measured window (after the warm-up) give
//! `items_per_s` and the latency percentiles; `total` counts the whole run,
//! warm-up and the requests still in flight at the end included, to compare
//! with what a sink received. `--watch-pid` samples other processes' CPU
//! time over the same window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::BytesMut;
use clap::{Parser, ValueEnum};
use serde_json::json;
use sluice_bench::codec::{Outgoing, SendCodec};
use sluice_bench::latency::Latencies;
use sluice_bench::procfs;
use sluice_bench::template::{pool, Template};
use sluice_bench::wire::Signal;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Protocol {
    Grpc,
    Http,
}

/// Sends pre-encoded OTLP requests and reports throughput and latency.
#[derive(Debug, Parser)]
#[command(name = "sluice-loadgen", version)]
struct Args {
    /// traces, metrics or logs.
    #[arg(long, default_value = "traces")]
    signal: Signal,
    #[arg(long, value_enum, default_value = "grpc")]
    protocol: Protocol,
    /// gRPC: host:port or http://host:port. HTTP: base URL
    /// (http://host:port; the signal's /v1/... path is appended unless the
    /// URL already has a path).
    #[arg(long)]
    endpoint: String,
    /// Items (spans, metric data points, log records) per request.
    #[arg(long, default_value_t = 512)]
    batch: usize,
    /// Concurrent senders, each with its own connection and at most one
    /// request in flight.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Sending before the measured window starts.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Paced sending at this many items per second in total; open to the
    /// server's speed (closed loop) if not given.
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct pre-encoded requests to cycle through.
    #[arg(long, default_value_t = 16)]
    pool: usize,
    /// Deadline of one request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Report the CPU seconds this process used during the measured window
    /// (repeatable).
    #[arg(long = "watch-pid")]
    watch_pids: Vec<u32>,
    /// A sluice-sink's `GET /stats` URL: its `items_total` is read at the
    /// start and end of the measured window, giving the rate that came out
    /// of the collector under test.
    #[arg(long)]
    sink_stats: Option<String>,
}

enum Sender {
    Grpc {
        client: tonic::client::Grpc<Channel>,
        path: PathAndQuery,
        timeout: Duration,
    },
    Http {
        client: reqwest::Client,
        url: String,
    },
}

impl Sender {
    fn new(args: &Args) -> anyhow::Result<Sender> {
        match args.protocol {
            Protocol::Grpc => {
                let uri = if args.endpoint.contains("://") {
                    args.endpoint.clone()
                } else {
                    format!("http://{}", args.endpoint)
                };
                let channel = Endpoint::from_shared(uri.clone())
                    .with_context(|| format!("bad gRPC endpoint {uri}"))?
                    .tcp_nodelay(true)
                    .connect_timeout(args.timeout)
                    .connect_lazy();
                let client = tonic::client::Grpc::new(channel)
                    .max_decoding_message_size(64 * 1024 * 1024)
                    .max_encoding_message_size(usize::MAX);
                Ok(Sender::Grpc {
                    client,
                    path: PathAndQuery::from_static(args.signal.grpc_path()),
                    timeout: args.timeout,
                })
            }
            Protocol::Http => {
                let base = args.endpoint.trim_end_matches('/');
                let has_path = base
                    .split_once("://")
                    .map(|(_, rest)| rest.contains('/'))
                    .unwrap_or(false);
                if !base.starts_with("http://") {
                    bail!("the HTTP endpoint must be an http:// URL, got {base}");
                }
                let url = if has_path {
                    base.to_string()
                } else {
                    format!("{base}{}", args.signal.http_path())
                };
                let client = reqwest::Client::builder()
                    .timeout(args.timeout)
                    .tcp_nodelay(true)
                    .no_proxy()
                    .build()?;
                Ok(Sender::Http { client, url })
            }
        }
    }

    /// Sends one request; `Err` holds a short description of the failure.
    async fn send(&mut self, template: &Arc<Template>, seq: u64) -> Result<(), String> {
        match self {
            Sender::Grpc {
                client,
                path,
                timeout,
            } => {
                client
                    .ready()
                    .await
                    .map_err(|e| format!("grpc connection: {e}"))?;
                let mut request = tonic::Request::new(Outgoing {
                    template: template.clone(),
                    seq,
                });
                request.set_timeout(*timeout);
                client
                    .unary::<_, (), _>(request, path.clone(), SendCodec)
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("grpc {:?}: {}", s.code(), short(s.message())))
            }
            Sender::Http { client, url } => {
                let mut body = BytesMut::with_capacity(template.len());
                template.write(seq, &mut body);
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/x-protobuf")
                    .body(body.freeze())
                    .send()
                    .await
                    .map_err(|e| format!("http: {}", short(&error_chain(&e))))?;
                let status = response.status();
                // Read the answer whole so the connection can be reused.
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("http body: {}", short(&e.to_string())))?;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "http {}: {}",
                        status.as_u16(),
                        short(&String::from_utf8_lossy(&body))
                    ))
                }
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn short(s: &str) -> String {
    const MAX: usize = 160;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    failed: u64,
    items: u64,
}

#[derive(Debug, Default)]
struct WorkerResult {
    window: Counts,
    total: Counts,
    latencies: Latencies,
    errors: HashMap<String, u64>,
}

struct Plan {
    window_start: Instant,
    window_end: Instant,
    /// Per-worker interval between scheduled sends, when paced.
    interval: Option<Duration>,
    concurrency: u64,
    pool: Vec<Arc<Template>>,
}

async fn worker(index: u64, mut sender: Sender, plan: Arc<Plan>, t0: Instant) -> WorkerResult {
    let mut result = WorkerResult::default();
    // Paced workers are spread evenly over one interval.
    let offset = plan
        .interval
        .map(|i| i.mul_f64(index as f64 / plan.concurrency as f64))
        .unwrap_or_default();
    for k in 0u64.. {
        let scheduled = match plan.interval {
            Some(interval) => {
                let at = t0 + offset + interval.mul_f64(k as f64);
                if at >= plan.window_end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                at
            }
            None => {
                let now = Instant::now();
                if now >= plan.window_end {
                    break;
                }
                now
            }
        };
        // Unique per request, never 0, below 2^48 for any realistic run.
        let seq = k * plan.concurrency + index + 1;
        let template = &plan.pool[(seq as usize) % plan.pool.len()];
        let outcome = sender.send(template, seq).await;
        let done = Instant::now();
        let in_window = done >= plan.window_start && done < plan.window_end;
        let items = template.items();
        match outcome {
            Ok(()) => {
                result.total.ok += 1;
                result.total.items += items;
                if in_window {
                    result.window.ok += 1;
                    result.window.items += items;
                    result.latencies.record(done - scheduled);
                }
            }
            Err(e) => {
                result.total.failed += 1;
                if in_window {
                    result.window.failed += 1;
                }
                *result.errors.entry(e).or_default() += 1;
                // Do not spin on a refusing or absent server.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    result
}

/// The sink's `items_total`, or `None` if it cannot be read.
async fn sink_items(client: &reqwest::Client, url: Option<&str>) -> Option<u64> {
    let response = client.get(url?).send().await.ok()?;
    let body = response.bytes().await.ok()?;
    let stats: serde_json::Value = serde_json::from_slice(&body).ok()?;
    stats["items_total"].as_u64()
}

fn cpu_of(pids: &[u32]) -> Vec<Option<f64>> {
    pids.iter()
        .map(|&pid| procfs::cpu_seconds(Some(pid)).ok())
        .collect()
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.batch == 0 || args.concurrency == 0 {
        bail!("--batch and --concurrency must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be greater than 0");
    }
    let build_started = Instant::now();
    let templates: Vec<Arc<Template>> = pool(args.signal, args.batch, args.pool)
        .into_iter()
        .map(Arc::new)
        .collect();
    let build_s = build_started.elapsed().as_secs_f64();
    let request_bytes =
        templates.iter().map(|t| t.len()).sum::<usize>() as f64 / templates.len() as f64;
    let items_per_request = templates[0].items();

    let interval = match args.rate {
        Some(rate) if rate > 0.0 => {
            let requests_per_s = rate / items_per_request as f64;
            Some(Duration::from_secs_f64(
                args.concurrency as f64 / requests_per_s,
            ))
        }
        Some(_) => bail!("--rate must be greater than 0"),
        None => None,
    };

    let mut senders = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        senders.push(Sender::new(&args)?);
    }

    let t0 = Instant::now();
    let plan = Arc::new(Plan {
        window_start: t0 + args.warmup,
        window_end: t0 + args.warmup + args.duration,
        interval,
        concurrency: args.concurrency as u64,
        pool: templates,
    });
    let handles: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, sender)| tokio::spawn(worker(i as u64, sender, plan.clone(), t0)))
        .collect();

    let stats_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()?;
    let stats_url = args.sink_stats.as_deref();
    tokio::time::sleep_until(plan.window_start.into()).await;
    let watched_before = cpu_of(&args.watch_pids);
    let self_before = procfs::cpu_seconds(None).ok();
    let sink_before = sink_items(&stats_client, stats_url).await;
    tokio::time::sleep_until(plan.window_end.into()).await;
    let watched_after = cpu_of(&args.watch_pids);
    let self_after = procfs::cpu_seconds(None).ok();
    let sink_after = sink_items(&stats_client, stats_url).await;

    let mut window = Counts::default();
    let mut total = Counts::default();
    let mut latencies = Latencies::default();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for handle in handles {
        let r = handle.await.context("a sender task failed")?;
        window.ok += r.window.ok;
        window.failed += r.window.failed;
        window.items += r.window.items;
        total.ok += r.total.ok;
        total.failed += r.total.failed;
        total.items += r.total.items;
        latencies.merge(r.latencies);
        for (e, n) in r.errors {
            *errors.entry(e).or_default() += n;
        }
    }
    let tail_s = Instant::now()
        .saturating_duration_since(plan.window_end)
        .as_secs_f64();
    let duration_s = args.duration.as_secs_f64();
    let mut top_errors: Vec<(String, u64)> = errors.into_iter().collect();
    top_errors.sort_by_key(|e| std::cmp::Reverse(e.1));
    top_errors.truncate(5);
    let diff = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => json!(b - a),
        _ => json!(null),
    };
    let watched: Vec<_> = args
        .watch_pids
        .iter()
        .zip(watched_before.iter().zip(&watched_after))
        .map(|(pid, (a, b))| json!({"pid": pid, "cpu_s": diff(*a, *b)}))
        .collect();
    let report = json!({
        "signal": args.signal.name(),
        "protocol": match args.protocol { Protocol::Grpc => "grpc", Protocol::Http => "http" },
        "endpoint": args.endpoint,
        "batch": items_per_request,
        "concurrency": args.concurrency,
        "rate": args.rate,
        "warmup_s": args.warmup.as_secs_f64(),
        "duration_s": duration_s,
        "tail_s": tail_s,
        "pool": plan.pool.len(),
        "request_bytes": request_bytes,
        "build_s": build_s,
        "requests_ok": window.ok,
        "requests_failed": window.failed,
        "items_accepted": window.items,
        "items_per_s": window.items as f64 / duration_s,
        "latency_ms": latencies.summary(),
        "total": {
            "requests_ok": total.ok,
            "requests_failed": total.failed,
            "items_accepted": total.items,
        },
        "errors": top_errors.into_iter().map(|(e, n)| json!({"error": e, "count": n})).collect::<Vec<_>>(),
        "loadgen_cpu_s": diff(self_before, self_after),
        "sink_items_in_window": match (sink_before, sink_after) {
            (Some(a), Some(b)) => json!(b.saturating_sub(a)),
            _ => json!(null),
        },
        "watched": watched,
    });
    println!("{report}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .thread_name("loadgen")
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
