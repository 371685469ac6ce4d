pub mod debug;
pub mod file;
pub mod otlp;
pub mod otlphttp;
