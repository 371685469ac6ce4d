//! The client settings the `kafka` exporter and receiver share: brokers,
//! client id, SASL, TLS and librdkafka properties passed through as they
//! are, turned into one librdkafka configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::{Deserialize, Deserializer};
use sluice_core::FieldError;

/// A SASL mechanism librdkafka implements itself (no Cyrus SASL needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `auth::sasl`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslSettings {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (required).
    pub mechanism: SaslMechanism,
    /// Required.
    pub username: String,
    /// Required (use `${env:VAR}` to keep it out of the file).
    pub password: String,
}

/// `auth::tls`: present (even empty, `tls: {}`) means TLS is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file of the CA(s) that signed the brokers' certificates (default:
    /// the system's trust store).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any broker certificate and host name (default false). For
    /// tests only: it gives up the protection TLS is for.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// `auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// SASL authentication (default none).
    #[serde(default)]
    pub sasl: Option<SaslSettings>,
    /// TLS (default off). `tls:` with an empty body turns it on with defaults.
    #[serde(default, deserialize_with = "present_means_on")]
    pub tls: Option<TlsSettings>,
}

fn present_means_on<'de, D: Deserializer<'de>>(d: D) -> Result<Option<TlsSettings>, D::Error> {
    Ok(Some(
        Option::<TlsSettings>::deserialize(d)?.unwrap_or_default(),
    ))
}

/// A librdkafka property value as written in YAML: a string, number or
/// boolean, passed on as its text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

impl std::fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PropertyValue::Bool(b) => write!(f, "{b}"),
            PropertyValue::Int(i) => write!(f, "{i}"),
            PropertyValue::Float(x) => write!(f, "{x}"),
            PropertyValue::Str(s) => f.write_str(s),
        }
    }
}

/// Properties a dedicated field sets, for every client.
const COMMON_RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("client.id", "client_id"),
    ("security.protocol", "auth"),
    ("sasl.mechanism", "auth::sasl::mechanism"),
    ("sasl.mechanisms", "auth::sasl::mechanism"),
    ("sasl.username", "auth::sasl::username"),
    ("sasl.password", "auth::sasl::password"),
    ("ssl.ca.location", "auth::tls::ca_file"),
    ("ssl.certificate.location", "auth::tls::cert_file"),
    ("ssl.key.location", "auth::tls::key_file"),
    (
        "enable.ssl.certificate.verification",
        "auth::tls::insecure_skip_verify",
    ),
    (
        "ssl.endpoint.identification.algorithm",
        "auth::tls::insecure_skip_verify",
    ),
];

/// What the exporter and receiver share in their configs. Both configs
/// carry these fields at their top level (serde cannot flatten into a
/// struct that denies unknown fields) and hand them over with a `client()`
/// method.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientSettings {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub auth: AuthSettings,
    pub properties: BTreeMap<String, PropertyValue>,
}

impl ClientSettings {
    /// Checks the settings; `reserved` lists the component's own
    /// properties (name, the field or reason to give instead).
    pub fn validate(&self, reserved: &[(&str, &str)]) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.brokers.is_empty() {
            errors.push(FieldError::new(
                "brokers",
                "required: at least one broker as `host:port`, e.g. [kafka-1:9092]",
            ));
        }
        for (i, entry) in self.brokers.iter().enumerate() {
            for b in entry.split(',') {
                if let Err(m) = check_broker(b.trim()) {
                    errors.push(FieldError::new(format!("brokers::{i}"), m));
                }
            }
        }
        if self.client_id.trim().is_empty() {
            errors.push(FieldError::new("client_id", "must not be empty"));
        }
        if let Some(sasl) = &self.auth.sasl {
            if sasl.username.is_empty() {
                errors.push(FieldError::new(
                    "auth::sasl::username",
                    "required with auth::sasl",
                ));
            }
            if sasl.password.is_empty() {
                errors.push(FieldError::new(
                    "auth::sasl::password",
                    "required with auth::sasl",
                ));
            }
        }
        if let Some(tls) = &self.auth.tls {
            if tls.cert_file.is_some() != tls.key_file.is_some() {
                let missing = if tls.cert_file.is_some() {
                    "key_file"
                } else {
                    "cert_file"
                };
                errors.push(FieldError::new(
                    format!("auth::tls::{missing}"),
                    "cert_file and key_file go together",
                ));
            }
        }
        for (key, value) in &self.properties {
            let path = format!("properties::{key}");
            let name = key.trim();
            if let Some((_, field)) = COMMON_RESERVED
                .iter()
                .chain(reserved.iter())
                .find(|(n, _)| *n == name)
            {
                errors.push(FieldError::new(
                    path,
                    format!("set by sluice; use {field} instead"),
                ));
                continue;
            }
            // librdkafka checks names and values when they are set, with no
            // client created: an unknown property or a bad value is caught
            // here, at validation.
            let mut probe = ClientConfig::new();
            probe.set(name, value.to_string());
            if let Err(e) = probe.create_native_config() {
                errors.push(FieldError::new(path, e.to_string()));
            }
        }
        errors
    }

    /// The librdkafka configuration these settings make: the component's
    /// `defaults`, then the passed-through properties, then its `fixed`
    /// properties (which validation keeps out of `properties`).
    pub fn client_config(
        &self,
        defaults: &[(&str, String)],
        fixed: &[(&str, String)],
    ) -> ClientConfig {
        let mut c = ClientConfig::new();
        let brokers: Vec<&str> = self
            .brokers
            .iter()
            .flat_map(|e| e.split(','))
            .map(str::trim)
            .collect();
        c.set("bootstrap.servers", brokers.join(","));
        c.set("client.id", &self.client_id);
        let protocol = match (&self.auth.sasl, &self.auth.tls) {
            (None, None) => "plaintext",
            (None, Some(_)) => "ssl",
            (Some(_), None) => "sasl_plaintext",
            (Some(_), Some(_)) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(sasl) = &self.auth.sasl {
            c.set("sasl.mechanism", sasl.mechanism.as_str());
            c.set("sasl.username", &sasl.username);
            c.set("sasl.password", &sasl.password);
        }
        if let Some(tls) = &self.auth.tls {
            if let Some(p) = &tls.ca_file {
                c.set("ssl.ca.location", p.to_string_lossy());
            }
            if let Some(p) = &tls.cert_file {
                c.set("ssl.certificate.location", p.to_string_lossy());
            }
            if let Some(p) = &tls.key_file {
                c.set("ssl.key.location", p.to_string_lossy());
            }
            if tls.insecure_skip_verify {
                c.set("enable.ssl.certificate.verification", "false");
                c.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        for (key, value) in defaults {
            c.set(*key, value);
        }
        for (key, value) in &self.properties {
            c.set(key.trim(), value.to_string());
        }
        for (key, value) in fixed {
            c.set(*key, value);
        }
        c
    }
}

/// The default `client_id`.
pub fn default_client_id() -> String {
    "sluice".to_string()
}

/// `host:port` with a port number.
fn check_broker(b: &str) -> Result<(), String> {
    let Some((host, port)) = b.rsplit_once(':') else {
        return Err(format!("{b:?}: write a broker as `host:port`"));
    };
    if host.is_empty() || host.contains("://") {
        return Err(format!("{b:?}: write a broker as `host:port`"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{b:?}: {port:?} is not a port number"))?;
    Ok(())
}
