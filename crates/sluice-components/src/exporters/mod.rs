pub mod debug;
pub mod file;
pub mod kafka;
pub mod otlp;
pub mod otlphttp;
