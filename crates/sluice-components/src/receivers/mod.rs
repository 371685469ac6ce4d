pub mod filelog;
pub mod kafka;
pub mod otlp;
