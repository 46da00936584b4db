//! Reading open_clip's JSON objects: typed fields and the messages that name a refused key.

use serde_json::{Map, Value};

use crate::error::Error;

pub(super) fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, Error> {
    v.as_object().ok_or_else(|| Error::Config(format!("{what} must be a JSON object")))
}

pub(super) fn field<'a>(m: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a Value, Error> {
    m.get(key).ok_or_else(|| Error::Config(format!("{ctx} has no \"{key}\"")))
}

pub(super) fn req_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<usize, Error> {
    opt_usize(m, key, ctx)?.ok_or_else(|| Error::Config(format!("{ctx} has no \"{key}\"")))
}

pub(super) fn opt_usize(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<usize>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= 1 << 24 => Ok(Some(n as usize)),
            _ => Err(bad_value(&format!("{ctx}.{key}"), v, "a positive integer")),
        },
    }
}

pub(super) fn opt_f64(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<f64>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(Some(x)),
            _ => Err(bad_value(&format!("{ctx}.{key}"), v, "a positive number")),
        },
    }
}

pub(super) fn opt_bool(m: &Map<String, Value>, key: &str, ctx: &str) -> Result<Option<bool>, Error> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(bad_value(&format!("{ctx}.{key}"), v, "true or false")),
    }
}

pub(super) fn require_null(v: &Value, key: &str, feature: &str) -> Result<(), Error> {
    if v.is_null() {
        Ok(())
    } else {
        Err(unsupported(key, feature))
    }
}

pub(super) fn require_false(v: &Value, key: &str, feature: &str) -> Result<(), Error> {
    match v {
        Value::Null | Value::Bool(false) => Ok(()),
        _ => Err(unsupported(key, feature)),
    }
}

pub(super) fn require_empty(v: &Value, key: &str) -> Result<(), Error> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) if m.is_empty() => Ok(()),
        _ => Err(unsupported(key, "custom activation/norm/tokenizer arguments")),
    }
}

pub(super) fn unsupported(key: &str, feature: &str) -> Error {
    Error::Config(format!("\"{key}\" asks for {feature}, which dermlip does not support"))
}

pub(super) fn unknown_field(ctx: &str, key: &str) -> Error {
    Error::Config(format!("unknown field \"{key}\" in {ctx}"))
}

pub(super) fn bad_value(key: &str, v: &Value, expected: &str) -> Error {
    Error::Config(format!("\"{key}\" is {v}, expected {expected}"))
}
