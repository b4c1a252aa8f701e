//! Reading the config file and the environment, and reporting every problem at once.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Deserializer};
use toml::{Table, Value};

use super::Config;

const ENV_PREFIX: &str = "KITH_";
/// Environment variables with the prefix that are not config keys.
const ENV_NOT_KEYS: &[&str] = &["KITH_CONFIG", "KITH_BIN"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

/// Where a value came from: environment values arrive as strings and get a second
/// chance as plain strings when their TOML reading has the wrong type.
#[derive(Clone, Copy, PartialEq)]
enum Source {
    File,
    Env,
}

/// Loads the configuration from an optional file and the process environment.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let file = match path {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
            text.parse::<Table>().map_err(|e| ConfigError::Syntax {
                path: path.display().to_string(),
                message: e.message().to_owned(),
            })?
        }
        None => Table::new(),
    };
    load_from(file, std::env::vars())
}

fn load_from(file: Table, env: impl Iterator<Item = (String, String)>) -> Result<Config, ConfigError> {
    let mut errors = Vec::new();
    let mut entries: Vec<(Vec<String>, Value, Source)> = Vec::new();
    collect_leaves(&file, &mut Vec::new(), &mut entries);

    for (name, raw) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            errors.push(format!("{name}: not a valid config key"));
            continue;
        }
        entries.retain(|(p, _, _)| *p != path);
        entries.push((path, parse_env_value(&raw), Source::Env));
    }

    // Check each key alone against the schema, so that every bad key is named.
    let mut merged = Table::new();
    for (path, value, source) in entries {
        let key = path.join(".");
        let value = match check_one(&path, value.clone()) {
            Ok(()) => value,
            Err(_) if source == Source::Env && !value.is_str() => {
                let as_string = Value::String(value_to_raw(&value));
                match check_one(&path, as_string.clone()) {
                    Ok(()) => as_string,
                    Err(e) => {
                        errors.push(format!("{key}: {e}"));
                        continue;
                    }
                }
            }
            Err(e) => {
                errors.push(format!("{key}: {e}"));
                continue;
            }
        };
        insert_path(&mut merged, &path, value);
    }
    if !errors.is_empty() {
        return Err(ConfigError::Invalid(errors));
    }
    let config: Config =
        Config::deserialize(Value::Table(merged)).map_err(|e| ConfigError::Invalid(vec![e.to_string()]))?;
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(ConfigError::Invalid(problems));
    }
    Ok(config)
}

/// Deserializes a config holding only this key; fails on an unknown key or a bad value.
fn check_one(path: &[String], value: Value) -> Result<(), String> {
    let mut table = Table::new();
    insert_path(&mut table, path, value);
    let mut unknown = false;
    serde_ignored::deserialize(Value::Table(table), |_| unknown = true)
        .map(|_: Config| ())
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    if unknown { Err("unknown key".to_owned()) } else { Ok(()) }
}

fn collect_leaves(table: &Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value, Source)>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            Value::Table(inner) if !inner.is_empty() => collect_leaves(inner, prefix, out),
            _ => out.push((prefix.clone(), value.clone(), Source::File)),
        }
        prefix.pop();
    }
}

fn insert_path(table: &mut Table, path: &[String], value: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut current = table;
    for part in parents {
        let entry = current.entry(part.clone()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.clone(), value);
}

/// Environment values are read as TOML values (numbers, booleans) when they parse as one.
fn parse_env_value(raw: &str) -> Value {
    format!("v = {raw}")
        .parse::<Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| Value::String(raw.to_owned()))
}

fn value_to_raw(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `""` turns a listener off.
pub(super) fn optional_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| serde::de::Error::custom(format!("{s:?} is not an address like 127.0.0.1:9008")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn env_overrides_file() {
        let file: Table = "server_name = \"a.example\"\n[listen]\nclient = \"127.0.0.1:1\"".parse().unwrap();
        let config = load_from(
            file,
            env(&[
                ("KITH_SERVER_NAME", "b.example"),
                ("KITH_RATE_LIMITS__ENABLED", "false"),
                ("KITH_REGISTRATION__SHARED_SECRET", "12345"),
                ("KITH_LISTEN__METRICS", ""),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.server_name, "b.example");
        assert_eq!(config.listen.client.port(), 1);
        assert_eq!(config.listen.metrics, None);
        assert!(!config.rate_limits.enabled);
        // A numeric-looking value for a string key stays a string.
        assert_eq!(config.registration.shared_secret.unwrap().expose_secret(), "12345");
    }

    #[test]
    fn every_bad_key_is_reported() {
        let file: Table =
            "bogus = 1\n[listen]\nclient = \"nope\"\n[registration]\nmode = \"sometimes\"".parse().unwrap();
        let Err(ConfigError::Invalid(errors)) = load_from(file, env(&[("KITH_LIMITS__NOPE", "1")])) else {
            panic!("expected errors");
        };
        let text = errors.join("\n");
        for key in ["bogus", "listen.client", "registration.mode", "limits.nope"] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert_eq!(errors.len(), 4, "{text}");
    }

    #[test]
    fn semantic_checks() {
        let file: Table = "server_name = \"not a name\"".parse().unwrap();
        let Err(ConfigError::Invalid(errors)) = load_from(file, env(&[])) else { panic!() };
        assert!(errors[0].contains("server_name"));
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let config = load_from(Table::new(), env(&[("KITH_REGISTRATION__TOKEN", "hunter2")])).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
