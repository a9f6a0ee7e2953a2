//! Per-field value checks: type, range, length, pattern and choices, on one raw JSON value.
//!
//! Knows nothing about other fields (parameter sets, OS family, exclusivity live in the parent
//! module). "Missing" is decided here too: `null`, absent, and blank or whitespace-only text.

use super::context::ValidationContext;
use super::{ErrorCode, FieldError};
use crate::schema::{Field, FieldType};
use regex::Regex;
use serde_json::Value;
use std::net::Ipv4Addr;

/// Whether a raw value counts as given: not null and not blank text.
pub(crate) fn is_provided(raw: Option<&Value>) -> bool {
    match raw {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.trim().is_empty(),
        Some(_) => true,
    }
}

/// Checks and normalises one provided value. `ctx` supplies inventory choices (pass `None` to
/// skip them, as when checking schema defaults).
pub(crate) fn coerce(
    field: &Field,
    pattern: Option<&Regex>,
    raw: &Value,
    ctx: Option<&ValidationContext>,
) -> Result<Value, FieldError> {
    let err = |code: ErrorCode, message: String| FieldError {
        field: field.id.clone(),
        code,
        message,
    };
    let label = &field.label;
    match field.kind {
        FieldType::Integer => {
            let n = integer(raw).map_err(|code| {
                let message = match code {
                    ErrorCode::OutOfRange => format!("{label} is far too large"),
                    _ => format!("{label} must be a whole number"),
                };
                err(code, message)
            })?;
            let lo_ok = field.min.is_none_or(|lo| n >= lo);
            let hi_ok = field.max.is_none_or(|hi| n <= hi);
            if lo_ok && hi_ok {
                return Ok(Value::from(n));
            }
            let message = match (field.min, field.max) {
                (Some(lo), Some(hi)) => format!("{label} must be between {lo} and {hi} (got {n})"),
                (Some(lo), None) => format!("{label} must be at least {lo} (got {n})"),
                (None, Some(hi)) => format!("{label} must be at most {hi} (got {n})"),
                (None, None) => format!("{label} is out of range"),
            };
            Err(err(ErrorCode::OutOfRange, message))
        }
        FieldType::Boolean => boolean(raw).map(Value::Bool).ok_or_else(|| {
            err(
                ErrorCode::InvalidType,
                format!("{label} must be yes or no (true/false, on/off, 1/0)"),
            )
        }),
        _ => {
            let text = text(raw, field.kind)
                .ok_or_else(|| err(ErrorCode::InvalidType, format!("{label} must be text")))?;
            if let Some(max) = field.max_length {
                let len = text.chars().count();
                if len > max {
                    return Err(err(
                        ErrorCode::TooLong,
                        format!("{label} must be at most {max} characters (got {len})"),
                    ));
                }
            }
            if let Some(re) = pattern {
                if !re.is_match(&text) {
                    let what = field
                        .pattern_help
                        .clone()
                        .unwrap_or_else(|| format!("match the pattern {}", re.as_str()));
                    return Err(err(ErrorCode::Pattern, format!("{label} must be {what}")));
                }
            }
            if field.path_name {
                if let Some(problem) = super::resource_name::path_name_problem(&text) {
                    return Err(err(ErrorCode::Pattern, format!("{label} {problem}")));
                }
            }
            typed_text(field, text, ctx).map_err(|(code, message)| err(code, message))
        }
    }
}

/// Type-specific checks on trimmed text.
fn typed_text(
    field: &Field,
    text: String,
    ctx: Option<&ValidationContext>,
) -> Result<Value, (ErrorCode, String)> {
    let label = &field.label;
    match field.kind {
        FieldType::Ipv4 => match text.parse::<Ipv4Addr>() {
            Ok(ip) => Ok(Value::String(ip.to_string())),
            Err(_) => Err((
                ErrorCode::InvalidIpv4,
                format!("{label} must be an IPv4 address like 192.0.2.10"),
            )),
        },
        FieldType::Hostname => {
            if super::hostname::is_dns_name(&text) {
                Ok(Value::String(text))
            } else {
                Err((
                    ErrorCode::InvalidHostname,
                    format!(
                        "{label} must be a host or domain name: letters, digits and hyphens, \
                         dot-separated labels of at most 63 characters"
                    ),
                ))
            }
        }
        FieldType::Enum => field
            .choices
            .iter()
            .find(|c| c.eq_ignore_ascii_case(&text))
            .map(|c| Value::String(c.clone()))
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownChoice,
                    format!("{label} must be one of {}", field.choices.join(", ")),
                )
            }),
        kind if kind.is_inventory() => {
            let Some(choices) = ctx.and_then(|c| c.choices.for_type(kind)) else {
                return Ok(Value::String(text));
            };
            choices
                .iter()
                .find(|c| c.eq_ignore_ascii_case(&text))
                .map(|c| Value::String(c.clone()))
                .ok_or_else(|| {
                    let known = if choices.is_empty() {
                        "none are available".to_owned()
                    } else {
                        format!("known: {}", choices.join(", "))
                    };
                    (
                        ErrorCode::UnknownChoice,
                        format!("{label} must be one from the inventory ({known})"),
                    )
                })
        }
        _ => Ok(Value::String(text)),
    }
}

