//! The edge's checks on what a client sends, before any parser or handler
//! sees it: every JSON body, every path parameter, every query string.
//!
//! What is accepted here can be stored and read back on both databases, so
//! a sender can never leave a row that breaks someone else's sync:
//! - JSON bodies follow the spec's canonical-JSON limits on values
//!   (integers within ±(2^53−1), no lone surrogates, which serde_json
//!   refuses while reading) and nest at most [`MAX_DEPTH`] levels, so that
//!   a response carrying the body (a sync wrapping an event's content)
//!   stays within the 128 levels clients' JSON parsers accept.
//! - No string anywhere holds NUL: PostgreSQL cannot store it in a text
//!   column and SQLite can, so refusing it keeps the two backends alike.
//! - Path parameters (IDs, event types, state keys, transaction IDs,
//!   tags, filter IDs) are at most [`MAX_PATH_PARAMETER_BYTES`], the
//!   spec's limit on identifiers, event types and state keys.
//!
//! Spec: <https://spec.matrix.org/v1.16/appendices/#canonical-json> and
//! <https://spec.matrix.org/v1.16/client-server-api/#size-limits>.
//! Must not: know any endpoint's shape (ruma's types do that).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use tessera_service::Error;

/// The deepest nesting of arrays and objects accepted in a request body.
pub const MAX_DEPTH: usize = 64;

/// The canonical-JSON integer range: ±(2^53 − 1).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The longest path parameter, in bytes.
pub const MAX_PATH_PARAMETER_BYTES: usize = 255;

/// Checks a request body: JSON (`M_NOT_JSON` otherwise) within the limits
/// above (`M_BAD_JSON` otherwise). An empty body passes: endpoints without
/// one, or whose parser reads it as `{}`.
pub fn check_json_body(bytes: &[u8]) -> Result<(), Error> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let checked = Checked { depth: 0 }.deserialize(&mut deserializer).and_then(|()| deserializer.end());
    checked.map_err(|e| match e.classify() {
        // Our own refusals (and serde_json's for numbers out of range).
        serde_json::error::Category::Data => Error::bad_json(format!("Invalid JSON value: {e}")),
        _ => Error::not_json(format!("Request body is not valid JSON: {e}")),
    })
}

