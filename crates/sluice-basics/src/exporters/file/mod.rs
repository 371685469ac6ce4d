//! The `file` exporter: writes every batch to a local file, as OTLP/JSON
//! lines or length-prefixed OTLP protobuf, optionally gzip-compressed and
//! rotated by size.
//!
//! **What it does.** Each batch becomes one record: with `format: json` one
//! OTLP/JSON export request (`resourceSpans`, `resourceMetrics` or
//! `resourceLogs` at the top) followed by `\n`; with `format: proto` a 4-byte
//! big-endian length followed by the protobuf export request. The exporter
//! helper provides the usual sending queue and counters; one mutex around
//! the writer keeps records whole.
//!
//! **Guarantees.** Parent directories are created at start, and the file is
//! opened for appending (existing content is kept). After every batch the
//! writer is flushed (with gzip: a sync flush), so a reader always sees whole
//! records. With rotation, when the next record would take the file over
//! `max_megabytes` (with gzip: once it is over), the file is renamed to
//! `<stem>-<UTC time>.<ext>` (`2024-05-01T12-30-45.123`) and a new one is
//! started; at most `max_backups` backups are kept, oldest deleted first.
//! Gzip streams are finished on rotation and shutdown, so every backup is a
//! complete gzip file. After a failed write the uncompressed file is cut
//! back to its last whole record; a damaged gzip file is moved aside as a
//! backup.
//!
//! **Limits.** The queue's workers send concurrently, so records of different
//! batches may be written in another order than they arrived. All signals
//! sent to one exporter share one file: JSON lines tell them apart by their
//! top-level key, proto records do not (use one exporter per signal with
//! `format: proto`). A process that dies without shutdown leaves a gzip
//! stream without its trailer (the data up to the last batch is readable).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use flate2::write::GzEncoder;
use serde::{Deserialize, Deserializer};
use sluice_core::exporter_helper::{self, QueueSettings, RetrySettings, SendError, Sender};
use sluice_core::{
    BuildContext, BuildError, ComponentConfig, ComponentError, Exporter, ExporterFactory,
    FieldError, Registry, Stability,
};
use sluice_pdata::{to_json, Batch, Signal};

/// The configured type name.
pub const TYPE: &str = "file";

const MIB: u64 = 1024 * 1024;

/// How each batch is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One OTLP/JSON export request per line (default).
    #[default]
    Json,
    /// 4-byte big-endian length, then the protobuf export request.
    Proto,
}

/// Compression of the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain file (default).
    #[default]
    None,
    /// A gzip stream, sync-flushed after every batch.
    Gzip,
}

fn default_max_megabytes() -> u64 {
    100
}

fn default_max_backups() -> usize {
    100
}

/// `rotation`: rotate the file by size.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Size (MiB, on disk) at which the file is rotated. Default 100; at
    /// least 1.
    #[serde(default = "default_max_megabytes")]
    pub max_megabytes: u64,
    /// Rotated files to keep; older ones are deleted. Default 100; 0 keeps
    /// all of them.
    #[serde(default = "default_max_backups")]
    pub max_backups: usize,
}

impl Default for RotationConfig {
    fn default() -> Self {
        RotationConfig {
            max_megabytes: default_max_megabytes(),
            max_backups: default_max_backups(),
        }
    }
}

