pub mod filelog;
pub mod haystack;
pub mod kafka;
pub mod kinesis;
pub mod otlp;
