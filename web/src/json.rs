//! `JsonBody<T>`: a plain serde JSON body for the few endpoints ruma does
//! not describe (Synapse's admin API), with the same errors as [`crate::Ruma`].

use axum::extract::{FromRef, FromRequest, Request};
use serde::de::DeserializeOwned;
use tessera_service::Error;

use crate::{Gate, WebError};

/// A JSON request body parsed into `T`.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    Gate: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let gate = Gate::from_ref(state);
        let bytes = crate::extract::read_body(request.into_body(), gate.max_body_bytes).await?;
        crate::input::check_json_body(&bytes)?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| Error::not_json("Request body is not valid JSON"))?;
        serde_json::from_value(value).map(JsonBody).map_err(|e| {
            let message = e.to_string();
            WebError(if message.starts_with("missing field") {
                Error::missing_param(message)
            } else {
                Error::bad_json(message)
            })
        })
    }
}
