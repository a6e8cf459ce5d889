//! Media for other servers (spec: "Content Repository" of the
//! server-server API): this server's files and their thumbnails, as
//! `multipart/mixed` (metadata, then the bytes). Other servers' media is
//! not served on (`Access::Federation`).

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};
use tessera_service::media::{Access, Download};
use tessera_web::{
    Ruma, WebError,
    media::{disposition, security_headers},
    reader_stream,
    routing::RumaRoutes,
};

use crate::FederationState;

pub(crate) fn routes() -> Router<FederationState> {
    Router::new()
        .ruma_route::<get_content::v1::Request, _, _>(download)
        .ruma_route::<get_content_thumbnail::v1::Request, _, _>(thumbnail)
}

async fn download(
    State(state): State<FederationState>,
    request: Ruma<get_content::v1::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let media = &state.media;
    let found = media
        .download(media.server_name(), &request.media_id, request.timeout_ms, Access::Federation)
        .await?;
    multipart(&state, found).await
}

async fn thumbnail(
    State(state): State<FederationState>,
    request: Ruma<get_content_thumbnail::v1::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let spec = tessera_web::media::thumbnail_spec(
        request.width,
        request.height,
        request.method.as_ref(),
        request.animated,
    )?;
    let media = &state.media;
    let found = media
        .thumbnail(media.server_name(), &request.media_id, spec, request.timeout_ms, Access::Federation)
        .await?;
    multipart(&state, found).await
}

async fn multipart(state: &FederationState, found: Download) -> Result<Response, WebError> {
    let content_type = found.content_type.as_deref().unwrap_or("application/octet-stream");
    let disposition = disposition(content_type, found.thumbnail, found.file_name.as_deref());
    let reader = state.media.read(&found.content, 0, None).await?;
    let (body, multipart_type) =
        tessera_web::media::multipart_body(content_type, &disposition, reader_stream(reader));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&multipart_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    security_headers(headers);
    Ok(response)
}
