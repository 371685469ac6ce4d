//! Helpers shared by sluice's end-to-end tests: free ports, config files in a
//! temporary directory, the `sluice` process (killed on drop), bounded waits,
//! a minimal HTTP/1.1 client, Prometheus text parsing, OTLP/JSON line files,
//! OTLP protobuf requests and the Python SDK sender (tests/python/send.py).
//!
//! Everything talks to 127.0.0.1 only. Every wait has a deadline; nothing
//! asserts on how fast sluice is.

#![allow(dead_code)]

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
pub mod sink;

/// How long sluice may take to log `sluice is running`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long sluice may take to exit after SIGTERM.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long data may take to show up in a file or a counter.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot CLI command (`validate`, `--version`) may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// The line sluice logs once every component has started.
pub const RUNNING_LINE: &str = "sluice is running";

/// The sluice binary cargo built for these tests.
pub fn sluice_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sluice"))
}

// ---------------------------------------------------------------- randomness

/// A random u64 from the standard library's per-process random hash keys.
pub fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

// --------------------------------------------------------------------- ports

fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// A TCP port on 127.0.0.1 that is free now and that no other call in this
/// test process has returned. Ports are picked below the kernel's ephemeral
/// range, so the source ports of the many client connections the tests open
/// cannot take them between this call and sluice binding them.
pub fn free_port() -> u16 {
    static TAKEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let taken = TAKEN.get_or_init(Default::default);
    let (eph_lo, _) = ephemeral_range();
    let (lo, hi) = if eph_lo > 12_000 {
        (10_000u16, eph_lo - 1)
    } else {
        (0, 0)
    };
    for _ in 0..10_000 {
        let candidate = if hi > lo {
            lo + (random_u64() % u64::from(hi - lo)) as u16
        } else {
            0
        };
        let Ok(listener) = TcpListener::bind(("127.0.0.1", candidate)) else {
            continue;
        };
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if taken.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("could not find a free TCP port on 127.0.0.1");
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Polls until `addr` accepts a TCP connection or `timeout` passes.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
    })
}

/// Polls `cond` every 50 ms until it holds (true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------- configs

