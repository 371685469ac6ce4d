use std::sync::Arc;

use sluice_core::factory::parse_config;
use sluice_core::telemetry::MetricsLevel;
use sluice_core::{
    BuildContext, ComponentConfig, ComponentId, ExtensionFactory, Health, Kind, Lifecycle,
    ServiceState, Telemetry,
};

use super::{HealthCheck, HealthCheckConfig, HealthCheckFactory};

fn ctx(health: &Health) -> BuildContext {
    BuildContext {
        id: ComponentId::new("health_check", None),
        kind: Kind::Extension,
        pipeline: None,
        signal: None,
        telemetry: Telemetry::new(MetricsLevel::Normal),
        health: health.clone(),
        extensions: Default::default(),
        signals: sluice_core::Signal::ALL.to_vec(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(url: &str) -> (u16, String, Option<String>) {
    let resp = client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.text().await.unwrap(), ctype)
}

async fn started(health: &Health, path: &str) -> (Arc<HealthCheck>, String) {
    let cfg = HealthCheckConfig {
        endpoint: "127.0.0.1:0".into(),
        path: path.into(),
    };
    let ext = Arc::new(HealthCheck::new(&ctx(health), &cfg));
    ext.start().await.unwrap();
    let addr = ext.local_addr().unwrap();
    (ext, format!("http://{addr}"))
}

#[tokio::test]
async fn status_follows_the_service_state() {
    let health = Health::default();
    let (ext, base) = started(&health, "/health/status").await;
    let url = format!("{base}/health/status");

    let (status, body, ctype) = get(&url).await;
    assert_eq!(status, 503);
    assert_eq!(body, r#"{"status":"Server not available"}"#);
    assert_eq!(ctype.as_deref(), Some("application/json"));

    health.set(ServiceState::Running);
    let (status, body, _) = get(&url).await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"status":"Server available"}"#);

    health.set(ServiceState::Stopping);
    let (status, body, _) = get(&url).await;
    assert_eq!(status, 503);
    assert_eq!(body, r#"{"status":"Server not available"}"#);

    // Other paths and methods.
    assert_eq!(get(&format!("{base}/")).await.0, 404);
    assert_eq!(get(&format!("{base}/health/status/x")).await.0, 404);
    let resp = client().post(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(resp.headers()["allow"], "GET, HEAD");

    ext.shutdown().await.unwrap();
    assert!(
        client().get(&url).send().await.is_err(),
        "still listening after shutdown"
    );
}

#[tokio::test]
async fn default_path_is_root_and_query_strings_are_ignored() {
    let health = Health::default();
    health.set(ServiceState::Running);
    let (ext, base) = started(&health, "/").await;
    assert_eq!(get(&format!("{base}/")).await.0, 200);
    assert_eq!(get(&format!("{base}/?verbose")).await.0, 200);
    ext.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_busy_port_fails_start_naming_the_endpoint() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = taken.local_addr().unwrap().to_string();
    let cfg = HealthCheckConfig {
        endpoint: endpoint.clone(),
        path: "/".into(),
    };
    let ext = HealthCheckFactory
        .create(ctx(&Health::default()), &cfg)
        .unwrap();
    let err = ext.start().await.unwrap_err().to_string();
    assert!(err.contains(&endpoint), "{err}");
    // Shutting down a component that never started is fine.
    ext.shutdown().await.unwrap();
}

#[test]
fn config_defaults_validation_and_listen_addresses() {
    let cfg: HealthCheckConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(cfg.endpoint, "127.0.0.1:13133");
    assert_eq!(cfg.path, "/");
    let listen = cfg.listen_addresses();
    assert_eq!(listen.len(), 1);
    assert_eq!(listen[0].path, "endpoint");
    assert_eq!(listen[0].address, "127.0.0.1:13133");

    let paths = |yaml: &str| -> Vec<String> {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(yaml).unwrap();
        parse_config::<HealthCheckConfig>(&v)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.path)
            .collect()
    };
    assert!(paths("").is_empty());
    assert!(paths("endpoint: 0.0.0.0:13133\npath: /health").is_empty());
    assert!(paths("endpoint: localhost:80").is_empty());
    assert!(paths("endpoint: '[::1]:13133'").is_empty());
    assert_eq!(paths("endpoint: 13133"), vec!["endpoint"]);
    assert_eq!(paths("endpoint: ':13133'"), vec!["endpoint"]);
    assert_eq!(paths("endpoint: localhost:http"), vec!["endpoint"]);
    assert_eq!(paths("endpoint: ::1:80"), vec!["endpoint"]);
    assert_eq!(paths("endpoint: localhost:70000"), vec!["endpoint"]);
    assert_eq!(paths("path: health"), vec!["path"]);
    assert_eq!(paths("path: /h?x=1"), vec!["path"]);
    assert_eq!(paths("check_collector_pipeline: {}").len(), 1);
}
