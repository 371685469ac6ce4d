//! What the `kafka` exporter and receiver share: the client settings
//! (brokers, SASL, TLS, librdkafka properties passed through) and the
//! message encodings.
//!
//! Both components use librdkafka through the `rdkafka` crate, built from
//! the source the crate bundles and linked statically: never a system
//! librdkafka, whose age decides which broker versions work (Debian's 2.0.2
//! cannot parse the tagged fields newer brokers send). TLS and the SCRAM
//! mechanisms use the system's OpenSSL (libssl-dev at build time).

pub mod client;
pub mod encoding;
#[cfg(test)]
pub(crate) mod test_support;

pub use client::{
    AuthSettings, ClientSettings, PropertyValue, SaslMechanism, SaslSettings, TlsSettings,
};
pub use encoding::{decode, decode_haystack, encode_haystack, encode_otlp, DecodeError, Encoding};

/// Checks a Kafka topic name: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn check_topic(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a topic name must not be empty".to_string());
    }
    if name.len() > 249 {
        return Err(format!("{name:?} is longer than 249 characters"));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "{name:?}: topic names hold only letters, digits, '.', '_' and '-' (found {c:?})"
        ));
    }
    Ok(())
}