/// A temporary directory a test keeps its configs and output files in.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir {
            dir: tempfile::Builder::new()
                .prefix("sluice-test-")
                .tempdir()
                .expect("create a temporary directory"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `dir/name`.
    pub fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `dir/name` as a string, for putting into YAML.
    pub fn file(&self, name: &str) -> String {
        self.join(name)
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    /// Writes `yaml` to `dir/name` and returns its path.
    pub fn write_config(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for TestDir {
    fn default() -> Self {
        TestDir::new()
    }
}

// ------------------------------------------------------------ sluice process

/// Output a pipe reader thread collects.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn collect(&self, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = self.0.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => buf
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&line)),
                }
            }
        })
    }

    fn get(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// A running `sluice` child process. Dropping it kills the process.
pub struct Sluice {
    child: Child,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
    args: Vec<String>,
}

impl Sluice {
    /// Spawns `sluice <args>` in `cwd` with stdout and stderr captured.
    pub fn spawn(cwd: &Path, args: &[&str]) -> Sluice {
        Sluice::spawn_with_env(cwd, args, &[])
    }

    /// As [`Sluice::spawn`], with extra environment variables.
    pub fn spawn_with_env(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Sluice {
        let mut cmd = Command::new(sluice_bin());
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The config decides the log level: a RUST_LOG from the environment
        // running the tests would override it (and could hide the line that
        // says sluice is running).
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", sluice_bin().display()));
        let stdout = Captured::default();
        let stderr = Captured::default();
        let readers = vec![
            stdout.collect(child.stdout.take().expect("stdout pipe")),
            stderr.collect(child.stderr.take().expect("stderr pipe")),
        ];
        Sluice {
            child,
            stdout,
            stderr,
            readers,
            status: None,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `sluice run -c <config>...` in `cwd`, waiting until it logs that it is
    /// running. Panics (with its output) if it exits or does not get there.
    pub fn run(cwd: &Path, configs: &[&Path]) -> Sluice {
        Sluice::run_with_env(cwd, configs, &[])
    }

    pub fn run_with_env(cwd: &Path, configs: &[&Path], env: &[(&str, &str)]) -> Sluice {
        let mut args = vec!["run".to_string()];
        for c in configs {
            args.push("-c".to_string());
            args.push(c.to_str().expect("utf-8 config path").to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut s = Sluice::spawn_with_env(cwd, &args, env);
        s.wait_running();
        s
    }

    /// Waits until stderr contains [`RUNNING_LINE`]. Panics with the
    /// process's output if it exits first or the deadline passes.
    pub fn wait_running(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if self.stderr().contains(RUNNING_LINE) {
                return;
            }
            if let Some(status) = self.try_status() {
                self.join_readers();
                panic!(
                    "sluice exited with {status} before logging {RUNNING_LINE:?}\n{}",
                    self.describe()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "sluice did not log {RUNNING_LINE:?} within {STARTUP_TIMEOUT:?}\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with the pid of our own child; no memory involved.
        let rc = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(
            rc,
            0,
            "kill({}, {signal}) failed: {}",
            self.pid(),
            std::io::Error::last_os_error()
        );
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.try_status().is_some()
    }

    /// Waits for the process to exit; panics (after killing it) if it is
    /// still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                self.join_readers();
                return st;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.join_readers();
                panic!(
                    "sluice did not exit within {timeout:?} (killed it)\n{}",
                    self.describe()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then asserts a clean exit (status 0) within
    /// [`SHUTDOWN_TIMEOUT`].
    pub fn stop(&mut self) {
        self.terminate();
        let st = self.wait_exit(SHUTDOWN_TIMEOUT);
        assert!(
            st.success(),
            "sluice exited with {st} after SIGTERM, expected 0\n{}",
            self.describe()
        );
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.get()
    }

    pub fn stdout(&self) -> String {
        self.stdout.get()
    }

    /// The command line and everything it printed, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- sluice {} ---\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.args.join(" "),
            self.stdout(),
            self.stderr()
        )
    }
}

impl Drop for Sluice {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.describe());
        }
    }
}

/// What a finished one-shot `sluice` command printed.
#[derive(Debug)]
pub struct CliOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- end ---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `sluice <args>` in `cwd` to completion (bounded by [`CLI_TIMEOUT`]).
pub fn sluice_cli(cwd: &Path, args: &[&str]) -> CliOutput {
    let mut s = Sluice::spawn(cwd, args);
    let st = s.wait_exit(CLI_TIMEOUT);
    CliOutput {
        code: st.code(),
        stdout: s.stdout(),
        stderr: s.stderr(),
    }
}

// ---------------------------------------------------------------------- HTTP

/// An HTTP response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Opens a connection to `addr` and writes one complete HTTP/1.1 request
/// (`Connection: close`). Returns the stream to read the answer from with
/// [`http_read_response`]: once this returns, the whole request is in the
/// kernel's hands.
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut msg = head.into_bytes();
    msg.extend_from_slice(body);
    stream.write_all(&msg)?;
    stream.flush()?;
    Ok(stream)
}

/// Reads and parses the response to a request written by [`http_send`].
pub fn http_read_response(mut stream: TcpStream) -> std::io::Result<HttpResponse> {
    use std::io::{Error, ErrorKind};
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            Error::new(
                ErrorKind::UnexpectedEof,
                format!("no complete HTTP response head in {} bytes", raw.len()),
            )
        })?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidData,
                format!("bad status line {status_line:?}"),
            )
        })?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body =
            dechunk(&body).ok_or_else(|| Error::new(ErrorKind::InvalidData, "bad chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// One HTTP/1.1 request and its response.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    http_read_response(http_send(addr, method, path, headers, body, timeout)?)
}

pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<HttpResponse> {
    http_request(addr, "GET", path, &[], &[], Duration::from_secs(30))
}

// ---------------------------------------------------------------- Prometheus

/// GET /metrics from sluice's self-telemetry endpoint; panics unless 200.
pub fn scrape_metrics(addr: SocketAddr) -> String {
    let resp = http_get(addr, "/metrics")
        .unwrap_or_else(|e| panic!("GET http://{addr}/metrics failed: {e}"));
    assert_eq!(
        resp.status,
        200,
        "GET http://{addr}/metrics answered {}: {}",
        resp.status,
        resp.text()
    );
    resp.text()
}

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the samples of a Prometheus text exposition (comments skipped).
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(s) = parse_sample(line) {
            out.push(s);
        }
    }
    out
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 2);
                    break;
                }
                ',' | ' ' => {}
                '=' => {
                    // a quoted value follows
                    let (_, q) = chars.next()?;
                    if q != '"' {
                        return None;
                    }
                    let mut val = String::new();
                    loop {
                        let (_, c) = chars.next()?;
                        match c {
                            '\\' => match chars.next()?.1 {
                                'n' => val.push('\n'),
                                other => val.push(other),
                            },
                            '"' => break,
                            other => val.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key), val));
                }
                other => key.push(other),
            }
        }
        rest = &rest[end?..];
    }
    let value_str = rest.split_whitespace().next()?;
    let value = match value_str {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The sum of every series named `name` whose labels include all of
/// `labels`; `None` if no series matches.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for s in parse_prometheus(text) {
        if s.name != name {
            continue;
        }
        let all = labels
            .iter()
            .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v));
        if all {
            *found.get_or_insert(0.0) += s.value;
        }
    }
    found
}

