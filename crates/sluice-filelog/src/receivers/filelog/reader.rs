//! The reading thread: expands the globs every poll, tells files apart by
//! fingerprint, reads new bytes in large chunks, cuts them into lines with
//! `memchr`, and encodes the lines straight into protobuf batches that go to
//! the committer over a bounded channel (whose bound is the backpressure).
//!
//! It runs on its own OS thread because all of it is blocking file I/O and
//! CPU work; the async runtime only sees finished batches.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use sluice_core::{Batch, Signal};
use tokio::sync::mpsc;

use super::config::{Config, Encoding, Operator, StartAt};
use super::encode::{self, LogsBuilder};
use super::glob::Pattern;
use super::state::{fnv64, FileState, Msg, Update};

/// Bytes asked of one `read` call.
const CHUNK: usize = 256 * 1024;
/// Most bytes read from one file in one poll; past it the other files get
/// their turn and the next poll starts at once.
const PER_POLL_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Encoded bytes at which a batch is sent whatever its record count.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Polls a file may go unseen (deleted, renamed out of the globs) before it
/// is forgotten, so that a file that reappears is not read again. During
/// those polls it is still read through its open handle, so that lines a
/// writer adds just after renaming it away are not lost.
const POLLS_TO_REMEMBER: u64 = 3;

/// Counters the reader moves.
#[derive(Clone, Default)]
pub struct ReaderMetrics {
    /// Log records produced from lines.
    pub lines: Counter,
    /// Lines cut at `max_log_size`.
    pub truncated: Counter,
    /// Lines whose invalid UTF-8 was replaced.
    pub invalid_utf8: Counter,
    /// Lines `json_parser` could not parse.
    pub parse_errors: Counter,
    /// Lines dropped (a `json_parser` with `on_error: drop`).
    pub dropped: Counter,
    /// Failed opens and reads.
    pub read_errors: Counter,
}

/// What the reader needs from the config, prepared once.
pub struct Settings {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    start_at: StartAt,
    poll_interval: Duration,
    max_log_size: usize,
    fingerprint_size: usize,
    force_flush_period: Duration,
    bytes_body: bool,
    include_file_name: bool,
    include_file_path: bool,
    max_concurrent_files: usize,
    max_batch_size: usize,
    /// `json_parser`: Some(drop lines that do not parse).
    json: Option<(bool, bool)>,
    resource_attrs: Vec<u8>,
    common_attrs: Vec<u8>,
}

impl Settings {
    pub fn new(c: &Config) -> Result<Settings, String> {
        let compile = |list: &[String]| -> Result<Vec<Pattern>, String> {
            list.iter().map(|p| Pattern::new(p)).collect()
        };
        let mut resource_attrs = Vec::new();
        for (k, v) in &c.resource {
            resource_attrs.extend(encode::string_attribute(encode::RESOURCE_ATTRIBUTES, k, v));
        }
        let mut common_attrs = Vec::new();
        for (k, v) in &c.attributes {
            common_attrs.extend(encode::string_attribute(encode::RECORD_ATTRIBUTES, k, v));
        }
        let json = c.json_parser().map(|op| {
            let Operator::JsonParser { on_error, .. } = op;
            (on_error.starts_with("drop"), on_error.ends_with("_quiet"))
        });
        Ok(Settings {
            include: compile(&c.include)?,
            exclude: compile(&c.exclude)?,
            start_at: c.start_at,
            poll_interval: c.poll_interval,
            max_log_size: usize::try_from(c.max_log_size.0).unwrap_or(usize::MAX),
            fingerprint_size: usize::try_from(c.fingerprint_size.0).unwrap_or(1024),
            force_flush_period: c.force_flush_period,
            bytes_body: c.encoding == Encoding::Nop,
            include_file_name: c.include_file_name,
            include_file_path: c.include_file_path,
            max_concurrent_files: c.max_concurrent_files,
            max_batch_size: c.max_batch_size,
            json,
            resource_attrs,
            common_attrs,
        })
    }
}

