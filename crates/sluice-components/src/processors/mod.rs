pub mod attributes;
pub mod batch;
pub mod memory_limiter;