/// Polls /metrics until `name{labels}` equals `expected` or the deadline
/// passes; returns the last value seen (the caller asserts on it).
pub fn wait_metric(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
    timeout: Duration,
) -> Option<f64> {
    let mut last = None;
    wait_until(timeout, || {
        last = metric_value(&scrape_metrics(addr), name, labels);
        last == Some(expected)
    });
    last
}

// ------------------------------------------------------------ OTLP/JSON files

/// Reads a JSON-lines file. A missing file reads as no lines. With
/// `complete_only`, a last line without its newline (still being written)
/// is ignored; otherwise every line must parse.
pub fn read_json_lines_opt(path: &Path, complete_only: bool) -> Vec<Value> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("read {}: {e}", path.display()),
    };
    let text =
        String::from_utf8(data).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
    let mut lines: Vec<&str> = text.split('\n').collect();
    // split leaves "" after a final newline, or the unterminated last line.
    let last = lines.pop().unwrap_or_default();
    if !complete_only && !last.trim().is_empty() {
        lines.push(last);
    }
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{} line {}: not JSON ({e}): {}",
                    path.display(),
                    i + 1,
                    truncate(l, 400)
                )
            })
        })
        .collect()
}

/// Reads a whole JSON-lines file; every line must be a JSON object.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    read_json_lines_opt(path, false)
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_string()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// One span, metric or log record of an OTLP/JSON export request, with the
/// resource and scope it came under.
#[derive(Debug, Clone)]
pub struct Item {
    pub resource: Value,
    pub scope: Value,
    pub record: Value,
}

impl Item {
    /// The resource's `service.name`, if it is a string attribute.
    pub fn service_name(&self) -> Option<String> {
        attr(&self.resource["attributes"], "service.name")
            .and_then(|v| v["stringValue"].as_str())
            .map(str::to_string)
    }

