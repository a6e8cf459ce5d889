//! The route table: the spec's Client-Server operations from
//! `routes.json` (written by `gen_routes.py`), and the non-spec routes
//! Tessera serves, added here by hand.

use serde::Deserialize;
use serde_json::Value;

/// One operation of the route table.
#[derive(Deserialize)]
pub struct Route {
    pub method: String,
    pub path: String,
    pub path_params: Vec<String>,
    pub query: Vec<Field>,
    pub body: Option<Body>,
}

#[derive(Clone, Deserialize)]
pub struct Field {
    pub name: String,
    pub types: Vec<String>,
}

#[derive(Deserialize)]
pub struct Body {
    /// Top-level properties when the body is a JSON object schema.
    pub fields: Option<Vec<Field>>,
}

/// The spec's routes, and the non-spec ones Tessera serves.
pub fn routes() -> Vec<Route> {
    let mut routes: Vec<Route> =
        serde_json::from_str(include_str!("routes.json")).expect("routes.json is a route table");
    let field = |name: &str, ty: &str| Field { name: name.into(), types: vec![ty.into()] };
    let get = |path: &str| Route {
        method: "GET".into(),
        path: path.into(),
        path_params: vec![],
        query: vec![],
        body: None,
    };
    routes.push(Route {
        method: "POST".into(),
        path: "/_synapse/admin/v1/register".into(),
        path_params: vec![],
        query: vec![],
        body: Some(Body {
            fields: Some(vec![
                field("nonce", "string"),
                field("username", "string"),
                field("password", "string"),
                field("displayname", "string"),
                field("admin", "boolean"),
                field("user_type", "string"),
                field("mac", "string"),
            ]),
        }),
    });
    routes.push(get("/_synapse/admin/v1/register"));
    // The WebSocket sync endpoint, as a plain GET without an upgrade.
    routes.push(get("/_matrix/client/unstable/org.tessera.sync/ws"));
    routes.push(get("/health"));
    routes.push(get("/_matrix/key/v2/server"));
    routes
}

/// The top-level body fields to vary: the spec's, or for a free-form body
/// (an event's content, a profile field) those of the route's valid body.
pub fn body_fields(route: &Route, valid_body: Option<&Value>) -> Vec<Field> {
    let spec = route.body.as_ref().and_then(|b| b.fields.as_ref());
    if let Some(fields) = spec.filter(|fields| !fields.is_empty()) {
        return fields.clone();
    }
    let Some(Value::Object(valid)) = valid_body else { return Vec::new() };
    valid
        .iter()
        .map(|(name, value)| {
            let ty = match value {
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
                Value::Null => "null",
            };
            Field { name: name.clone(), types: vec![ty.into()] }
        })
        .collect()
}