/// `rotation:` with an empty body means rotation with the defaults.
fn rotation_or_default<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<RotationConfig>, D::Error> {
    Ok(Some(
        Option::<RotationConfig>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// Configuration of the `file` exporter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to write (required). Parent directories are created.
    pub path: PathBuf,
    /// `json` (default) or `proto`.
    #[serde(default)]
    pub format: Format,
    /// `none` (default) or `gzip`.
    #[serde(default)]
    pub compression: Compression,
    /// Size-based rotation; absent means the file is never rotated.
    #[serde(default, deserialize_with = "rotation_or_default")]
    pub rotation: Option<RotationConfig>,
    /// `sending_queue.enabled: false` writes each batch before the pipeline
    /// is answered (default: queued in memory, written by one worker).
    #[serde(default)]
    pub sending_queue: FileQueue,
}

fn default_true() -> bool {
    true
}

/// `sending_queue` of the `file` exporter: only whether there is one.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileQueue {
    /// Queue batches in memory and write them from a worker (default true).
    /// With false, the pipeline waits for the write: nothing the pipeline
    /// accepted is lost if sluice is killed (a Kafka receiver commits only
    /// what is written).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

impl Default for FileQueue {
    fn default() -> Self {
        FileQueue { enabled: true }
    }
}

impl ComponentConfig for FileConfig {
    fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.path.as_os_str().is_empty() {
            errors.push(FieldError::new("path", "must not be empty"));
        } else if self.path.file_name().is_none() {
            errors.push(FieldError::new(
                "path",
                format!("{} does not name a file", self.path.display()),
            ));
        }
        if let Some(r) = &self.rotation {
            if r.max_megabytes == 0 {
                errors.push(FieldError::new(
                    "rotation::max_megabytes",
                    "must be at least 1",
                ));
            }
        }
        errors
    }
}

/// Registers the `file` exporter.
pub fn register(r: &mut Registry) {
    r.exporter(FileFactory);
}

/// Factory of the `file` exporter.
pub struct FileFactory;

impl ExporterFactory for FileFactory {
    type Config = FileConfig;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn signals(&self) -> &'static [Signal] {
        &Signal::ALL
    }

    fn stability(&self) -> Stability {
        Stability::Alpha
    }

    fn create(
        &self,
        ctx: BuildContext,
        config: &FileConfig,
    ) -> Result<Arc<dyn Exporter>, BuildError> {
        let sender = Arc::new(FileSender::new(&ctx, config));
        // One writer keeps records in arrival order; writes are serial anyway.
        // A failed write is not retried: the error is on this machine.
        exporter_helper::build(
            &ctx,
            sender,
            &QueueSettings {
                enabled: config.sending_queue.enabled,
                num_consumers: 1,
                ..QueueSettings::default()
            },
            &RetrySettings {
                enabled: false,
                ..RetrySettings::default()
            },
            exporter_helper::DEFAULT_TIMEOUT,
        )
    }
}

/// One encoded batch.
fn encode(format: Format, batch: &Batch) -> Result<Vec<u8>, String> {
    match format {
        Format::Json => {
            let mut out = to_json(batch.payload());
            out.push(b'\n');
            Ok(out)
        }
        Format::Proto => {
            let body = batch.to_bytes();
            let len = u32::try_from(body.len()).map_err(|_| {
                format!(
                    "a batch of {} bytes does not fit the 4-byte length prefix",
                    body.len()
                )
            })?;
            let mut out = Vec::with_capacity(body.len() + 4);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
            Ok(out)
        }
    }
}

/// `YYYY-MM-DDTHH-MM-SS.mmm` for milliseconds since the Unix epoch (UTC).
pub(crate) fn timestamp(millis: u64) -> String {
    let secs = millis / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from a day count (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        millis % 1000
    )
}

