//! The one check of a listening `host:port` every component's config uses,
//! so receivers and extensions accept and refuse the same endpoints with the
//! same words.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Checks `host:port` syntax without resolving anything. The host is an IPv4
/// literal, a bracketed IPv6 literal or a DNS name; the port is 0..=65535
/// (0 picks a free port, mostly useful in tests).
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let Some((host, port)) = endpoint.rsplit_once(':') else {
        return Err(format!(
            "{endpoint:?} is not host:port (for example 127.0.0.1:4317)"
        ));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "{endpoint:?}: port {port:?} is not a number from 0 to 65535"
        ));
    }
    if host.is_empty() {
        return Err(format!(
            "{endpoint:?} has no host; use 0.0.0.0:{port} to listen on every interface"
        ));
    }
    if let Some(inner) = host.strip_prefix('[') {
        let ok = inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
        return if ok {
            Ok(())
        } else {
            Err(format!(
                "{endpoint:?}: {host:?} is not a valid IPv6 address"
            ))
        };
    }
    if host.contains(':') {
        return Err(format!(
            "{endpoint:?}: an IPv6 address must be written in brackets, as [::1]:{port}"
        ));
    }
    if host.parse::<Ipv4Addr>().is_ok() {
        return Ok(());
    }
    let dns_ok = host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if dns_ok {
        Ok(())
    } else {
        Err(format!(
            "{endpoint:?}: {host:?} is neither an IP address nor a host name"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_endpoint;

    #[test]
    fn endpoints_are_checked_without_resolving() {
        for bad in [
            ":4317",
            "::1:4317",
            "[::1:4317",
            "bad host:1",
            "h:",
            "1.2.3.4:-1",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad} accepted");
        }
        for good in [
            "0.0.0.0:4317",
            "[::1]:4317",
            "localhost:4318",
            "otel-gw.svc.local:0",
        ] {
            assert!(check_endpoint(good).is_ok(), "{good} rejected");
        }
    }
}
