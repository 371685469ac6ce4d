pub mod kafka;
pub mod otlp;