/// True for `YYYY-MM-DDTHH-MM-SS.mmm`.
fn is_timestamp(s: &str) -> bool {
    const PATTERN: &[u8] = b"dddd-dd-ddTdd-dd-dd.ddd";
    s.len() == PATTERN.len()
        && s.bytes().zip(PATTERN).all(|(c, &p)| match p {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// How backups of one file are named: `<stem>-<timestamp><.ext>`.
#[derive(Debug, Clone)]
pub(crate) struct BackupNames {
    dir: PathBuf,
    stem: String,
    /// With its dot, or empty.
    ext: String,
    /// The time in the last name handed out.
    last: Option<u64>,
}

impl BackupNames {
    pub fn new(path: &Path) -> BackupNames {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        BackupNames {
            dir,
            stem,
            ext,
            last: None,
        }
    }

    pub fn name(&self, millis: u64) -> PathBuf {
        self.dir
            .join(format!("{}-{}{}", self.stem, timestamp(millis), self.ext))
    }

    /// The timestamp part if `file_name` is one of our backups.
    fn timestamp_of<'a>(&self, file_name: &'a str) -> Option<&'a str> {
        let ts = file_name
            .strip_prefix(self.stem.as_str())?
            .strip_prefix('-')?
            .strip_suffix(self.ext.as_str())?;
        is_timestamp(ts).then_some(ts)
    }

    /// Existing backups, oldest first.
    pub fn list(&self) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(ts) = self.timestamp_of(name) {
                found.push((ts.to_string(), entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// A backup name for now that is not taken yet and sorts after every
    /// backup made before (several rotations can fall in one millisecond).
    fn fresh(&mut self) -> PathBuf {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut millis = match self.last {
            Some(last) => now.max(last + 1),
            None => now,
        };
        loop {
            let p = self.name(millis);
            if !p.exists() {
                self.last = Some(millis);
                return p;
            }
            millis += 1;
        }
    }
}

/// The open file, with or without gzip on top (boxed: the compressor's state
/// is large, and there is one sink per exporter).
enum Sink {
    Plain(BufWriter<File>),
    Gzip(Box<GzEncoder<BufWriter<File>>>),
}

impl Sink {
    fn new(file: File, compression: Compression) -> Sink {
        let buf = BufWriter::with_capacity(64 * 1024, file);
        match compression {
            Compression::None => Sink::Plain(buf),
            Compression::Gzip => Sink::Gzip(Box::new(GzEncoder::new(
                buf,
                flate2::Compression::default(),
            ))),
        }
    }

    fn file(&self) -> &File {
        match self {
            Sink::Plain(w) => w.get_ref(),
            Sink::Gzip(w) => w.get_ref().get_ref(),
        }
    }

    /// Writes one record and flushes it to the file.
    fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        match self {
            Sink::Plain(w) => {
                w.write_all(record)?;
                w.flush()
            }
            Sink::Gzip(w) => {
                w.write_all(record)?;
                // A sync flush: the compressed data so far is decodable.
                w.flush()
            }
        }
    }

    /// Ends the gzip stream (if any) and flushes; returns the file.
    fn finish(self) -> io::Result<File> {
        let buf = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
        };
        buf.into_inner().map_err(|e| e.into_error())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The writer behind the mutex.
struct Writer {
    path: PathBuf,
    format: Format,
    compression: Compression,
    rotation: Option<RotationConfig>,
    backups: BackupNames,
    /// `None` after a failure or after shutdown.
    sink: Option<Sink>,
    /// Bytes on disk after the last whole record.
    size: u64,
    closed: bool,
}

impl Writer {
    fn open(
        path: &Path,
        format: Format,
        compression: Compression,
        rotation: Option<RotationConfig>,
    ) -> Result<Writer, String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| {
                format!(
                    "cannot create directory {} for {}: {e}",
                    dir.display(),
                    path.display()
                )
            })?;
        }
        let file = open_append(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let size = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .len();
        Ok(Writer {
            path: path.to_path_buf(),
            format,
            compression,
            rotation,
            backups: BackupNames::new(path),
            sink: Some(Sink::new(file, compression)),
            size,
            closed: false,
        })
    }

    fn max_bytes(&self) -> Option<u64> {
        self.rotation
            .as_ref()
            .map(|r| r.max_megabytes.saturating_mul(MIB))
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SendError> {
        if self.closed {
            return Err(SendError::Permanent(format!(
                "{} is closed (the exporter was shut down)",
                self.path.display()
            )));
        }
        let record = encode(self.format, batch).map_err(SendError::Permanent)?;
        if self.sink.is_none() {
            self.recover().map_err(|e| {
                SendError::retryable(format!("reopening {}: {e}", self.path.display()))
            })?;
        }
        if let (Some(max), Compression::None) = (self.max_bytes(), self.compression) {
            if self.size > 0 && self.size + record.len() as u64 > max {
                self.rotate();
            }
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err(SendError::retryable(format!(
                "{} is not open",
                self.path.display()
            )));
        };
        let written = sink
            .write_record(&record)
            .and_then(|()| match self.compression {
                Compression::None => Ok(self.size + record.len() as u64),
                Compression::Gzip => sink.file().metadata().map(|m| m.len()),
            });
        match written {
            Ok(size) => self.size = size,
            Err(e) => {
                // Drop the damaged writer; the next batch repairs the file.
                self.sink = None;
                if let Err(re) = self.recover() {
                    tracing::error!(path = %self.path.display(), error = %re, "cannot repair the file after a failed write");
                }
                return Err(SendError::retryable(format!(
                    "writing {}: {e}",
                    self.path.display()
                )));
            }
        }
        if let (Some(max), Compression::Gzip) = (self.max_bytes(), self.compression) {
            if self.size >= max {
                self.rotate();
            }
        }
        Ok(())
    }

    /// After a failure: cut a plain file back to its last whole record, or
    /// move a damaged gzip file aside; then reopen.
    fn recover(&mut self) -> io::Result<()> {
        match self.compression {
            Compression::None => {
                let file = open_append(&self.path)?;
                if file.metadata()?.len() > self.size {
                    file.set_len(self.size)?;
                }
                self.sink = Some(Sink::new(file, self.compression));
            }
            Compression::Gzip => {
                if self.path.exists() {
                    let backup = self.backups.fresh();
                    fs::rename(&self.path, &backup)?;
                    tracing::warn!(path = %self.path.display(), backup = %backup.display(), "moved a damaged gzip file aside");
                }
                self.sink = Some(Sink::new(open_append(&self.path)?, self.compression));
                self.size = 0;
            }
        }
        Ok(())
    }

    /// Renames the current file to a backup and starts a new one. On failure
    /// the current file is kept and writing goes on.
    fn rotate(&mut self) {
        if let Some(sink) = self.sink.take() {
            if let Err(e) = sink.finish() {
                tracing::error!(path = %self.path.display(), error = %e, "cannot finish the file before rotating it");
            }
        }
        let backup = self.backups.fresh();
        match fs::rename(&self.path, &backup) {
            Ok(()) => {
                tracing::debug!(path = %self.path.display(), backup = %backup.display(), "rotated");
                self.size = 0;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), backup = %backup.display(), error = %e, "cannot rotate the file; writing on to it");
            }
        }
        match open_append(&self.path) {
            Ok(file) => {
                self.size = file.metadata().map_or(self.size, |m| m.len());
                self.sink = Some(Sink::new(file, self.compression));
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot open the file after rotating it");
            }
        }
        self.prune();
    }

    /// Deletes the oldest backups beyond `max_backups`.
    fn prune(&self) {
        let keep = match &self.rotation {
            Some(r) if r.max_backups > 0 => r.max_backups,
            _ => return,
        };
        let backups = match self.backups.list() {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot list backups");
                return;
            }
        };
        let excess = backups.len().saturating_sub(keep);
        for old in &backups[..excess] {
            if let Err(e) = fs::remove_file(old) {
                tracing::warn!(backup = %old.display(), error = %e, "cannot delete an old backup");
            }
        }
    }

    fn close(&mut self) -> io::Result<()> {
        self.closed = true;
        match self.sink.take() {
            Some(sink) => sink.finish().map(drop),
            None => Ok(()),
        }
    }
}

