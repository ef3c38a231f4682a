//! Conversions between `google.protobuf.Struct` and JSON, and timestamps.

use chrono::{DateTime, Utc};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Timestamp, Value};
use serde_json::{Map, Number, Value as Json};

/// Nesting depth allowed in free-form JSON.
const MAX_DEPTH: usize = 32;

/// Converts a `Struct` to a JSON object; whole numbers become integers.
///
/// # Errors
///
/// A description when a number is not finite or the value nests too deeply.
pub(crate) fn struct_to_json(s: &Struct) -> Result<Map<String, Json>, String> {
    fields_to_json(s, 0)
}

fn fields_to_json(s: &Struct, depth: usize) -> Result<Map<String, Json>, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nests deeper than {MAX_DEPTH} levels"));
    }
    s.fields
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_to_json(v, depth + 1)?)))
        .collect()
}

fn value_to_json(v: &Value, depth: usize) -> Result<Json, String> {
    if depth > MAX_DEPTH {
        return Err(format!("nests deeper than {MAX_DEPTH} levels"));
    }
    Ok(match &v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::NumberValue(n)) => number(*n)?,
        Some(Kind::StructValue(s)) => Json::Object(fields_to_json(s, depth + 1)?),
        Some(Kind::ListValue(l)) => Json::Array(
            l.values
                .iter()
                .map(|x| value_to_json(x, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss,
    reason = "only whole numbers within ±2^53 are turned into integers, exactly"
)]
fn number(n: f64) -> Result<Json, String> {
    if !n.is_finite() {
        return Err("numbers must be finite".into());
    }
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if n.fract() == 0.0 && n.abs() <= EXACT {
        let i = n as i64;
        if i as f64 == n {
            return Ok(Json::Number(Number::from(i)));
        }
    }
    Number::from_f64(n)
        .map(Json::Number)
        .ok_or_else(|| "numbers must be finite".into())
}

/// Converts a JSON object to a `Struct`.
pub(crate) fn json_to_struct(map: &Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

/// Converts any JSON value to a `Struct`: an object as is, anything else as an empty struct.
pub(crate) fn json_value_to_struct(v: &Json) -> Struct {
    v.as_object().map(json_to_struct).unwrap_or_default()
}

fn json_to_value(v: &Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    Value { kind: Some(kind) }
}

/// The size of a JSON value as Postgres renders `jsonb::text` (a space after every `:` and `,`),
/// which the 64 KiB constraints measure.
pub(crate) fn jsonb_text_len(v: &Json) -> usize {
    fn separators(v: &Json) -> usize {
        match v {
            Json::Array(a) => a.len().saturating_sub(1) + a.iter().map(separators).sum::<usize>(),
            Json::Object(o) => {
                o.len() + o.len().saturating_sub(1) + o.values().map(separators).sum::<usize>()
            }
            _ => 0,
        }
    }
    serde_json::to_string(v).map_or(usize::MAX, |s| s.len()) + separators(v)
}

/// A protobuf timestamp of a time.
pub(crate) fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nested_values_and_keeps_integers_integral() {
        let json = serde_json::json!({"a": 1, "b": {"c": [true, "x", 1.5, null]}});
        let s = json_to_struct(json.as_object().expect("object"));
        let back = struct_to_json(&s).expect("valid");
        assert_eq!(Json::Object(back), json);
    }

    #[test]
    fn rejects_non_finite_numbers() {
        let s = Struct {
            fields: [(
                "x".to_owned(),
                Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        assert!(struct_to_json(&s).is_err());
    }

    #[test]
    fn jsonb_length_counts_the_spaces_postgres_adds() {
        // Postgres: {"a": 1, "b": [1, 2]}
        let v = serde_json::json!({"a": 1, "b": [1, 2]});
        assert_eq!(jsonb_text_len(&v), r#"{"a": 1, "b": [1, 2]}"#.len());
    }
}