    pub fn str_field(&self, name: &str) -> String {
        self.record[name].as_str().unwrap_or_default().to_string()
    }
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn flatten(lines: &[Value], resource_key: &str, scope_key: &str, record_key: &str) -> Vec<Item> {
    let mut out = Vec::new();
    for line in lines {
        for rs in array(line, resource_key) {
            let resource = rs.get("resource").cloned().unwrap_or(Value::Null);
            for ss in array(rs, scope_key) {
                let scope = ss.get("scope").cloned().unwrap_or(Value::Null);
                for rec in array(ss, record_key) {
                    out.push(Item {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        record: rec.clone(),
                    });
                }
            }
        }
    }
    out
}

/// Every span in these OTLP/JSON `ExportTraceServiceRequest` lines.
pub fn spans(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceSpans", "scopeSpans", "spans")
}

/// Every metric in these OTLP/JSON `ExportMetricsServiceRequest` lines.
pub fn metrics(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceMetrics", "scopeMetrics", "metrics")
}

/// Every log record in these OTLP/JSON `ExportLogsServiceRequest` lines.
pub fn log_records(lines: &[Value]) -> Vec<Item> {
    flatten(lines, "resourceLogs", "scopeLogs", "logRecords")
}

/// The spans in a traces file (only complete lines, for polling).
pub fn spans_in(path: &Path) -> Vec<Item> {
    spans(&read_json_lines_opt(path, true))
}

/// The value of attribute `key` in an OTLP/JSON attribute list.
pub fn attr<'a>(attributes: &'a Value, key: &str) -> Option<&'a Value> {
    attributes
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// An OTLP/JSON int64: a JSON string of digits (the spec's form) or a number.
pub fn json_i64(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// An OTLP/JSON double (a number; the spec also allows strings for
/// NaN/Infinity, and some encoders quote).
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

// ----------------------------------------------------------- OTLP protobuf

/// Unique trace and span ids for the spans one test builds.
pub struct IdGen {
    prefix: u64,
    next: AtomicU64,
}

impl IdGen {
    pub fn new() -> IdGen {
        IdGen {
            prefix: random_u64() | 1,
            next: AtomicU64::new(1),
        }
    }

    /// A fresh (trace id, span id) pair, both non-zero.
    pub fn next(&self) -> ([u8; 16], [u8; 8]) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut trace = [0u8; 16];
        trace[..8].copy_from_slice(&self.prefix.to_be_bytes());
        trace[8..].copy_from_slice(&n.to_be_bytes());
        let span = (self.prefix.rotate_left(17) ^ n).max(1).to_be_bytes();
        (trace, span)
    }
}

