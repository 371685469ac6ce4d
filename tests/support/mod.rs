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
mod http;
pub mod kafka;
mod otlp;
pub mod sink;

pub use http::*;
pub use otlp::*;

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
        Sluice::spawn_program(&sluice_bin(), cwd, args, env)
    }

    /// As [`Sluice::spawn_with_env`], running the binary at `program` (a
    /// build of sluice with other features).
    pub fn spawn_program(
        program: &Path,
        cwd: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Sluice {
        let mut cmd = Command::new(program);
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
            .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
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
