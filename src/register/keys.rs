//! `key=value` access to a pipeline through its serde form, so that a
//! stage's parameters reach the CLI's `--set`, the session file and the
//! panel by being fields of a serialisable struct, with no per-key code.
//!
//! A key is `name` for a top-level field (`finest_mm`) and `stage.name` for
//! a stage's field (`deformable.lr`); a group nested inside a stage (the
//! similarity weights) is flattened into the stage (`deformable.lncc`). A
//! value is parsed as the field's current JSON type says: a bool, a whole
//! number, a finite number, a word, or a comma-separated list of numbers;
//! the pipeline is then rebuilt by serde, which refuses what the type does
//! not allow (an unknown enum word).

use std::collections::BTreeMap;

use serde_json::Value;

use super::params::{ParamError, Pipeline};

/// Top-level fields that are not parameters (the preset's name).
const NOT_PARAMETERS: [&str; 1] = ["preset"];

/// Every parameter key in `json` (a pipeline's serde form) with the JSON
/// path that holds it, sorted by key.
fn paths(json: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    if let Value::Object(top) = json {
        for (name, v) in top {
            if NOT_PARAMETERS.contains(&name.as_str()) {
                continue;
            }
            match v {
                Value::Object(fields) => {
                    leaves(name, vec![name.clone()], fields, &mut out);
                }
                _ => out.push((name.clone(), vec![name.clone()])),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every parameter of `p` by key, with its value, from one serialisation
/// (what the panel reads once per frame, and two runs are compared by).
pub fn values(p: &Pipeline) -> BTreeMap<String, Value> {
    let json = p.to_json();
    paths(&json)
        .into_iter()
        .filter_map(|(k, path)| at(&json, &path).cloned().map(|v| (k, v)))
        .collect()
}

fn leaves(
    stage: &str,
    path: Vec<String>,
    fields: &serde_json::Map<String, Value>,
    out: &mut Vec<(String, Vec<String>)>,
) {
    for (name, v) in fields {
        let mut here = path.clone();
        here.push(name.clone());
        match v {
            Value::Object(inner) => leaves(stage, here, inner, out),
            _ => out.push((format!("{stage}.{name}"), here)),
        }
    }
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, k| v.get_mut(k))
}

/// A value as `set` reads it back: numbers as Rust prints them (1, 0.3),
/// lists comma-separated.
pub fn written(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) if !n.is_f64() => u.to_string(),
            (_, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(written).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        Value::Object(_) => v.to_string(),
    }
}

/// The current value of `key`, as `set` takes it; `None` for an unknown key.
pub fn value_of(p: &Pipeline, key: &str) -> Option<String> {
    values(p).get(key).map(written)
}

/// `value` parsed as the kind of `like` (the field's current value).
fn parse_like(like: &Value, key: &str, value: &str) -> Result<Value, ParamError> {
    let bad = |what: &str| ParamError(format!("{key}={value}: {what}"));
    let scalar = |like: &Value, text: &str, in_list: bool| -> Result<Value, ParamError> {
        let text = text.trim();
        match like {
            Value::Bool(_) => match text {
                "true" | "1" | "on" | "yes" => Ok(Value::Bool(true)),
                "false" | "0" | "off" | "no" => Ok(Value::Bool(false)),
                _ => Err(bad("expected true or false")),
            },
            Value::Number(n) if !n.is_f64() => text.parse::<u64>().map(Value::from).map_err(|_| {
                bad(if in_list {
                    "expected whole numbers separated by commas"
                } else {
                    "expected a whole number"
                })
            }),
            Value::Number(_) => {
                let v: f64 = text.parse().map_err(|_| {
                    bad(if in_list {
                        "expected finite numbers separated by commas"
                    } else {
                        "expected a number"
                    })
                })?;
                if !v.is_finite() {
                    return Err(bad(if in_list {
                        "expected finite numbers separated by commas"
                    } else {
                        "must be finite"
                    }));
                }
                Ok(Value::from(v))
            }
            _ => Ok(Value::String(text.to_string())),
        }
    };
    match like {
        Value::Array(items) => {
            let first = items.first().cloned().unwrap_or(Value::from(0.0));
            value
                .split(',')
                .map(|s| scalar(&first, s, true))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array)
        }
        other => scalar(other, value, false),
    }
}

/// Set `key` to `value` (parsed as the field's type); the pipeline is
/// unchanged when refused.
pub fn set(p: &mut Pipeline, key: &str, value: &str) -> Result<(), ParamError> {
    let mut json = p.to_json();
    let found = paths(&json).into_iter().find(|(k, _)| k == key);
    let Some((_, path)) = found else {
        return Err(ParamError(format!(
            "unknown parameter '{key}'; known: {} (lists: one value per level, \
             or one for all, comma-separated; booleans: true/false)",
            keys(p).join(", ")
        )));
    };
    let slot = at_mut(&mut json, &path)
        .ok_or_else(|| ParamError(format!("{key}: not found in the pipeline")))?;
    *slot = parse_like(slot, key, value)?;
    let next: Pipeline = serde_json::from_value(json)
        .map_err(|e| ParamError(format!("{key}={}: {e}", value.trim())))?;
    *p = next;
    Ok(())
}

/// Every parameter key, sorted.
pub fn keys(p: &Pipeline) -> Vec<String> {
    values(p).into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys are unique (flattening a nested group never hides a field),
    /// and name every leaf of the serialised pipeline.
    #[test]
    fn keys_are_unique_and_complete() {
        let p = Pipeline::preset("fast").expect("fast");
        let k = keys(&p);
        let mut unique = k.clone();
        unique.dedup();
        assert_eq!(unique.len(), k.len(), "{k:?}");
        for key in ["deformable.lncc", "affine.window", "finest_mm", "ic.sigma"] {
            assert!(k.iter().any(|x| x == key), "{key} missing from {k:?}");
        }
        assert!(!k.iter().any(|x| x == "preset"));
    }

    #[test]
    fn values_are_parsed_as_their_field_type() {
        let mut p = Pipeline::preset("fast").expect("fast");
        set(&mut p, "deformable.iterations", "3, 2,1").expect("list");
        assert_eq!(p.deformable.iterations, [3, 2, 1]);
        set(&mut p, "deformable.units", "normalised").expect("alias");
        let e = set(&mut p, "deformable.units", "furlongs").expect_err("enum");
        assert!(e.0.contains("furlongs"), "{e}");
        let e = set(&mut p, "deformable.iterations", "3,x").expect_err("list");
        assert!(e.0.contains("whole numbers"), "{e}");
        let e = set(&mut p, "affine.lr", "inf").expect_err("finite");
        assert!(e.0.contains("finite"), "{e}");
        let e = set(&mut p, "affine.enabled", "maybe").expect_err("bool");
        assert!(e.0.contains("true or false"), "{e}");
        assert_eq!(value_of(&p, "deformable.lncc").as_deref(), Some("1"));
        let v = values(&p);
        assert!(v["deformable.svf"].is_boolean());
        assert!(!v["deformable.lr"].is_boolean());
    }
}
