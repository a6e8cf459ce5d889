//! The bad inputs the sweep sends: whole request bodies, values for one
//! body field, path segments and query values. Each is named for the
//! report; bodies and field values are JSON text (not `serde_json::Value`),
//! since several are not valid JSON or not valid Unicode on purpose.

/// Levels of nesting in the deep-nesting inputs.
const DEPTH: usize = 200;

/// A named input: what the report calls it, and its text.
pub type Input = (String, String);

fn named(name: &str, text: impl Into<String>) -> Input {
    (name.to_owned(), text.into())
}

fn deep_array() -> String {
    format!("{}{}", "[".repeat(DEPTH), "]".repeat(DEPTH))
}

fn deep_object() -> String {
    format!("{}1{}", "{\"a\":".repeat(DEPTH), "}".repeat(DEPTH))
}

fn long_string() -> String {
    format!("\"{}\"", "x".repeat(100_000))
}

/// Values that are bad wherever they appear as a JSON value.
fn bad_values() -> Vec<Input> {
    vec![
        named("1e400", "1e400"),
        named("-1", "-1"),
        named("2^53", "9007199254740992"),
        named("2^63", "9223372036854775808"),
        named("2^64", "18446744073709551616"),
        named("lone surrogate \\udc00", r#""\udc00""#),
        named("lone surrogate \\ud800", r#""\ud800""#),
        named("NUL string", r#""\u0000""#),
        named("NUL key", r#"{"\u0000":"x"}"#),
        named("100,000-char string", long_string()),
        named("200 nested arrays", deep_array()),
        named("200 nested objects", deep_object()),
    ]
}

/// Whole request bodies: malformed, not an object, and objects carrying a
/// bad value under a key no schema declares (free-form content such as an
/// event's or account data's reaches the server that way).
pub fn bodies() -> Vec<Input> {
    let mut bodies = vec![
        named("empty body", ""),
        named("not JSON {bad", "{bad"),
        named("{}", "{}"),
        named("[]", "[]"),
        named("\"s\"", r#""s""#),
        named("null", "null"),
        named("1e400", "1e400"),
        named("200 nested arrays", deep_array()),
        named("200 nested objects", deep_object()),
        named("lone surrogate \\udc00", r#""\udc00""#),
        named("lone surrogate \\ud800", r#""\ud800""#),
        named("2^53", "9007199254740992"),
        named("2^64", "18446744073709551616"),
        named("NUL string", r#""\u0000""#),
        named("100,000-char string", long_string()),
    ];
    for (name, value) in bad_values() {
        bodies.push((format!("{{\"sweep\": {name}}}"), format!(r#"{{"sweep":{value}}}"#)));
    }
    bodies.push(named("NUL key {\"\\u0000\": \"x\"}", r#"{"\u0000":"x"}"#));
    bodies
}

/// Values for a body field whose spec types are `types` (JSON Schema
/// names): one of each type it does not allow, then the bad values.
pub fn field_values(field: &str, types: &[String]) -> Vec<Input> {
    let allows = |t: &str| types.iter().any(|have| have == t);
    let mut values = Vec::new();
    if !allows("integer") && !allows("number") {
        values.push(named("wrong type: number", "1"));
    }
    if allows("integer") && !allows("number") {
        values.push(named("wrong type: fraction", "1.5"));
    }
    for (ty, text) in
        [("string", r#""s""#), ("boolean", "true"), ("array", "[]"), ("object", "{}"), ("null", "null")]
    {
        if !allows(ty) {
            values.push((format!("wrong type: {ty}"), text.to_owned()));
        }
    }
    values.extend(bad_values());
    // A NUL inside an otherwise well-formed value: IDs pass their syntax
    // check and reach the database, which may not store NUL.
    // So may an ID past the spec's 255 bytes.
    let with_nul = id_shaped(field, "sw\\u0000eep");
    let long_id = id_shaped(field, &"a".repeat(300));
    if allows("array") {
        values.push(named("array holding a NUL string", format!("[\"{with_nul}\"]")));
        values.push(named("array holding an ID over 255 bytes", format!("[\"{long_id}\"]")));
    } else {
        values.push(named("NUL inside a value", format!("\"{with_nul}\"")));
        values.push(named("ID over 255 bytes", format!("\"{long_id}\"")));
    }
    values
}

/// `local` dressed as the ID a field of this name holds.
fn id_shaped(field: &str, local: &str) -> String {
    match field {
        "user_id" | "invite" | "users" | "additional_creators" => format!("@{local}:tessera.test"),
        "room_id" => format!("!{local}:tessera.test"),
        "event_id" | "m.fully_read" | "m.read" | "m.read.private" => format!("${local}"),
        _ => local.to_owned(),
    }
}

/// Bad values for a path segment that holds `param`, percent-encoded as
/// they go on the wire (some deliberately malformed).
pub fn path_values(param: &str) -> Vec<Input> {
    let sigil = match param {
        "userId" => Some("%40"),
        "roomId" | "roomIdOrAlias" => Some("%21"),
        "roomAlias" => Some("%23"),
        "eventId" => Some("%24"),
        _ => None,
    };
    let shaped = |local: &str| match sigil {
        Some(sigil) if sigil == "%24" => format!("{sigil}{local}"),
        Some(sigil) => format!("{sigil}{local}%3Atessera.test"),
        None => local.to_owned(),
    };
    let suffix = if sigil.is_some_and(|s| s != "%24") { ":tessera.test".len() } else { 0 };
    let sigil_len = usize::from(sigil.is_some());
    vec![
        named("NUL %00", "%00"),
        named("NUL inside an ID", shaped("a%00b")),
        named("1,000 characters", "a".repeat(1000)),
        named("300-byte ID", shaped(&"a".repeat(300 - suffix - sigil_len))),
        named("invalid percent-encoding %FF", "%FF"),
        named("truncated UTF-8 %E2%82", "%E2%82"),
        named("bare %", "%"),
        named("..", ".."),
        named("encoded slash %2F", "%2F"),
        named("empty", ""),
        named("non-ASCII, encoded", "%C3%A9%E2%82%AC"),
        named("non-ASCII, raw bytes", "\u{e9}\u{20ac}"),
    ]
}

/// Bad values for query parameter `param`, as they go on the wire.
pub fn query_values(param: &str) -> Vec<Input> {
    let mut values = vec![
        named("NUL %00", "%00"),
        named("10,000 characters", "x".repeat(10_000)),
        named("-1", "-1"),
        named("1e400", "1e400"),
        named("abc", "abc"),
        named("2^53", "9007199254740992"),
        named("99999999999999999999", "99999999999999999999"),
        named("{bad", "%7Bbad"),
        named("invalid percent-encoding %FF", "%FF"),
        named("empty", ""),
    ];
    // The largest integer the spec allows passes parsing and reaches the
    // arithmetic behind it; as a timeout it would be a valid long wait.
    if !param.starts_with("timeout") {
        values.push(named("2^53-1", "9007199254740991"));
    }
    values
}