impl Default for IdGen {
    fn default() -> Self {
        IdGen::new()
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One span to put into a request: ids and name.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub name: String,
}

impl SpanSpec {
    /// `trace_id:span_id` in hex, the key the tests compare files by.
    pub fn key(&self) -> String {
        format!("{}:{}", hex(&self.trace_id), hex(&self.span_id))
    }
}

/// `traceId:spanId` of a span read back from a file.
pub fn span_key(item: &Item) -> String {
    format!(
        "{}:{}",
        item.record["traceId"].as_str().unwrap_or_default(),
        item.record["spanId"].as_str().unwrap_or_default()
    )
}

/// `n` fresh spans named `<prefix>-<i>`.
pub fn make_spans(ids: &IdGen, prefix: &str, n: usize) -> Vec<SpanSpec> {
    (0..n)
        .map(|i| {
            let (trace_id, span_id) = ids.next();
            SpanSpec {
                trace_id,
                span_id,
                name: format!("{prefix}-{i}"),
            }
        })
        .collect()
}

/// A protobuf-encoded OTLP `ExportTraceServiceRequest` carrying `spans`
/// under one resource with `service.name = service`.
pub fn trace_request_protobuf(service: &str, spans: &[SpanSpec]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64;
    let kv = |k: &str, v: any_value::Value| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv(
                    "service.name",
                    any_value::Value::StringValue(service.to_string()),
                )],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "sluice-tests".to_string(),
                    ..Default::default()
                }),
                spans: spans
                    .iter()
                    .map(|s| Span {
                        trace_id: s.trace_id.to_vec(),
                        span_id: s.span_id.to_vec(),
                        name: s.name.clone(),
                        kind: 2,
                        start_time_unix_nano: now,
                        end_time_unix_nano: now + 1_000,
                        attributes: vec![kv(
                            "test.name",
                            any_value::Value::StringValue(s.name.clone()),
                        )],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    req.encode_to_vec()
}

/// POSTs a protobuf traces request to `http://addr/v1/traces`.
pub fn post_traces_protobuf(
    addr: SocketAddr,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<HttpResponse> {
    http_request(
        addr,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/x-protobuf")],
        body,
        timeout,
    )
}

// --------------------------------------------------------------- kernel view

/// The server side of established TCP connections to local `port`, from
/// /proc/net/tcp: (connection count, bytes received but not yet read by the
/// listening process). Lets a test see that sluice has read every request it
/// was sent, without guessing with sleeps.
pub fn server_connections(port: u16) -> (usize, u64) {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let mut count = 0;
    let mut unread = 0u64;
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 5 {
            continue;
        }
        let local_port = cols[1]
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        let state = cols[3];
        if local_port != Some(port) || state != "01" {
            continue;
        }
        count += 1;
        if let Some((_, rx)) = cols[4].split_once(':') {
            unread += u64::from_str_radix(rx, 16).unwrap_or(0);
        }
    }
    (count, unread)
}

// ------------------------------------------------------------- Python sender

/// The Python with the OpenTelemetry SDK, from `SLUICE_TEST_PYTHON` (set by
/// scripts/test). Panics with instructions when it is missing: a missing
/// prerequisite fails the test, it never skips it.
pub fn test_python() -> PathBuf {
    let Some(p) = std::env::var_os("SLUICE_TEST_PYTHON") else {
        panic!(
            "SLUICE_TEST_PYTHON is not set. Run the tests with scripts/test, which \
             creates the Python venv with the OpenTelemetry SDK and sets it \
             (or set SLUICE_TEST_PYTHON to a python that has the packages of \
             scripts/lib/python-requirements.txt)."
        );
    };
    let p = PathBuf::from(p);
    assert!(
        p.exists(),
        "SLUICE_TEST_PYTHON={} does not exist. Run the tests with scripts/test.",
        p.display()
    );
    p
}

/// tests/python/send.py.
pub fn send_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send.py")
}

/// Runs send.py (see its docstring) without compression and returns its
/// JSON summary. Panics with its output unless it exits 0 in time.
pub fn run_send_py(protocol: &str, endpoint: &str, service: &str, count: usize) -> Value {
    run_send_py_with(protocol, endpoint, service, count, "none")
}

/// As [`run_send_py`], with `compression` `none` or `gzip`.
pub fn run_send_py_with(
    protocol: &str,
    endpoint: &str,
    service: &str,
    count: usize,
    compression: &str,
) -> Value {
    let python = test_python();
    let mut cmd = Command::new(&python);
    cmd.arg(send_py())
        .arg(protocol)
        .arg(endpoint)
        .arg(service)
        .arg(count.to_string())
        .arg(compression)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The SDK reads OTEL_* variables; the test decides everything itself.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("run {} {}: {e}", python.display(), send_py().display()));
    let stdout = Captured::default();
    let stderr = Captured::default();
    let readers = [
        stdout.collect(child.stdout.take().unwrap()),
        stderr.collect(child.stderr.take().unwrap()),
    ];
    let timeout = Duration::from_secs(180);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for send.py") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "send.py {protocol} {endpoint} did not finish within {timeout:?}\n--- stderr ---\n{}",
                stderr.get()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for r in readers {
        let _ = r.join();
    }
    let out = stdout.get();
    let err = stderr.get();
    assert!(
        status.success(),
        "send.py {protocol} {endpoint} failed with {status}\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| {
        panic!(
            "send.py printed no JSON summary ({e})\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
        )
    })
}
