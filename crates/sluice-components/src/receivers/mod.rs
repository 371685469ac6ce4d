pub mod filelog;
pub mod kafka;
pub mod kinesis;
pub mod otlp;