/// The [`Sender`] the exporter helper drives.
pub(crate) struct FileSender {
    id: String,
    config: FileConfig,
    writer: Arc<Mutex<Option<Writer>>>,
}

impl FileSender {
    pub(crate) fn new(ctx: &BuildContext, config: &FileConfig) -> FileSender {
        FileSender {
            id: ctx.id.to_string(),
            config: config.clone(),
            writer: Arc::new(Mutex::new(None)),
        }
    }

    fn lock(writer: &Mutex<Option<Writer>>) -> std::sync::MutexGuard<'_, Option<Writer>> {
        writer.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Sender for FileSender {
    async fn start(&self) -> Result<(), ComponentError> {
        let c = self.config.clone();
        let opened = tokio::task::spawn_blocking(move || {
            Writer::open(&c.path, c.format, c.compression, c.rotation)
        })
        .await
        .map_err(|e| ComponentError::new(format!("exporter {}: {e}", self.id)))?
        .map_err(|e| ComponentError::new(format!("exporter {}: {e}", self.id)))?;
        *Self::lock(&self.writer) = Some(opened);
        Ok(())
    }

    async fn send(&self, batch: &Batch) -> Result<(), SendError> {
        let writer = self.writer.clone();
        let batch = batch.clone();
        tokio::task::spawn_blocking(move || match Self::lock(&writer).as_mut() {
            Some(w) => w.write(&batch),
            None => Err(SendError::retryable("the file exporter is not started")),
        })
        .await
        .unwrap_or_else(|e| Err(SendError::retryable(format!("file writer failed: {e}"))))
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let writer = self.writer.clone();
        let path = self.config.path.clone();
        let id = self.id.clone();
        tokio::task::spawn_blocking(move || match Self::lock(&writer).as_mut() {
            Some(w) => w.close(),
            None => Ok(()),
        })
        .await
        .map_err(|e| ComponentError::new(format!("exporter {id}: {e}")))?
        .map_err(|e| ComponentError::new(format!("exporter {id}: closing {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests;
