pub mod filelog;
pub mod haystack;
pub mod kafka;
pub mod kinesis;
pub mod otlp;

use prometheus_client::metrics::counter::Counter;
use sluice_core::{ComponentId, Telemetry};

/// `sluice_receiver_rejected_requests_total{receiver,transport,reason}`:
/// requests a push receiver answered with an error before their items
/// reached the pipeline. One definition for every receiver, so the name and
/// help text cannot drift apart.
pub(crate) fn rejected_requests(
    telemetry: &Telemetry,
    receiver: &ComponentId,
    transport: &str,
    reason: &str,
) -> Counter {
    telemetry.counter(
        "sluice_receiver_rejected_requests",
        "Requests answered with an error before their items reached the pipeline",
        &[
            ("receiver", &receiver.to_string()),
            ("transport", transport),
            ("reason", reason),
        ],
    )
}

/// `raw` with every character but letters, digits, `_` and `-` replaced by
/// `_`: a name the `file_storage` extension accepts for a store or a key.
pub(crate) fn storage_safe(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
