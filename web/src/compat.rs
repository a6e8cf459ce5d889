//! Rewrites of request bodies that real clients send in older shapes than
//! ruma accepts.

use bytes::Bytes;
use serde_json::Value;
use tessera_service::Error;

/// The UIA password stage with the legacy top-level `user` field instead
/// of `identifier` (`{"type": "m.login.password", "user": "alice", ...}`),
/// which matrix-nio documents for `delete_devices` and Synapse accepts.
/// ruma requires `identifier`, so rewrite it into that form.
pub(crate) fn legacy_uia_user(body: Bytes) -> Bytes {
    // Cheap pre-check: most bodies carry no UIA at all.
    if !contains(&body, b"\"auth\"") || !contains(&body, b"\"user\"") {
        return body;
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&body) else { return body };
    let Some(auth) = value.get_mut("auth").and_then(Value::as_object_mut) else { return body };
    if auth.get("type").and_then(Value::as_str) != Some("m.login.password") || auth.contains_key("identifier")
    {
        return body;
    }
    let Some(user) = auth.remove("user") else { return body };
    auth.insert("identifier".into(), serde_json::json!({ "type": "m.id.user", "user": user }));
    serde_json::to_vec(&value).map(Bytes::from).unwrap_or(body)
}

/// An empty body on a POST or PUT that claims (or omits) JSON, read as `{}`.
/// ruma's generated parsers do this already, but its hand-written ones
/// (`/join/{roomIdOrAlias}`, `/knock`) do not, and matrix-nio's `join()`
/// sends no body; Synapse reads it as `{}` too.
pub(crate) fn empty_json_body(parts: &http::request::Parts, body: Bytes) -> Bytes {
    let json_or_unset = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    if body.is_empty() && json_or_unset && matches!(parts.method, http::Method::POST | http::Method::PUT) {
        Bytes::from_static(b"{}")
    } else {
        body
    }
}

/// `POST /login` whose body has no string `type`: refused here, because
/// ruma 0.17's `LoginInfo` parser indexes the body's map for `type` and
/// panics when it is absent (the panic would be caught, but logged as a
/// bug on every such request).
pub(crate) fn check_login_type(parts: &http::request::Parts, body: &[u8]) -> Result<(), Error> {
    if parts.method != http::Method::POST || !parts.uri.path().ends_with("/login") {
        return Ok(());
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else { return Ok(()) };
    match body.get("type") {
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(Error::bad_json("`type` must be a string")),
        None => Err(Error::missing_param("missing field `type`")),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `GET /rooms/{roomId}/messages` without `dir`: forwards, as Synapse reads
/// it (the parameter was optional before v1.3 of the spec, and Complement
/// and older clients still leave it out). ruma requires it.
pub(crate) fn default_messages_dir(parts: &mut http::request::Parts) {
    if parts.method != http::Method::GET || !parts.uri.path().ends_with("/messages") {
        return;
    }
    let query = parts.uri.query().unwrap_or_default();
    if query.split('&').any(|pair| pair == "dir" || pair.starts_with("dir=")) {
        return;
    }
    let path_and_query = if query.is_empty() {
        format!("{}?dir=f", parts.uri.path())
    } else {
        format!("{}?{query}&dir=f", parts.uri.path())
    };
    let Ok(rewritten) = path_and_query.parse() else { return };
    let mut uri = parts.uri.clone().into_parts();
    uri.path_and_query = Some(rewritten);
    if let Ok(uri) = http::Uri::from_parts(uri) {
        parts.uri = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_user_becomes_an_identifier() {
        let body = Bytes::from_static(br#"{"devices":["A"],"auth":{"type":"m.login.password","user":"alice","password":"pw","session":"s"}}"#);
        let fixed: Value = serde_json::from_slice(&legacy_uia_user(body)).expect("json");
        assert_eq!(fixed["auth"]["identifier"], serde_json::json!({ "type": "m.id.user", "user": "alice" }));
        assert!(fixed["auth"].get("user").is_none());
        assert_eq!(fixed["auth"]["password"], "pw");
    }

    #[test]
    fn other_bodies_pass_through_untouched() {
        for raw in [
            &br#"{"type":"m.login.password","user":"alice","password":"pw"}"#[..],
            br#"{"auth":{"type":"m.login.dummy","user":"x"}}"#,
            br#"{"auth":{"type":"m.login.password","identifier":{"type":"m.id.user","user":"a"},"user":"b"}}"#,
        ] {
            let body = Bytes::copy_from_slice(raw);
            assert_eq!(legacy_uia_user(body.clone()), body);
        }
    }
}
