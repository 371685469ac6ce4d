use serde_yaml_ng::Value;

use super::{join, ConfigError};

/// Expands `${env:VAR}`, `${VAR}`, `${env:VAR:-default}` and `${VAR:-default}`
/// in every string value (not in keys), and turns `$$` into `$`.
///
/// A value that is exactly one reference takes the YAML type of what it
/// expands to (`send_batch_size: ${env:SIZE}` becomes a number), as in the
/// OpenTelemetry Collector. An unset variable without a default expands to
/// the empty string and is reported in the returned warnings; an unknown
/// provider (`${file:...}`) or an unterminated `${` is an error.
pub fn expand(
    value: &mut Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    walk(value, "", lookup, &mut errors, &mut warnings);
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors)
    }
}

fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

fn walk(
    value: &mut Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    match value {
        Value::Mapping(m) => {
            for (k, v) in m.iter_mut() {
                walk(v, &join(path, &key_str(k)), lookup, errors, warnings);
            }
        }
        Value::Sequence(seq) => {
            for (i, v) in seq.iter_mut().enumerate() {
                walk(v, &format!("{path}[{i}]"), lookup, errors, warnings);
            }
        }
        Value::String(s) if s.contains('$') => match expand_str(s, lookup) {
            Ok((out, unset, whole)) => {
                for var in unset {
                    warnings.push(format!(
                        "{path}: environment variable {var} is not set; it expands to an empty string"
                    ));
                }
                *value = if whole {
                    typed(out)
                } else {
                    Value::String(out)
                };
            }
            Err(msg) => errors.push(ConfigError::new(path, msg)),
        },
        Value::Tagged(t) => walk(&mut t.value, path, lookup, errors, warnings),
        _ => {}
    }
}

/// A scalar that came from a single reference: a number or bool if it reads
/// as one, a string otherwise.
fn typed(s: String) -> Value {
    match serde_yaml_ng::from_str::<Value>(&s) {
        Ok(v @ (Value::Number(_) | Value::Bool(_))) => v,
        _ => Value::String(s),
    }
}

/// Returns the expanded string, the unset variables, and whether the input
/// was exactly one `${...}` reference.
fn expand_str(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>, bool), String> {
    let mut out = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let mut refs = 0;
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_and_tail) = after.strip_prefix('{') {
            let end = body_and_tail
                .find('}')
                .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
            let body = &body_and_tail[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            let var = match name.split_once(':') {
                Some(("env", v)) => v,
                Some((provider, _)) => {
                    return Err(format!(
                        "unsupported config provider {provider:?} in {s:?} (only env is supported)"
                    ))
                }
                None => name,
            };
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "invalid environment variable name {var:?} in {s:?}"
                ));
            }
            match (lookup(var), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => unset.push(var.to_string()),
            }
            refs += 1;
            rest = &body_and_tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    let whole =
        refs == 1 && s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
    Ok((out, unset, whole))
}