/// Trimmed text from a string or number; multi-line text gets `\n` line endings.
fn text(raw: &Value, kind: FieldType) -> Option<String> {
    let s = match raw {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some(if kind == FieldType::Multiline {
        s.replace("\r\n", "\n").replace('\r', "\n")
    } else {
        s
    })
}

/// A whole number from a JSON number or decimal text.
fn integer(raw: &Value) -> Result<i64, ErrorCode> {
    match raw {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.as_u64().is_some() {
                Err(ErrorCode::OutOfRange)
            } else {
                let f = n.as_f64().ok_or(ErrorCode::InvalidType)?;
                float_to_int(f)
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                return Ok(i);
            }
            let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
            if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(ErrorCode::OutOfRange);
            }
            match s.parse::<f64>() {
                Ok(f) if f.is_finite() => float_to_int(f),
                _ => Err(ErrorCode::InvalidType),
            }
        }
        _ => Err(ErrorCode::InvalidType),
    }
}

/// `4.0` is 4; `4.5` is not a whole number; huge values are out of range.
fn float_to_int(f: f64) -> Result<i64, ErrorCode> {
    if f.fract() != 0.0 || !f.is_finite() {
        return Err(ErrorCode::InvalidType);
    }
    // i64::MAX as f64 rounds up to 2^63, so compare strictly below it.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&f) {
        return Err(ErrorCode::OutOfRange);
    }
    // Whole and within the i64 range (checked above), so the cast is exact.
    Ok(f as i64)
}

/// true/false, yes/no, on/off, 1/0 (case-insensitive text, JSON booleans, numbers 0 and 1).
fn boolean(raw: &Value) -> Option<bool> {
    match raw {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(true),
            "false" | "no" | "off" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integers_from_numbers_and_text() {
        assert_eq!(integer(&json!(4)), Ok(4));
        assert_eq!(integer(&json!(" 12 ")), Ok(12));
        assert_eq!(integer(&json!(4.0)), Ok(4));
        assert_eq!(integer(&json!("+7")), Ok(7));
        assert_eq!(integer(&json!(4.5)), Err(ErrorCode::InvalidType));
        assert_eq!(integer(&json!("four")), Err(ErrorCode::InvalidType));
        assert_eq!(integer(&json!(true)), Err(ErrorCode::InvalidType));
        assert_eq!(integer(&json!(u64::MAX)), Err(ErrorCode::OutOfRange));
        assert_eq!(
            integer(&json!("99999999999999999999999")),
            Err(ErrorCode::OutOfRange)
        );
        assert_eq!(integer(&json!(1e300)), Err(ErrorCode::OutOfRange));
    }

    #[test]
    fn booleans_accept_the_documented_spellings_only() {
        for t in ["true", "YES", " on ", "1"] {
            assert_eq!(boolean(&json!(t)), Some(true), "{t}");
        }
        for f in ["false", "No", "OFF", "0"] {
            assert_eq!(boolean(&json!(f)), Some(false), "{f}");
        }
        assert_eq!(boolean(&json!(1)), Some(true));
        assert_eq!(boolean(&json!(2)), None);
        assert_eq!(boolean(&json!("y")), None);
        assert_eq!(boolean(&json!([])), None);
    }

    #[test]
    fn blank_and_null_are_not_provided() {
        assert!(!is_provided(None));
        assert!(!is_provided(Some(&json!(null))));
        assert!(!is_provided(Some(&json!(" \t\n"))));
        assert!(is_provided(Some(&json!(0))));
        assert!(is_provided(Some(&json!(false))));
    }
}
