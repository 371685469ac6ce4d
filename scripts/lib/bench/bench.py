#!/usr/bin/env python3
"""The runner behind scripts/bench: runs collectors between sluice-loadgen
and sluice-sink, samples them from /proc, prints one JSON line per run, and
writes BENCHMARKS.md from the results.

    bench.py wait-quiet --max-seconds 900 --interval 30
    bench.py run --bin-dir DIR --rotel BIN [--otelcol BIN] --out FILE ...
    bench.py report --results FILE --meta FILE --notes FILE --out BENCHMARKS.md

Standard library only. Every process it starts is stopped by its own pid,
every wait is bounded, and all traffic stays on 127.0.0.1.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# Batch settings shared by every collector (see the sluice-*.yaml files).
BATCH_ITEMS = 2048
BATCH_TIMEOUT = "200ms"

SCENARIOS = {
    "a": {
        "title": "OTLP/gRPC traces -> batch -> OTLP/gRPC",
        "signal": "traces",
        "protocol": "grpc",
        "sink": "grpc",
        "sluice_config": "sluice-a-traces-grpc.yaml",
        # sluice-gzip6: sluice with its exporter at gzip level 6 (its
        # default is 1), to show the gzip level's share of the ratio.
        "peers": ["rotel", "sluice-gzip6"],
    },
    "b": {
        "title": "OTLP/gRPC traces -> batch -> discarding exporter",
        "signal": "traces",
        "protocol": "grpc",
        "sink": None,
        "sluice_config": "sluice-b-traces-discard.yaml",
        "peers": ["rotel"],
    },
    "c": {
        "title": "OTLP/HTTP logs -> batch -> OTLP/HTTP",
        "signal": "logs",
        "protocol": "http",
        "sink": "http",
        "sluice_config": "sluice-c-logs-http.yaml",
        "peers": ["rotel"],
    },
    "d": {
        "title": "OTLP/gRPC metrics -> batch -> OTLP/gRPC",
        "signal": "metrics",
        "protocol": "grpc",
        "sink": "grpc",
        "sluice_config": "sluice-d-metrics-grpc.yaml",
        "peers": ["rotel"],
    },
    "e": {
        "title": "filelog (JSON lines) -> batch -> OTLP/HTTP",
        "signal": "logs",
        "protocol": "file",
        "sink": "http",
        "sluice_config": "sluice-e-filelog.yaml",
        "peers": ["otelcol"],
    },
    "f": {
        "title": "(a) + memory_limiter, attributes, persistent queue",
        "signal": "traces",
        "protocol": "grpc",
        "sink": "grpc",
        "sluice_config": "sluice-f-traces-reliable.yaml",
        "peers": ["rotel"],
    },
}

# Points per generated metric (sluice_bench::gen::POINTS_PER_METRIC): Rotel
# counts metrics, not points, in its batch size.
POINTS_PER_METRIC = 8


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- /proc


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime 15.
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


# ------------------------------------------------------------- quiet wait

BUSY = re.compile(r"^(cargo|rustc|sluice|crash-.*|reliability-.*)$")


def ancestors():
    pids = set()
    pid = os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def busy_processes():
    """Processes of other work that would skew a measurement: builds, tests,
    running sluice instances (ours are not running between runs)."""
    mine = ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if not argv:
            continue
        name = os.path.basename(argv[0])
        # test binaries carry a hash suffix: crash-0123abcd
        if BUSY.match(name) or (name == "sluice" and argv[1:2] == ["run"]):
            found.append(f"{entry} {' '.join(argv)[:120]}")
    return found


def cmd_wait_quiet(args):
    deadline = time.monotonic() + args.max_seconds
    waited = 0
    while True:
        busy = busy_processes()
        if not busy:
            print(json.dumps({"quiet": True, "waited_s": waited, "busy": []}))
            return 0
        if time.monotonic() + args.interval > deadline:
            print(json.dumps({"quiet": False, "waited_s": waited, "busy": busy[:10]}))
            return 0
        log(f"machine busy ({len(busy)} processes, e.g. {busy[0][:80]}); waiting {args.interval}s")
        time.sleep(args.interval)
        waited += args.interval


# ------------------------------------------------------------- processes


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def stop(proc, timeout=15.0):
    """SIGTERM, then SIGKILL after `timeout`; only the process we started."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def http_json(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


