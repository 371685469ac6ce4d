//! The `kinesis` receiver: reads spans from an Amazon Kinesis data stream.
//!
//! This module holds the pure parts so far: KPL de-aggregation ([`kpl`]),
//! decoding per `encoding` ([`decode`]) and Haystack span validation
//! ([`validate`]).

pub mod decode;
pub mod kpl;
pub mod validate;

#[cfg(test)]
mod local_server;
#[cfg(test)]
mod tests;