/// One file the reader knows.
struct Tracked {
    key: u64,
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of `file`.
    id: (u64, u64),
    /// Leading bytes, up to `fingerprint_size` (empty for an entry restored
    /// from the store and not yet found).
    fp: Vec<u8>,
    /// For a restored entry: the stored fingerprint's length and hash.
    restored: Option<(usize, u64)>,
    /// First byte not yet read (the start of a line, or inside a cut line
    /// when `skipping`).
    offset: u64,
    skipping: bool,
    /// Size and mtime when last looked at.
    size: u64,
    mtime: (i64, i64),
    /// Encoded `log.file.*` attributes.
    attrs: Vec<u8>,
    /// A last line without newline: when it was first seen, at which size.
    partial: Option<(Instant, u64)>,
    /// The poll that last found it.
    seen: u64,
}

impl Tracked {
    fn state(&self) -> FileState {
        let (len, hash) = match self.restored {
            Some(r) if self.fp.is_empty() => r,
            _ => (self.fp.len(), fnv64(&self.fp)),
        };
        FileState {
            key: self.key,
            path: self.path.to_string_lossy().into_owned(),
            fingerprint_len: len,
            fingerprint_hash: hash,
            offset: self.offset,
            skipping: self.skipping,
        }
    }

    /// True when `fp` (a file's leading bytes) starts with this file's
    /// fingerprint.
    fn matches(&self, fp: &[u8]) -> bool {
        if !self.fp.is_empty() {
            return fp.starts_with(&self.fp);
        }
        match self.restored {
            Some((len, hash)) => len > 0 && fp.len() >= len && fnv64(&fp[..len]) == hash,
            None => false,
        }
    }
}

/// Why reading stopped for good.
#[derive(Debug)]
pub struct Stopped;

/// The receiving end went away or a stop was asked for.
type Flow<T> = Result<T, Stopped>;

/// Where lines go: the batch being built and its pending updates.
struct Out {
    builder: LogsBuilder,
    updates: Vec<Update>,
    tx: mpsc::Sender<Msg>,
    max_batch_size: usize,
    max_log_size: usize,
    bytes_body: bool,
    json: Option<(bool, bool)>,
    extra: Vec<u8>,
    lossy: String,
    metrics: ReaderMetrics,
    /// Records in the batch being built (for the `lines` counter).
    pending_lines: u64,
}

impl Out {
    /// Records that `key` is delivered up to `offset` once this batch is.
    #[inline]
    fn offset(&mut self, key: u64, offset: u64, skipping: bool) {
        if let Some(Update::Offset {
            key: k,
            offset: o,
            skipping: s,
        }) = self.updates.last_mut()
        {
            if *k == key {
                *o = offset;
                *s = skipping;
                return;
            }
        }
        self.updates.push(Update::Offset {
            key,
            offset,
            skipping,
        });
    }