class Sink:
    def __init__(self, bin_dir, rundir):
        self.proc = subprocess.Popen(
            [os.path.join(bin_dir, "sluice-sink"), "--max-run", "30m",
             "--report-file", os.path.join(rundir, "sink-report.json")],
            stdout=subprocess.PIPE, stderr=open(os.path.join(rundir, "sink.log"), "w"),
            text=True)
        first = self.proc.stdout.readline()
        info = json.loads(first)
        self.grpc = info["grpc"]
        self.http = info["http"]
        self.pid = self.proc.pid

    def stats(self):
        return http_json(f"http://{self.http}/stats")

    def stop(self):
        stop(self.proc)


# ------------------------------------------------------------- collectors


def collector_command(name, scenario, rundir, opts, ports, sink):
    """argv and environment that start `name` for `scenario`."""
    sc = SCENARIOS[scenario]
    env = dict(os.environ)
    env.pop("RUST_LOG", None)
    if name in ("sluice", "sluice-gzip6"):
        env["BENCH_GZIP_LEVEL"] = "6" if name == "sluice-gzip6" else "1"
        env.update({
            "BENCH_TELEMETRY": f"127.0.0.1:{ports['telemetry']}",
            "BENCH_SINK_GRPC": sink.grpc if sink else "127.0.0.1:1",
            "BENCH_SINK_HTTP": sink.http if sink else "127.0.0.1:1",
        })
        if sc["protocol"] == "file":
            env["BENCH_LOG_FILE"] = opts.log_file
        else:
            env.update({
                "BENCH_GRPC": f"127.0.0.1:{ports['grpc']}",
                "BENCH_HTTP": f"127.0.0.1:{ports['http']}",
            })
        # A fresh, empty storage directory per run (scenario f's queue).
        env["BENCH_STORAGE_DIR"] = os.path.join(rundir, "storage")
        argv = [opts.sluice, "run", "-c", os.path.join(HERE, sc["sluice_config"])]
        return argv, env
    if name == "rotel":
        argv = [
            opts.rotel, "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{ports['grpc']}",
            "--otlp-http-endpoint", f"127.0.0.1:{ports['http']}",
            "--otlp-grpc-max-recv-msg-size-mib", "64",
            "--pid-file", os.path.join(rundir, "rotel.pid"),
            "--log-file", os.path.join(rundir, "rotel-file.log"),
            "--batch-max-size", str(BATCH_ITEMS),
            "--metrics-batch-max-size", str(BATCH_ITEMS // POINTS_PER_METRIC),
            "--batch-timeout", BATCH_TIMEOUT,
        ]
        if sc["sink"] is None:
            argv += ["--exporter", "blackhole"]
        elif sc["sink"] == "grpc":
            argv += ["--exporter", "otlp",
                     "--otlp-exporter-endpoint", f"http://{sink.grpc}",
                     "--otlp-exporter-protocol", "grpc"]
        else:
            argv += ["--exporter", "otlp",
                     "--otlp-exporter-endpoint", f"http://{sink.http}",
                     "--otlp-exporter-protocol", "http"]
        return argv, env
    if name == "otelcol":
        env.update({
            "BENCH_SINK_HTTP": sink.http,
            "BENCH_LOG_FILE": opts.log_file,
        })
        argv = [opts.otelcol, "--config", os.path.join(HERE, "otelcol-e-filelog.yaml")]
        return argv, env
    raise ValueError(name)


def wait_drained(sink, expected, timeout=20.0, settle=3.0):
    """Polls the sink until it has `expected` items, or its count stopped
    moving for `settle` seconds, or `timeout` passed."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while True:
        items = sink.stats()["items_total"]
        now = time.monotonic()
        if items != last:
            last, last_change = items, now
        if (expected is not None and items >= expected) or now - last_change >= settle \
                or now >= deadline:
            return items
        time.sleep(0.2)


def run_load(opts, scenario, collector, round_no, rundir):
    """One measured run of `collector` (or "direct": loadgen -> sink) in
    `scenario`; returns the result record."""
    sc = SCENARIOS[scenario]
    record = {
        "scenario": scenario, "title": sc["title"], "collector": collector, "round": round_no,
        "signal": sc["signal"], "protocol": sc["protocol"], "batch": opts.batch,
        "concurrency": opts.concurrency, "duration_s": opts.duration, "warmup_s": opts.warmup,
        "loadavg_before": loadavg(), "busy_before": busy_processes()[:3],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "ok": False, "error": None,
    }
    sink = proc = None
    try:
        if sc["sink"] is not None:
            sink = Sink(opts.bin_dir, rundir)
        ports = {"grpc": free_port(), "http": free_port(), "telemetry": free_port()}
        if collector == "direct":
            target_pid = None
            endpoint = sink.grpc if sc["protocol"] == "grpc" else f"http://{sink.http}"
        else:
            argv, env = collector_command(collector, scenario, rundir, opts, ports, sink)
            record["command"] = argv
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                    stdout=open(os.path.join(rundir, f"{collector}.out"), "w"),
                                    stderr=subprocess.STDOUT)
            port = ports["grpc"] if sc["protocol"] == "grpc" else ports["http"]
            if not wait_port(port, proc):
                raise RuntimeError(f"{collector} did not listen on 127.0.0.1:{port} within 20 s "
                                   f"(exit {proc.poll()}); see {rundir}")
            target_pid = proc.pid
            endpoint = (f"127.0.0.1:{port}" if sc["protocol"] == "grpc"
                        else f"http://127.0.0.1:{port}")
        cmd = [os.path.join(opts.bin_dir, "sluice-loadgen"),
               "--signal", sc["signal"], "--protocol", sc["protocol"], "--endpoint", endpoint,
               "--batch", str(opts.batch), "--concurrency", str(opts.concurrency),
               "--duration", f"{opts.duration}s", "--warmup", f"{opts.warmup}s"]
        watched = [p for p in (target_pid, sink.pid if sink else None) if p]
        for p in watched:
            cmd += ["--watch-pid", str(p)]
        if sink:
            cmd += ["--sink-stats", f"http://{sink.http}/stats"]
        record["loadgen_command"] = cmd
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=opts.warmup + opts.duration + 60)
        if out.returncode != 0:
            raise RuntimeError(f"sluice-loadgen failed: {out.stderr.strip()[-500:]}")
        lg = json.loads(out.stdout)
        cpu = {w["pid"]: w["cpu_s"] for w in lg["watched"]}
        total = lg["total"]
        record.update({
            "items_sent": (total["requests_ok"] + total["requests_failed"]) * lg["batch"],
            "items_accepted": total["items_accepted"],
            "window_items_accepted": lg["items_accepted"],
            "items_per_s": lg["items_per_s"],
            "requests_ok": lg["requests_ok"],
            "requests_failed": lg["requests_failed"],
            "request_bytes": lg["request_bytes"],
            "latency_ms": lg["latency_ms"],
            "errors": lg["errors"],
            "loadgen_cpu_s": lg["loadgen_cpu_s"],
            "sink_cpu_s": cpu.get(sink.pid) if sink else None,
        })
        if target_pid:
            c = cpu.get(target_pid)
            record["collector_cpu_s"] = c
            record["collector_cores"] = c / opts.duration if c else None
            record["items_per_cpu_s"] = lg["items_accepted"] / c if c else None
        if sink:
            drain_started = time.monotonic()
            received = wait_drained(sink, total["items_accepted"])
            record["drained"] = received >= total["items_accepted"]
            record["drain_s"] = time.monotonic() - drain_started
            window = lg.get("sink_items_in_window")
            record["sink_items_in_window"] = window
            record["delivered_items_per_s"] = window / opts.duration if window is not None else None
            record["items_received"] = received
            record["loss"] = total["items_accepted"] - received
            record["loss_ratio"] = (record["loss"] / total["items_accepted"]
                                    if total["items_accepted"] else None)
            st = sink.stats()
            s = st[sc["signal"]]
            record["sink_requests"] = s["requests"]
            record["sink_compressed_requests"] = s.get("compressed_requests")
            record["sink_items_per_request"] = s["items"] / s["requests"] if s["requests"] else None
        else:
            record["items_received"] = None
            record["loss"] = None
        if target_pid:
            if proc.poll() is not None:
                raise RuntimeError(f"{collector} exited with {proc.returncode} during the run")
            hwm = status_kib(target_pid, "VmHWM")
            record["peak_rss_mib"] = hwm / 1024 if hwm else None
            record["collector_cpu_total_s"] = cpu_seconds(target_pid)
            if sink and record["collector_cpu_total_s"]:
                # Whole run, start-up to drained: what left the collector per
                # CPU-second, whatever it had queued when the load stopped.
                record["delivered_items_per_cpu_s"] = (record["items_received"]
                                                       / record["collector_cpu_total_s"])
        record["ok"] = lg["requests_ok"] > 0
        if not record["ok"]:
            record["error"] = "no request succeeded"
    except Exception as e:  # noqa: BLE001 - one failed run must not stop the others
        record["error"] = str(e)[:500]
    finally:
        stop(proc)
        if sink:
            sink.stop()
    return record


def make_log_file(path, lines):
    """`lines` JSON log lines of about 270 bytes, written once and reused."""
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path + ".lines") as f:
            if int(f.read().strip() or 0) == lines:
                return
    levels = ["info", "info", "info", "warn", "error", "debug"]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for n in range(lines):
            f.write(json.dumps({
                "ts": f"2024-01-01T00:{(n // 60000) % 60:02d}:{(n // 1000) % 60:02d}.{n % 1000:03d}Z",
                "level": levels[n % len(levels)],
                "logger": "com.shop.checkout.OrderService",
                "msg": f"order {n * 7919 % 10000000} placed by user u-{n * 2654435761 % 2**32:08x} "
                       f"with {n % 17} items",
                "trace_id": f"{n * 0x9E3779B97F4A7C15 % 2**128:032x}",
                "span_id": f"{n * 0xBF58476D1CE4E5B9 % 2**64:016x}",
                "duration_ms": round((n % 997) * 0.25, 2),
                "thread": f"http-nio-8080-exec-{n % 50}",
            }, separators=(",", ":")) + "\n")
    os.replace(tmp, path)
    with open(path + ".lines", "w") as f:
        f.write(str(lines))


def run_file(opts, scenario, collector, round_no, rundir):
    """Scenario (e): the collector reads `opts.lines` lines from a file and
    sends them to the sink; measured from start until the sink has them all."""
    sc = SCENARIOS[scenario]
    record = {
        "scenario": scenario, "title": sc["title"], "collector": collector, "round": round_no,
        "signal": "logs", "protocol": "file", "lines": opts.lines,
        "loadavg_before": loadavg(), "busy_before": busy_processes()[:3],
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "ok": False, "error": None,
    }
    sink = proc = None
    try:
        # A fresh copy per run: filelog must not see a file it already read.
        log_file = os.path.join(rundir, "input.jsonl")
        shutil.copyfile(opts.log_source, log_file)
        opts.log_file = log_file
        sink = Sink(opts.bin_dir, rundir)
        argv, env = collector_command(collector, scenario, rundir, opts,
                                      {"telemetry": free_port()}, sink)
        record["command"] = argv
        started = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                stdout=open(os.path.join(rundir, f"{collector}.out"), "w"),
                                stderr=subprocess.STDOUT)
        deadline = started + opts.file_timeout
        received, last, last_change, done_at = 0, -1, started, None
        while time.monotonic() < deadline and proc.poll() is None:
            received = sink.stats()["logs"]["items"]
            now = time.monotonic()
            if received != last:
                last, last_change = received, now
            if received >= opts.lines:
                done_at = now
                break
            if received > 0 and now - last_change > 10:
                break
            time.sleep(0.1)
        cpu = cpu_seconds(proc.pid) if proc.poll() is None else None
        hwm = status_kib(proc.pid, "VmHWM") if proc.poll() is None else None
        elapsed = (done_at or time.monotonic()) - started
        record.update({
            "items_sent": opts.lines,
            "items_received": received,
            "loss": opts.lines - received,
            "elapsed_s": elapsed,
            "items_per_s": received / elapsed if elapsed else None,
            "collector_cpu_s": cpu,
            "collector_cores": cpu / elapsed if cpu and elapsed else None,
            "items_per_cpu_s": received / cpu if cpu else None,
            "peak_rss_mib": hwm / 1024 if hwm else None,
            "sink_cpu_s": sink.stats().get("cpu_s"),
            "sink_requests": sink.stats()["logs"]["requests"],
            "sink_compressed_requests": sink.stats()["logs"].get("compressed_requests"),
        })
        record["ok"] = done_at is not None
        if not record["ok"]:
            record["error"] = (f"sink got {received} of {opts.lines} lines "
                               f"(collector exit {proc.poll()})")
    except Exception as e:  # noqa: BLE001
        record["error"] = str(e)[:500]
    finally:
        stop(proc)
        if sink:
            sink.stop()
        lf = os.path.join(rundir, "input.jsonl")
        if os.path.exists(lf):
            os.remove(lf)
    return record


def cmd_run(opts):
    scenarios = [s for s in opts.scenarios.split(",") if s]
    for s in scenarios:
        if s not in SCENARIOS:
            raise SystemExit(f"unknown scenario {s!r}: choose from {','.join(SCENARIOS)}")
    available = {"sluice": True, "sluice-gzip6": True, "rotel": bool(opts.rotel),
                 "otelcol": bool(opts.otelcol)}
    os.makedirs(opts.workdir, exist_ok=True)
    n = 0
    out = open(opts.out, "a")

    def emit(record):
        line = json.dumps(record, sort_keys=True)
        print(line, flush=True)
        out.write(line + "\n")
        out.flush()

    for scenario in scenarios:
        sc = SCENARIOS[scenario]
        file_scenario = sc["protocol"] == "file"
        collectors = ["sluice"] + [p for p in sc["peers"] if available[p]]
        missing = [p for p in sc["peers"] if not available[p]]
        for p in missing:
            emit({"scenario": scenario, "title": sc["title"], "collector": p, "ok": False,
                  "error": f"{p} is not installed (see the scripts/bench log)", "skipped": True})
        if file_scenario:
            if not collectors:
                continue
            opts.log_source = os.path.join(opts.cache, f"lines-{opts.lines}.jsonl")
            log(f"scenario {scenario}: preparing {opts.lines} JSON lines")
            make_log_file(opts.log_source, opts.lines)
        elif opts.direct and sc["sink"] is not None:
            n += 1
            rundir = os.path.join(opts.workdir, f"{n:02d}-{scenario}-direct")
            os.makedirs(rundir, exist_ok=True)
            log(f"scenario {scenario}: loadgen -> sink directly")
            emit(run_load(opts, scenario, "direct", 0, rundir))
        for round_no in range(1, opts.rounds + 1):
            for collector in collectors:  # A B A B ...
                n += 1
                rundir = os.path.join(opts.workdir, f"{n:02d}-{scenario}-{collector}-{round_no}")
                os.makedirs(rundir, exist_ok=True)
                log(f"scenario {scenario}: {collector}, round {round_no}/{opts.rounds}")
                run = run_file if file_scenario else run_load
                emit(run(opts, scenario, collector, round_no, rundir))
    out.close()
    return 0


# ---------------------------------------------------------------- report


def fmt(v, digits=0, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float) and digits == 0:
        return f"{v:,.0f}{unit}"
    return f"{v:,.{digits}f}{unit}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a and b else None


def cmd_report(opts):
    with open(opts.results) as f:
        records = [json.loads(line) for line in f if line.strip()]
    with open(opts.meta) as f:
        meta = json.load(f)
    notes = open(opts.notes).read() if opts.notes and os.path.exists(opts.notes) else ""
    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w("<!-- Generated by `scripts/bench --report` (or `--report-only`) from "
      "scripts/lib/bench/results.jsonl, meta.json and notes.md; edit those, not this file. -->")
    w("")
    harness = ("Cargo.toml", "Cargo.lock", "BENCHMARKS.md", "scripts/bench",
               "scripts/lib/bench/", "crates/sluice-bench/")
    others = [f for f in meta.get("changed_files", []) if not f.startswith(harness)]
    if others:
        state = " with uncommitted changes to " + ", ".join(f"`{f}`" for f in others[:8])
    elif meta.get("changed_files"):
        state = " (uncommitted changes only in the benchmark harness itself)"
    else:
        state = ""
    w(f"Measured {meta.get('date', '?')} on sluice commit `{meta.get('commit', '?')}`{state}. "
      "Regenerate with `scripts/bench --report` (about 20 minutes, plus the wait for a quiet "
      "machine).")
    w("")
    w("## Machine")
    w("")
    for k in ("cpu", "cores", "memory", "kernel", "rustc"):
        if meta.get(k):
            w(f"- {k}: {meta[k]}")
    q = meta.get("quiet") or {}
    if q.get("quiet"):
        w(f"- quiet before the runs: yes (waited {q.get('waited_s', 0)} s for other builds/tests "
          "to finish)")
    elif q:
        w(f"- quiet before the runs: **no**: after {q.get('waited_s', 0)} s other work was "
          f"still running ({'; '.join(q.get('busy', [])[:3])}); figures may be skewed")
    disturbed = [r for r in records if r.get("busy_before")]
    if disturbed:
        w(f"- runs that started while other builds/tests were running: {len(disturbed)} of "
          f"{len(records)}: " + ", ".join(
              f"({r['scenario']}) {r['collector']} round {r.get('round')}" for r in disturbed)
          + " (see `busy_before` in results.jsonl)")
    elif records and all("busy_before" in r for r in records):
        w("- no other build or test was running at the start of any run")
    w("")
    w("## Collectors")
    w("")
    for k, v in meta.get("versions", {}).items():
        w(f"- {k}: {v}")
    w("")
    w("## Commands")
    w("")
    w("```sh")
    for c in meta.get("commands", []):
        w(c)
    w("```")
    w("")
    w(f"Load: `sluice-loadgen`, {meta.get('batch')} items per request, concurrency "
      f"{meta.get('concurrency')} (one connection each, closed loop), {meta.get('warmup')} s "
      f"warm-up, then a {meta.get('duration')} s measured window; {meta.get('rounds')} rounds "
      "per collector, alternating (A B A B). Each run's exact argv is in `results.jsonl` "
      "(`command`, `loadgen_command`).")
    w("")
    w("Columns:")
    w("")
    w("- **accepted/s**: items the collector acknowledged during the window;")
    w("- **delivered/s**: items the sink received during the same window;")
    w("- **cores**: collector user+system CPU time over the window (/proc/PID/stat) ÷ window;")
    w("- **acc/CPU-s**: accepted/s ÷ cores;")
    w("- **deliv/CPU-s**: items the sink received over the whole run ÷ the collector's "
      "total CPU time from start until the sink had everything (start-up, warm-up and "
      "draining included). It charges a collector for what it had queued but not yet sent "
      "when the load stopped, so it is the figure the ratios use where there is a sink;")
    w("- **RSS**: peak resident set (VmHWM) at the end of the run, MiB;")
    w("- **loss**: items acknowledged over the whole run minus items the sink received "
      "(negative: duplicates); **drain**: seconds from the end of the load until the sink "
      "had everything;")
    w("- **p50 / p99**: request round trip seen by the load generator, ms.")
    w("")
    w("Per-collector figures are medians over the rounds, per-round values in brackets.")
    w("")

    by_scenario = {}
    for r in records:
        by_scenario.setdefault(r["scenario"], []).append(r)
    summary_rows = []
    order = ["direct", "sluice", "sluice-gzip6", "rotel", "otelcol"]
    for scenario, sc in SCENARIOS.items():
        rs = by_scenario.get(scenario)
        if not rs:
            continue
        file_scenario = sc["protocol"] == "file"
        has_sink = sc["sink"] is not None
        w(f"## ({scenario}) {sc['title']}")
        w("")
        if file_scenario:
            head = ["collector", "lines", "lines/s", "cores", "lines/CPU-s", "RSS", "loss"]
        else:
            head = ["collector", "accepted/s", "delivered/s", "cores", "acc/CPU-s",
                    "deliv/CPU-s", "RSS", "loss", "drain", "p50 / p99", "failed"]
        w("| " + " | ".join(head) + " |")
        w("|" + " --- |" * len(head))
        medians = {}
        for collector in sorted({r["collector"] for r in rs}, key=order.index):
            runs = [r for r in rs if r["collector"] == collector]
            good = [r for r in runs if r.get("ok")]
            label = {"direct": "none: loadgen → sink"}.get(collector, collector)
            if not good:
                errs = "; ".join(sorted({str(r.get("error")) for r in runs}))
                w(f"| {label} | not measured: {errs} |" + " |" * (len(head) - 2))
                continue
            keys = ("items_per_s", "delivered_items_per_s", "collector_cores", "items_per_cpu_s",
                    "delivered_items_per_cpu_s", "peak_rss_mib", "drain_s")
            m = {k: median([r.get(k) for r in good]) for k in keys}
            medians[collector] = m

            def cell(k, d=0, rounds=True):
                out = fmt(m[k], d)
                if rounds and len(good) > 1 and m[k] is not None:
                    out += " [" + ", ".join(fmt(r.get(k), d) for r in good) + "]"
                return out
            loss = [r.get("loss") for r in good]
            loss_s = "n/a" if all(x is None for x in loss) else ", ".join(fmt(x) for x in loss)
            if file_scenario:
                w(f"| {label} | {fmt(good[0].get('lines'))} | {cell('items_per_s')} | "
                  f"{cell('collector_cores', 2, False)} | {cell('items_per_cpu_s')} | "
                  f"{cell('peak_rss_mib', 1)} | {loss_s} |")
                continue
            lat = "; ".join(f"{fmt(r['latency_ms']['p50'], 1)} / {fmt(r['latency_ms']['p99'], 1)}"
                            for r in good)
            failed = ", ".join(str(r.get("requests_failed", 0)) for r in good)
            if collector == "direct":
                dur = good[0].get("duration_s") or 1
                sink_c = median([r.get("sink_cpu_s") for r in good])
                gen_c = median([r.get("loadgen_cpu_s") for r in good])
                cores = (f"sink {fmt(sink_c / dur if sink_c else None, 2)}, "
                         f"loadgen {fmt(gen_c / dur if gen_c else None, 2)}")
                w(f"| {label} | {cell('items_per_s')} | {cell('delivered_items_per_s')} | "
                  f"{cores} | – | – | – | {loss_s} | – | {lat} | {failed} |")
                continue
            w(f"| {label} | {cell('items_per_s')} | "
              f"{cell('delivered_items_per_s') if has_sink else 'n/a'} | "
              f"{cell('collector_cores', 2, False)} | {cell('items_per_cpu_s')} | "
              f"{cell('delivered_items_per_cpu_s') if has_sink else 'n/a'} | "
              f"{cell('peak_rss_mib', 1)} | {loss_s} | "
              f"{cell('drain_s', 1, False) if has_sink else 'n/a'} | {lat} | {failed} |")
        w("")
        gz = [(r["collector"], r.get("round"), r["sink_compressed_requests"], r.get("sink_requests"))
              for r in rs if r.get("ok") and r.get("sink_compressed_requests")]
        if gz:
            w("Exports that reached the sink compressed: " + ", ".join(
                f"{c} round {n}: {k} of {t}" for c, n, k, t in gz) + ".")
            w("")
        s = medians.get("sluice")
        peer = next((p for p in sc["peers"] if p in medians), None)
        if s and peer:
            p = medians[peer]
            # A file scenario measures from start until the sink had every
            # line, so its items per CPU-second are already "delivered".
            key = "delivered_items_per_cpu_s" if has_sink and not file_scenario \
                else "items_per_cpu_s"
            ipc = ratio(s[key], p[key])
            rss = ratio(s["peak_rss_mib"], p["peak_rss_mib"])
            acc = ratio(s["items_per_cpu_s"], p["items_per_cpu_s"])
            per_s = "delivered_items_per_s" if has_sink and not file_scenario else "items_per_s"
            thr = ratio(s[per_s], p[per_s])
            what = "delivered" if has_sink else "accepted"
            w(f"**sluice / {peer}:** {what} items per CPU-second **{fmt(ipc, 2)}×**"
              + (f" (accepted items per CPU-second over the window: {fmt(acc, 2)}×)"
                 if has_sink and not file_scenario else "")
              + f"; peak RSS **{fmt(rss, 2)}×**; {what} items/s {fmt(thr, 2)}×.")
            w("")
            summary_rows.append((scenario, sc["title"], peer, ipc, rss, thr, what))
            v = medians.get("sluice-gzip6")
            if v:
                vipc = ratio(v[key], p[key])
                vrss = ratio(v["peak_rss_mib"], p["peak_rss_mib"])
                w(f"**sluice-gzip6 / {peer}** (sluice's exporter at gzip level 6): {what} "
                  f"items per CPU-second **{fmt(vipc, 2)}×**; peak RSS **{fmt(vrss, 2)}×**.")
                w("")
        elif file_scenario:
            w("sluice: not measured in this run. The issue's target is 3× otelcol's lines "
              "per CPU-second.")
            w("")
    if summary_rows:
        w("## Summary: sluice / peer")
        w("")
        w("| scenario | peer | items per CPU-second | peak RSS | items/s |")
        w("| --- | --- | --- | --- | --- |")
        for scenario, title, peer, ipc, rss, thr, what in summary_rows:
            w(f"| ({scenario}) {title} | {peer} | {fmt(ipc, 2)}× ({what}) | {fmt(rss, 2)}× | "
              f"{fmt(thr, 2)}× |")
        w("")
    if notes:
        w(notes.rstrip())
        w("")
    with open(opts.out, "w") as f:
        f.write("\n".join(L))
    log(f"wrote {opts.out}")
    return 0


def cmd_meta(opts):
    """Describes the machine, the code and the peers, as JSON on stdout."""
    def sh(*argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                                  cwd=opts.root).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = sh("free", "-m").splitlines()
    memory = ""
    if len(mem) > 1:
        total = int(mem[1].split()[1])
        memory = f"{total / 1024:.1f} GiB total (free -m: {' '.join(mem[1].split()[1:4])} MiB total/used/free)"
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        # as built (scripts/bench passes what it saw right after the build)
        "commit": opts.commit or sh("git", "rev-parse", "--short=12", "HEAD"),
        "changed_files": (opts.changed.split() if opts.commit else
                          [line.split(None, 1)[1] for line in
                           sh("git", "status", "--porcelain", "--untracked-files=all").splitlines()
                           if line.strip()]),
        "cpu": cpu,
        "cores": f"{os.cpu_count()} online (nothing pinned)",
        "memory": memory,
        "kernel": sh("uname", "-sr"),
        "rustc": sh("rustc", "--version"),
        "versions": json.loads(opts.versions),
        "commands": opts.command,
        "quiet": json.loads(opts.quiet) if opts.quiet else None,
        "batch": opts.batch, "concurrency": opts.concurrency, "duration": opts.duration,
        "warmup": opts.warmup, "rounds": opts.rounds,
    }
    print(json.dumps(meta, indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("wait-quiet")
    q.add_argument("--max-seconds", type=int, default=900)
    q.add_argument("--interval", type=int, default=30)
    r = sub.add_parser("run")
    r.add_argument("--bin-dir", required=True, help="holds sluice-loadgen and sluice-sink")
    r.add_argument("--sluice", required=True)
    r.add_argument("--rotel", default="")
    r.add_argument("--otelcol", default="")
    r.add_argument("--scenarios", default="a,b,c,d,e,f")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--duration", type=float, default=20)
    r.add_argument("--warmup", type=float, default=3)
    r.add_argument("--batch", type=int, default=512)
    r.add_argument("--concurrency", type=int, default=4)
    r.add_argument("--lines", type=int, default=1_000_000)
    r.add_argument("--file-timeout", type=float, default=180)
    r.add_argument("--no-direct", dest="direct", action="store_false")
    r.add_argument("--workdir", required=True)
    r.add_argument("--cache", required=True)
    r.add_argument("--out", required=True)
    p = sub.add_parser("report")
    p.add_argument("--results", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--notes", default=os.path.join(HERE, "notes.md"))
    p.add_argument("--out", required=True)
    m = sub.add_parser("meta")
    m.add_argument("--root", required=True)
    m.add_argument("--versions", default="{}", help="JSON object")
    m.add_argument("--quiet", default="", help="JSON from wait-quiet")
    m.add_argument("--command", action="append", default=[])
    m.add_argument("--commit", default="", help="commit the measured sluice was built from")
    m.add_argument("--changed", default="", help="uncommitted files at build time")
    for k, d in (("batch", 512), ("concurrency", 4), ("duration", 20.0), ("warmup", 3.0),
                 ("rounds", 2)):
        m.add_argument(f"--{k}", type=type(d), default=d)
    opts = ap.parse_args()
    if opts.cmd == "meta":
        return cmd_meta(opts)
    if opts.cmd == "wait-quiet":
        return cmd_wait_quiet(opts)
    if opts.cmd == "run":
        return cmd_run(opts)
    return cmd_report(opts)


if __name__ == "__main__":
    sys.exit(main())
