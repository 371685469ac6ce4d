//! The configs shown in README.md, docs/getting-started.md and some
//! component docs are valid: every ```yaml block with a `service:` section
//! passes `sluice validate`.

mod support;

use std::path::Path;

use support::*;

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            None if line.trim_start().starts_with("```yaml") => current = Some(String::new()),
            Some(_) if line.trim_start().starts_with("```") => out.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    out
}

fn check_doc(relative: &str, min_configs: usize) {
    check_doc_with_env(relative, min_configs, &[]);
}

/// As [`check_doc`], with environment variables the configs refer to.
fn check_doc_with_env(relative: &str, min_configs: usize, env: &[(&str, &str)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {relative}: {e}"));
    let configs: Vec<String> = yaml_blocks(&text)
        .into_iter()
        .filter(|b| b.lines().any(|l| l.starts_with("service:")))
        .collect();
    assert!(
        configs.len() >= min_configs,
        "{relative}: expected at least {min_configs} complete configs, found {}",
        configs.len()
    );
    let dir = TestDir::new();
    for (i, yaml) in configs.iter().enumerate() {
        let cfg = dir.write_config(&format!("doc-{i}.yaml"), yaml);
        let mut s =
            Sluice::spawn_with_env(dir.path(), &["validate", "-c", cfg.to_str().unwrap()], env);
        let st = s.wait_exit(CLI_TIMEOUT);
        let out = CliOutput {
            code: st.code(),
            stdout: s.stdout(),
            stderr: s.stderr(),
        };
        assert!(
            out.code == Some(0) && out.stdout.contains("configuration is valid"),
            "{relative}: config block {} does not validate\n{yaml}\n{}",
            i + 1,
            out.describe()
        );
    }
}

#[test]
fn readme_config_validates() {
    check_doc("README.md", 1);
}

#[test]
fn getting_started_configs_validate() {
    check_doc("docs/getting-started.md", 2);
}

#[test]
fn attributes_processor_doc_config_validates() {
    check_doc("docs/components/processor-attributes.md", 1);
}

#[test]
fn readme_starts_with_the_run_and_test_commands() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let head: Vec<&str> = text.lines().take(6).collect();
    let head = head.join("\n");
    assert!(
        head.contains("cargo run --release -- run"),
        "README head:\n{head}"
    );
    assert!(head.contains("scripts/test"), "README head:\n{head}");
}

#[test]
fn kinesis_receiver_doc_config_validates() {
    check_doc("docs/components/receiver-kinesis.md", 1);
}

#[test]
fn haystack_receiver_doc_configs_validate() {
    check_doc("docs/components/receiver-haystack_http.md", 1);
    check_doc("docs/components/receiver-haystack_grpc.md", 1);
}

#[test]
fn kafka_exporter_doc_configs_validate() {
    check_doc_with_env(
        "docs/components/exporter-kafka.md",
        2,
        &[("KAFKA_PASSWORD", "example")],
    );
}
