pub mod filelog;
pub mod otlp;