/// Checks one percent-decoded path parameter.
pub fn check_path_parameter(value: &str) -> Result<(), Error> {
    if value.contains('\0') {
        return Err(Error::invalid_param("Path parameters may not contain NUL"));
    }
    if value.len() > MAX_PATH_PARAMETER_BYTES {
        return Err(Error::invalid_param(format!(
            "Path parameters are at most {MAX_PATH_PARAMETER_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks a raw (still percent-encoded) query string for NUL.
pub fn check_query(query: &str) -> Result<(), Error> {
    let has_nul = query.as_bytes().windows(3).any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0');
    if has_nul { Err(Error::invalid_param("Query parameters may not contain NUL")) } else { Ok(()) }
}

/// Walks a JSON value without building it, refusing what the module
/// documentation lists.
#[derive(Clone, Copy)]
struct Checked {
    depth: usize,
}

impl Checked {
    fn nested<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format_args!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(Self { depth: self.depth + 1 })
    }
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn check_str<E: de::Error>(value: &str) -> Result<(), E> {
    if value.contains('\0') { Err(E::custom("strings may not contain NUL")) } else { Ok(()) }
}

fn check_integer<E: de::Error>(magnitude: u64) -> Result<(), E> {
    if magnitude > MAX_SAFE_INTEGER {
        return Err(E::custom("integers must be within ±(2^53 − 1)"));
    }
    Ok(())
}

impl<'de> Visitor<'de> for Checked {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<(), E> {
        check_integer(value.unsigned_abs())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<(), E> {
        check_integer(value)
    }

    // serde_json has refused non-finite numbers already; fractions are
    // allowed outside events (the event builder refuses them in content).
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        check_str(value)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.nested()?;
        while map.next_key_seed(Key)?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

/// An object key: a string without NUL.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<(), E> {
        check_str(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error kind's name (`NotJson`, `BadJson`), if refused.
    fn errcode(body: &str) -> Option<String> {
        match check_json_body(body.as_bytes()) {
            Ok(()) => None,
            Err(Error::Matrix { kind, .. }) => Some(format!("{kind:?}")),
            Err(other) => Some(other.to_string()),
        }
    }

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn ordinary_bodies_pass() {
        for body in [
            "",
            "{}",
            r#"{"msgtype":"m.text","body":"héllo \ud83d\ude00 \"quoted\"","n":-9007199254740991,"f":1.5}"#,
            r#"{"a":[1,2,{"b":null,"c":true}],"big":9007199254740991}"#,
        ] {
            assert_eq!(errcode(body), None, "{body}");
        }
        assert_eq!(errcode(&nested(MAX_DEPTH)), None, "{MAX_DEPTH} levels are allowed");
    }

    #[test]
    fn values_that_cannot_be_read_back_are_refused() {
        for body in [
            r#"{"body":"\udc00"}"#,
            r#"{"body":"\ud800"}"#,
            r#"{"body":"\ud800x"}"#,
            r#"{"n":1e400}"#,
            r#"{"n":-1e400}"#,
            "{\"n\":1}x",
            "not json",
            "{\"a\":",
        ] {
            assert_eq!(errcode(body).as_deref(), Some("NotJson"), "{body}");
        }
        for body in [
            r#"{"n":9007199254740992}"#,
            r#"{"n":-9007199254740992}"#,
            r#"{"n":18446744073709551615}"#,
            r#"{"body":"a\u0000b"}"#,
            r#"{"a\u0000":1}"#,
            r#"["\u0000"]"#,
        ] {
            assert_eq!(errcode(body).as_deref(), Some("BadJson"), "{body}");
        }
        assert_eq!(errcode(&nested(MAX_DEPTH + 1)).as_deref(), Some("BadJson"));
        let deep_object = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        assert!(errcode(&deep_object).is_some());
    }

    /// The promise the module makes: whatever it accepts reads back as a
    /// JSON value, and still does once wrapped in a sync response's dozen
    /// levels (serde_json refuses more than 128). Bodies from a small
    /// deterministic generator of awkward JSON.
    #[test]
    fn whatever_is_accepted_reads_back_inside_a_response() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            usize::try_from(seed % 1024).unwrap_or(0) % n
        };
        let atoms = [
            "0",
            "-0",
            "1.5e300",
            "1e400",
            "9007199254740991",
            "9007199254740992",
            "-9007199254740993",
            r#""\ud83d\ude00""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""a\u0000""#,
            r#""\\u0000""#,
            "true",
            "null",
            r#""é""#,
        ];
        let mut accepted = 0;
        for _ in 0..5_000 {
            let depth = next(130);
            let mut body = atoms[next(atoms.len())].to_owned();
            for _ in 0..depth {
                body = if next(2) == 0 { format!("[{body}]") } else { format!(r#"{{"k":{body}}}"#) };
            }
            if check_json_body(body.as_bytes()).is_ok() {
                accepted += 1;
                let wrapped = format!("{}{body}{}", r#"{"a":["#.repeat(12), "]}".repeat(12));
                let read: Result<serde_json::Value, _> = serde_json::from_str(&wrapped);
                assert!(read.is_ok(), "accepted but unreadable: {body}");
            }
        }
        assert!(accepted > 500, "the generator should produce acceptable bodies too ({accepted})");
    }

    #[test]
    fn path_and_query_limits() {
        assert!(check_path_parameter("m.room.message").is_ok());
        assert!(check_path_parameter(&"a".repeat(MAX_PATH_PARAMETER_BYTES)).is_ok());
        assert!(check_path_parameter(&"a".repeat(MAX_PATH_PARAMETER_BYTES + 1)).is_err());
        assert!(check_path_parameter("a\0b").is_err());
        assert!(check_query("since=s1_0_0&filter=%7B%7D").is_ok());
        assert!(check_query("filter=ab%00c").is_err());
    }
}