    /// One line (without its newline) of file `t`; `end` is the offset
    /// after it.
    #[inline]
    fn line(
        &mut self,
        mut line: &[u8],
        key: u64,
        attrs: &[u8],
        end: u64,
        skipping: bool,
        observed: u64,
    ) -> Flow<()> {
        if let [rest @ .., b'\r'] = line {
            line = rest;
        }
        if line.is_empty() {
            // Empty lines carry nothing (the Collector skips them too); this
            // also ends a partial line that was sent by force_flush_period.
            self.offset(key, end, skipping);
            return Ok(());
        }
        if line.len() > self.max_log_size {
            let mut cut = self.max_log_size;
            if !self.bytes_body {
                // Back up (at most 3 bytes) to the start of the character
                // the cut would split.
                let mut c = cut;
                for _ in 0..3 {
                    if c > 0 && (line[c] & 0xC0) == 0x80 {
                        c -= 1;
                    } else {
                        break;
                    }
                }
                if c > 0 && (line[c] & 0xC0) != 0x80 {
                    cut = c;
                }
            }
            line = &line[..cut];
            self.metrics.truncated.inc();
        }
        let body: &[u8] = if self.bytes_body {
            line
        } else {
            match std::str::from_utf8(line) {
                Ok(_) => line,
                Err(_) => {
                    self.metrics.invalid_utf8.inc();
                    self.lossy = String::from_utf8_lossy(line).into_owned();
                    self.lossy.as_bytes()
                }
            }
        };
        self.extra.clear();
        let mut keep = true;
        if let Some((drop_bad, quiet)) = self.json {
            match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body) {
                Ok(obj) => encode::json_attributes(&obj, &mut self.extra),
                Err(e) => {
                    self.metrics.parse_errors.inc();
                    if !quiet {
                        tracing::debug!(error = %e, "json_parser: the line is not a JSON object");
                    }
                    if drop_bad {
                        self.metrics.dropped.inc();
                        keep = false;
                    }
                }
            }
        }
        if keep {
            self.builder.push(body, attrs, &self.extra, observed);
            self.pending_lines += 1;
        }
        self.offset(key, end, skipping);
        if self.builder.records() >= self.max_batch_size || self.builder.len() >= MAX_BATCH_BYTES {
            self.send()?;
        }
        Ok(())
    }

    /// Sends the batch being built (or the updates alone), if there is any.
    fn send(&mut self) -> Flow<()> {
        if self.builder.is_empty() && self.updates.is_empty() {
            return Ok(());
        }
        let batch = if self.builder.is_empty() {
            None
        } else {
            let (bytes, _) = self.builder.finish();
            match Batch::from_encoded(Signal::Logs, bytes) {
                Ok(b) => Some(b),
                Err(e) => {
                    // A bug in the encoder, never input-dependent: say so
                    // loudly, count the lines, and move on.
                    tracing::error!(error = %e, "filelog built an invalid batch; its lines are dropped");
                    self.metrics.dropped.inc_by(self.pending_lines);
                    None
                }
            }
        };
        self.metrics.lines.inc_by(self.pending_lines);
        self.pending_lines = 0;
        let msg = Msg {
            batch,
            updates: std::mem::take(&mut self.updates),
        };
        self.tx.blocking_send(msg).map_err(|_| Stopped)
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn mtime(m: &std::fs::Metadata) -> (i64, i64) {
    (m.mtime(), m.mtime_nsec())
}

/// Reads up to `n` leading bytes of `file`.
fn read_prefix(file: &File, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match file.read_at(&mut buf[got..], got as u64) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// The reader thread's state.
pub struct Reader {
    s: Settings,
    stop: Arc<AtomicBool>,
    tracked: Vec<Tracked>,
    next_key: u64,
    gen: u64,
    first_poll: bool,
    buf: Vec<u8>,
    out: Out,
    id: String,
    /// Stored offsets were found at start.
    resumed: bool,
}

impl Reader {
    /// `restored`: the state stored by a previous run, keys assigned (the
    /// committer starts from the same entries).
    pub fn new(
        id: String,
        s: Settings,
        restored: Vec<FileState>,
        tx: mpsc::Sender<Msg>,
        stop: Arc<AtomicBool>,
        metrics: ReaderMetrics,
    ) -> Reader {
        let builder = LogsBuilder::new(&s.resource_attrs, s.common_attrs.clone(), s.bytes_body);
        let out = Out {
            builder,
            updates: Vec::new(),
            tx,
            max_batch_size: s.max_batch_size,
            max_log_size: s.max_log_size,
            bytes_body: s.bytes_body,
            json: s.json,
            extra: Vec::new(),
            lossy: String::new(),
            metrics,
            pending_lines: 0,
        };
        let mut r = Reader {
            buf: vec![0; s.max_log_size.saturating_add(CHUNK)],
            s,
            stop,
            tracked: Vec::new(),
            next_key: 1,
            gen: 0,
            first_poll: true,
            out,
            id,
            resumed: !restored.is_empty(),
        };
        for st in restored {
            let key = st.key;
            r.next_key = r.next_key.max(key + 1);
            let path = PathBuf::from(&st.path);
            let attrs = r.attrs_for(&path);
            r.tracked.push(Tracked {
                key,
                path,
                file: None,
                id: (0, 0),
                fp: Vec::new(),
                restored: Some((st.fingerprint_len, st.fingerprint_hash)),
                offset: st.offset,
                skipping: st.skipping,
                size: 0,
                mtime: (0, 0),
                attrs,
                partial: None,
                seen: 0,
            });
        }
        r
    }

    fn new_key(&mut self) -> u64 {
        let k = self.next_key;
        self.next_key += 1;
        k
    }

    fn attrs_for(&self, path: &Path) -> Vec<u8> {
        let mut a = Vec::new();
        if self.s.include_file_name {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            a.extend(encode::string_attribute(
                encode::RECORD_ATTRIBUTES,
                "log.file.name",
                &name,
            ));
        }
        if self.s.include_file_path {
            a.extend(encode::string_attribute(
                encode::RECORD_ATTRIBUTES,
                "log.file.path",
                &path.to_string_lossy(),
            ));
        }
        a
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Polls until stopped or the committer is gone.
    pub fn run(mut self) {
        loop {
            if self.stopped() {
                break;
            }
            let more = match self.poll() {
                Ok(more) => more,
                Err(Stopped) => break,
            };
            if self.out.send().is_err() || self.stopped() {
                break;
            }
            if !more {
                let until = Instant::now() + self.s.poll_interval;
                while !self.stopped() {
                    let now = Instant::now();
                    if now >= until {
                        break;
                    }
                    std::thread::park_timeout(until - now);
                }
            }
        }
        tracing::debug!(receiver = %self.id, "filelog reader stopped");
    }

    /// The matching paths, sorted, without duplicates or excluded ones.
    fn matching_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for p in &self.s.include {
            p.expand(&mut paths);
        }
        paths.sort();
        paths.dedup();
        paths.retain(|p| !self.s.exclude.iter().any(|e| e.matches(p)));
        paths
    }

    /// One poll: find files, read what is new. True when a file had more to
    /// read than one poll takes.
    fn poll(&mut self) -> Flow<bool> {
        self.gen += 1;
        let gen = self.gen;
        let paths = self.matching_paths();
        let by_path: HashMap<PathBuf, usize> = self
            .tracked
            .iter()
            .enumerate()
            .filter(|(_, t)| t.file.is_some())
            .map(|(i, t)| (t.path.clone(), i))
            .collect();
        let mut to_read: Vec<usize> = Vec::new();
        let mut slow: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
        let mut track: Vec<usize> = Vec::new();

        // Pass 1: files still at the path and inode where they were, whose
        // leading bytes did not change.
        for path in paths {
            let meta = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            let id = (meta.dev(), meta.ino());
            let Some(&i) = by_path.get(path.as_path()) else {
                slow.push((path, meta));
                continue;
            };
            let t = &mut self.tracked[i];
            if t.id != id || t.seen == gen {
                slow.push((path, meta));
                continue;
            }
            let size = meta.len();
            if size == t.size && mtime(&meta) == t.mtime {
                t.seen = gen;
                if t.offset < size {
                    to_read.push(i);
                }
                continue;
            }
            // Changed: check that it is still the same content.
            let Some(file) = &t.file else {
                slow.push((path, meta));
                continue;
            };
            let prefix = match read_prefix(file, self.s.fingerprint_size) {
                Ok(p) => p,
                Err(_) => {
                    slow.push((path, meta));
                    continue;
                }
            };
            if prefix.is_empty() || !prefix.starts_with(&t.fp) {
                // Truncated and rewritten in place: a new file at this path.
                slow.push((path, meta));
                continue;
            }
            t.seen = gen;
            t.size = size;
            t.mtime = mtime(&meta);
            if prefix.len() > t.fp.len() {
                t.fp = prefix;
                track.push(i);
            }
            if size < t.offset {
                tracing::info!(receiver = %self.id, path = %t.path.display(), "file was truncated; reading it from the start");
                t.offset = 0;
                t.skipping = false;
                t.partial = None;
                track.push(i);
            }
            to_read.push(i);
        }

        // Pass 2: new paths, renamed files, rewritten files.
        for (path, meta) in slow {
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    self.out.metrics.read_errors.inc();
                    tracing::warn!(receiver = %self.id, path = %path.display(), error = %e, "cannot open file");
                    continue;
                }
            };
            let fp = match read_prefix(&file, self.s.fingerprint_size) {
                Ok(p) => p,
                Err(e) => {
                    self.out.metrics.read_errors.inc();
                    tracing::warn!(receiver = %self.id, path = %path.display(), error = %e, "cannot read file");
                    continue;
                }
            };
            if fp.is_empty() {
                // Nothing to identify it by yet: looked at again next poll.
                continue;
            }
            let id = (meta.dev(), meta.ino());
            let size = meta.len();
            if self.tracked.iter().any(|t| {
                t.seen == gen && !t.fp.is_empty() && fp.starts_with(&t.fp) && t.fp.len() == fp.len()
            }) {
                tracing::debug!(receiver = %self.id, path = %path.display(), "same content as a file already read in this poll; skipped");
                continue;
            }
            let found = self
                .tracked
                .iter()
                .enumerate()
                .filter(|(_, t)| t.seen != gen && t.matches(&fp))
                .max_by_key(|(_, t)| (t.id == id, t.fp.len()))
                .map(|(i, _)| i);
            let i = match found {
                Some(i) => {
                    let attrs = (self.tracked[i].path != path).then(|| self.attrs_for(&path));
                    let t = &mut self.tracked[i];
                    if let Some(attrs) = attrs {
                        t.path = path;
                        t.attrs = attrs;
                        track.push(i);
                    }
                    if fp.len() > t.fp.len() {
                        t.fp = fp;
                        track.push(i);
                    }
                    t.restored = None;
                    t.file = Some(file);
                    t.id = id;
                    if size < t.offset {
                        t.offset = 0;
                        t.skipping = false;
                        t.partial = None;
                        track.push(i);
                    }
                    i
                }
                None => {
                    // `start_at: end` is for a first start only: when resuming
                    // from stored offsets, a file that appeared while sluice
                    // was down is new and read from its start.
                    let offset =
                        if self.first_poll && self.s.start_at == StartAt::End && !self.resumed {
                            size
                        } else {
                            0
                        };
                    let key = self.new_key();
                    let attrs = self.attrs_for(&path);
                    self.tracked.push(Tracked {
                        key,
                        path,
                        file: Some(file),
                        id,
                        fp,
                        restored: None,
                        offset,
                        skipping: false,
                        size,
                        mtime: (0, 0),
                        attrs,
                        partial: None,
                        seen: gen,
                    });
                    let i = self.tracked.len() - 1;
                    track.push(i);
                    i
                }
            };
            let t = &mut self.tracked[i];
            t.seen = gen;
            t.size = size;
            t.mtime = mtime(&meta);
            to_read.push(i);
        }
        track.sort_unstable();
        track.dedup();
        for i in track {
            let st = self.tracked[i].state();
            self.out.updates.push(Update::Track(st));
        }
        self.first_poll = false;

        // Files no longer found (renamed away, deleted) are read to their
        // end through the handle kept from the previous poll, if their
        // content is still theirs.
        let mut lost = Vec::new();
        for (i, t) in self.tracked.iter_mut().enumerate() {
            if t.seen == gen {
                continue;
            }
            let Some(file) = &t.file else { continue };
            match read_prefix(file, t.fp.len()) {
                Ok(p) if !t.fp.is_empty() && p == t.fp => lost.push(i),
                _ => t.file = None,
            }
        }

        let mut more = false;
        for i in to_read {
            more |= self.read_file(i)?;
        }
        for i in lost {
            if self.read_file(i)? {
                // Not at its end yet: found lost again next poll, and read on.
                more = true;
            } else if gen.saturating_sub(self.tracked[i].seen) > POLLS_TO_REMEMBER {
                // A writer that kept its handle across the rename has had a
                // few polls to finish; after that the file is let go.
                self.tracked[i].file = None;
            }
        }

        // Forget what has been gone for a while.
        let mut forgotten = Vec::new();
        self.tracked.retain(|t| {
            let keep = t.file.is_some() || gen.saturating_sub(t.seen) <= POLLS_TO_REMEMBER;
            if !keep {
                forgotten.push(t.key);
            }
            keep
        });
        self.out
            .updates
            .extend(forgotten.into_iter().map(Update::Forget));

        // Keep at most max_concurrent_files handles: close those at their end.
        let mut open = self.tracked.iter().filter(|t| t.file.is_some()).count();
        if open > self.s.max_concurrent_files {
            for t in self.tracked.iter_mut() {
                if open <= self.s.max_concurrent_files {
                    break;
                }
                if t.file.is_some() && t.offset >= t.size {
                    t.file = None;
                    open -= 1;
                }
            }
        }
        Ok(more)
    }

    /// Reads file `i` from its offset to its end (or the per-poll bound).
    /// True when the bound stopped it.
    fn read_file(&mut self, i: usize) -> Flow<bool> {
        let t = &mut self.tracked[i];
        let Some(file) = t.file.as_ref() else {
            return Ok(false);
        };
        let out = &mut self.out;
        let buf = &mut self.buf;
        let max = self.s.max_log_size;
        let key = t.key;
        let mut pos = t.offset; // file offset of buf[0]
        let mut filled = 0usize;
        let mut read_total = 0u64;
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(Stopped);
            }
            if read_total >= PER_POLL_FILE_BYTES {
                return Ok(true);
            }
            let end = (filled + CHUNK).min(buf.len());
            let n = match file.read_at(&mut buf[filled..end], pos + filled as u64) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.metrics.read_errors.inc();
                    tracing::warn!(path = %t.path.display(), error = %e, "cannot read file");
                    return Ok(false);
                }
            };
            if n == 0 {
                // End of file: `buf[..filled]` is a last line without newline.
                t.size = t.size.max(pos + filled as u64);
                if filled == 0 || t.skipping || self.s.force_flush_period.is_zero() {
                    t.partial = None;
                    return Ok(false);
                }
                let size = pos + filled as u64;
                match t.partial {
                    Some((since, at)) if at == size => {
                        if since.elapsed() >= self.s.force_flush_period {
                            t.partial = None;
                            t.offset = size;
                            out.line(&buf[..filled], key, &t.attrs, size, false, now_nanos())?;
                        }
                    }
                    _ => t.partial = Some((Instant::now(), size)),
                }
                return Ok(false);
            }
            let observed = now_nanos();
            filled += n;
            read_total += n as u64;
            t.size = t.size.max(pos + filled as u64);
            let mut start = 0usize;
            if t.skipping {
                match memchr::memchr(b'\n', &buf[..filled]) {
                    Some(j) => {
                        start = j + 1;
                        t.skipping = false;
                    }
                    None => start = filled,
                }
                t.offset = pos + start as u64;
            }
            let base = start;
            for j in memchr::memchr_iter(b'\n', &buf[base..filled]) {
                let nl = base + j;
                let line_end = pos + nl as u64 + 1;
                t.offset = line_end;
                t.partial = None;
                out.line(&buf[start..nl], key, &t.attrs, line_end, false, observed)?;
                start = nl + 1;
            }
            if filled - start >= max {
                // No newline within max_log_size: send the first part, skip
                // the rest of the line.
                let cut_end = pos + filled as u64;
                t.skipping = true;
                t.offset = cut_end;
                out.line(&buf[start..filled], key, &t.attrs, cut_end, true, observed)?;
                start = filled;
            }
            buf.copy_within(start..filled, 0);
            pos += start as u64;
            filled -= start;
        }
    }
}
