//! Masks a JSON field in each record's value, keeping the last 4 digits: with the default field
//! `card_number`, `{"card_number":"4111 1111 1111 1234"}` becomes
//! `{"card_number":"**** **** **** 1234"}`. The field is masked wherever it occurs in the value
//! (nested objects and arrays included); string values keep their separators, numbers become
//! masked strings. Configuration: `field` (default `card_number`).
//!
//! A value that is not JSON, or has no such field, passes unchanged (byte for byte).

use guise_guest_sdk::transform::{self, Record, Result};
use serde_json::Value;

/// The field masked when the configuration names none.
pub const DEFAULT_FIELD: &str = "card_number";

/// How many trailing digits stay visible.
const VISIBLE: usize = 4;

pub fn mask_card(mut record: Record) -> Result<Record> {
    let field = transform::config("field").unwrap_or_else(|| DEFAULT_FIELD.to_string());
    let Some(mut json) = record.value.as_deref().and_then(|v| serde_json::from_slice::<Value>(v).ok()) else {
        return Ok(record);
    };
    if mask_in(&mut json, &field) {
        record.value = Some(serde_json::to_vec(&json).map_err(|e| e.to_string())?);
    }
    Ok(record)
}

guise_guest_sdk::export_map!(mask_card);

/// Mask every `field` in `v`; whether anything was masked.
fn mask_in(v: &mut Value, field: &str) -> bool {
    match v {
        Value::Object(map) => {
            let mut masked = false;
            for (k, v) in map.iter_mut() {
                if k == field && !v.is_null() {
                    let text = match &*v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    *v = Value::String(mask(&text));
                    masked = true;
                } else {
                    masked |= mask_in(v, field);
                }
            }
            masked
        }
        Value::Array(items) => items.iter_mut().fold(false, |m, v| mask_in(v, field) | m),
        _ => false,
    }
}

/// Replace every digit but the last [`VISIBLE`] with `*`, keeping other characters; a value
/// with no more than 4 digits is masked entirely.
pub fn mask(s: &str) -> String {
    let digits = s.chars().filter(char::is_ascii_digit).count();
    let hide = if digits > VISIBLE { digits - VISIBLE } else { digits };
    let mut seen = 0;
    s.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen <= hide { '*' } else { c }
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use guise_guest_sdk::transform::test;

    fn value(v: &str) -> Record {
        Record::new(Some(b"k".to_vec()), Some(v.as_bytes().to_vec()))
    }

    fn json(r: &Record) -> Value {
        serde_json::from_slice(r.value.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn masks_the_default_field_keeping_the_last_four_digits() {
        let out = test::run(
            transform::map(mask_card),
            "payments",
            vec![value(r#"{"card_number":"4111 1111 1111 1234","amount":12}"#)],
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, None);
        assert_eq!(json(&out[0].1), serde_json::json!({"card_number": "**** **** **** 1234", "amount": 12}));
        assert_eq!(out[0].1.key.as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn masks_nested_fields_and_numbers() {
        let out = test::run(
            transform::map(mask_card),
            "t",
            vec![value(r#"{"items":[{"card_number":4111111111111234}],"payer":{"card_number":"5500-0000-0000-0004"}}"#)],
        )
        .unwrap();
        assert_eq!(
            json(&out[0].1),
            serde_json::json!({
                "items": [{"card_number": "************1234"}],
                "payer": {"card_number": "****-****-****-0004"}
            })
        );
    }

    #[test]
    fn the_field_is_configurable() {
        let out = test::run_with_config(
            transform::map(mask_card),
            "t",
            vec![value(r#"{"card_number":"4111111111111234","pan":"5500000000000004"}"#)],
            &[("field", "pan")],
        )
        .unwrap();
        assert_eq!(
            json(&out[0].1),
            serde_json::json!({"card_number": "4111111111111234", "pan": "************0004"})
        );
    }

    #[test]
    fn other_values_pass_unchanged() {
        let inputs = vec![
            value("not json"),
            value(r#"{"b":1,"a":2}"#),
            Record::new(None, None),
            value(r#"{"card_number":null}"#),
        ];
        let out = test::run(transform::map(mask_card), "t", inputs.clone()).unwrap();
        let values: Vec<_> = out.into_iter().map(|(_, r)| r.value).collect();
        let expected: Vec<_> = inputs.into_iter().map(|r| r.value).collect();
        assert_eq!(values, expected);
    }

    #[test]
    fn short_values_are_masked_entirely() {
        assert_eq!(mask("1234"), "****");
        assert_eq!(mask("12345"), "*2345");
        assert_eq!(mask(""), "");
    }
}
