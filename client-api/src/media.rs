//! The content repository's client routes: uploads (`/_matrix/media/v3`
//! and `v1/create`), downloads, thumbnails, config and URL previews, both
//! authenticated (`/_matrix/client/v1/media`) and the deprecated
//! unauthenticated ones (`/_matrix/media/v3`, frozen for media newer than
//! `media.unauthenticated_until_ms`).
//!
//! Uploads and downloads stream (`Streamed`, `reader_body`): ruma's types
//! parse the paths, queries and headers, but their `Vec<u8>` bodies would
//! hold whole files in memory, so the bytes go around them.

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use futures_util::TryStreamExt;
use ruma::api::client::{
    authenticated_media as authed,
    media::{
        create_content, create_content_async, create_mxc_uri, get_content, get_content_as_filename,
        get_content_thumbnail, get_media_config, get_media_preview,
    },
};
use tessera_service::{
    Error,
    media::{Access, Download, Upload},
};
use tessera_web::{
    Ruma, RumaResponse, Streamed, WebError, body_error,
    media::{disposition, insert_header as insert, security_headers, thumbnail_spec},
    reader_body,
    routing::RumaRoutes,
};

use crate::ClientState;

pub(crate) fn routes() -> Router<ClientState> {
    Router::new()
        .ruma_route::<create_content::v3::Request, _, _>(upload)
        .ruma_route::<create_mxc_uri::v1::Request, _, _>(create)
        .ruma_route::<create_content_async::v3::Request, _, _>(upload_reserved)
        .ruma_route::<authed::get_content::v1::Request, _, _>(download)
        .ruma_route::<authed::get_content_as_filename::v1::Request, _, _>(download_as)
        .ruma_route::<authed::get_content_thumbnail::v1::Request, _, _>(thumbnail)
        .ruma_route::<authed::get_media_config::v1::Request, _, _>(config)
        .ruma_route::<authed::get_media_preview::v1::Request, _, _>(preview)
        .ruma_route::<get_content::v3::Request, _, _>(legacy_download)
        .ruma_route::<get_content_as_filename::v3::Request, _, _>(legacy_download_as)
        .ruma_route::<get_content_thumbnail::v3::Request, _, _>(legacy_thumbnail)
        .ruma_route::<get_media_config::v3::Request, _, _>(legacy_config)
        .ruma_route::<get_media_preview::v3::Request, _, _>(legacy_preview)
}

async fn upload(
    State(state): State<ClientState>,
    upload: Streamed<create_content::v3::Request>,
) -> Result<RumaResponse<create_content::v3::Response>, WebError> {
    let uploader = &upload.request.identity()?.user_id;
    let request = &upload.request.body;
    let body = upload.body.into_data_stream().map_err(body_error);
    let content_uri = state
        .media
        .upload(
            uploader,
            upload_of(request.content_type.as_deref(), request.filename.as_deref(), upload.declared_len),
            body,
        )
        .await?;
    Ok(create_content::v3::Response::new(content_uri).into())
}

fn upload_of<'a>(
    content_type: Option<&'a str>,
    file_name: Option<&'a str>,
    declared_len: Option<u64>,
) -> Upload<'a> {
    Upload { content_type, file_name, declared_len }
}

async fn create(
    State(state): State<ClientState>,
    request: Ruma<create_mxc_uri::v1::Request>,
) -> Result<RumaResponse<create_mxc_uri::v1::Response>, WebError> {
    let (content_uri, expires) = state.media.create(&request.identity()?.user_id).await?;
    let mut response = create_mxc_uri::v1::Response::new(content_uri);
    response.unused_expires_at = u64::try_from(expires)
        .ok()
        .and_then(|ms| ruma::UInt::try_from(ms).ok())
        .map(ruma::MilliSecondsSinceUnixEpoch);
    Ok(response.into())
}

async fn upload_reserved(
    State(state): State<ClientState>,
    upload: Streamed<create_content_async::v3::Request>,
) -> Result<axum::Json<serde_json::Value>, WebError> {
    let uploader = &upload.request.identity()?.user_id;
    let request = &upload.request.body;
    let body = upload.body.into_data_stream().map_err(body_error);
    state
        .media
        .upload_reserved(
            uploader,
            &request.server_name,
            &request.media_id,
            upload_of(request.content_type.as_deref(), request.filename.as_deref(), upload.declared_len),
            body,
        )
        .await?;
    // ruma's empty response type has no public constructor.
    Ok(axum::Json(serde_json::json!({})))
}

async fn download(
    State(state): State<ClientState>,
    headers: HeaderMap,
    request: Ruma<authed::get_content::v1::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let found = state
        .media
        .download(&request.server_name, &request.media_id, request.timeout_ms, Access::Authenticated)
        .await?;
    serve(&state, found, None, &headers).await
}

async fn download_as(
    State(state): State<ClientState>,
    headers: HeaderMap,
    request: Ruma<authed::get_content_as_filename::v1::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let found = state
        .media
        .download(&request.server_name, &request.media_id, request.timeout_ms, Access::Authenticated)
        .await?;
    serve(&state, found, Some(&request.filename), &headers).await
}

async fn legacy_download(
    State(state): State<ClientState>,
    headers: HeaderMap,
    request: Ruma<get_content::v3::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let found = state
        .media
        .download(
            &request.server_name,
            &request.media_id,
            request.timeout_ms,
            legacy_access(request.allow_remote),
        )
        .await?;
    serve(&state, found, None, &headers).await
}

async fn legacy_download_as(
    State(state): State<ClientState>,
    headers: HeaderMap,
    request: Ruma<get_content_as_filename::v3::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let access = legacy_access(request.allow_remote);
    let found =
        state.media.download(&request.server_name, &request.media_id, request.timeout_ms, access).await?;
    serve(&state, found, Some(&request.filename), &headers).await
}

/// The deprecated unauthenticated API; `allow_remote=false` (which servers
/// fetching media send, to stop loops) serves local media only.
fn legacy_access(allow_remote: bool) -> Access {
    Access::Unauthenticated { allow_remote }
}

async fn thumbnail(
    State(state): State<ClientState>,
    request: Ruma<authed::get_content_thumbnail::v1::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let spec = thumbnail_spec(request.width, request.height, request.method.as_ref(), request.animated)?;
    let found = state
        .media
        .thumbnail(&request.server_name, &request.media_id, spec, request.timeout_ms, Access::Authenticated)
        .await?;
    serve(&state, found, None, &HeaderMap::new()).await
}

async fn legacy_thumbnail(
    State(state): State<ClientState>,
    request: Ruma<get_content_thumbnail::v3::Request>,
) -> Result<Response, WebError> {
    let request = &request.body;
    let spec = thumbnail_spec(request.width, request.height, request.method.as_ref(), request.animated)?;
    let access = legacy_access(request.allow_remote);
    let found = state
        .media
        .thumbnail(&request.server_name, &request.media_id, spec, request.timeout_ms, access)
        .await?;
    serve(&state, found, None, &HeaderMap::new()).await
}

async fn config(
    State(state): State<ClientState>,
    _request: Ruma<authed::get_media_config::v1::Request>,
) -> RumaResponse<authed::get_media_config::v1::Response> {
    authed::get_media_config::v1::Response::new(upload_size(&state)).into()
}

async fn legacy_config(
    State(state): State<ClientState>,
    _request: Ruma<get_media_config::v3::Request>,
) -> RumaResponse<get_media_config::v3::Response> {
    get_media_config::v3::Response::new(upload_size(&state)).into()
}

fn upload_size(state: &ClientState) -> ruma::UInt {
    ruma::UInt::try_from(state.media.max_upload_bytes()).unwrap_or(ruma::UInt::MAX)
}

async fn preview(
    State(state): State<ClientState>,
    request: Ruma<authed::get_media_preview::v1::Request>,
) -> Result<axum::Json<serde_json::Value>, WebError> {
    let preview = state.media.preview_url(&request.identity()?.user_id, &request.body.url).await?;
    Ok(axum::Json(preview.into()))
}

async fn legacy_preview(
    State(state): State<ClientState>,
    request: Ruma<get_media_preview::v3::Request>,
) -> Result<axum::Json<serde_json::Value>, WebError> {
    let preview = state.media.preview_url(&request.identity()?.user_id, &request.body.url).await?;
    Ok(axum::Json(preview.into()))
}

/// A file as an HTTP response: its type as uploaded, a disposition from
/// the safe list, the security headers, and one byte range if asked for.
async fn serve(
    state: &ClientState,
    found: Download,
    file_name: Option<&str>,
    request_headers: &HeaderMap,
) -> Result<Response, WebError> {
    let size = u64::try_from(found.content.size).unwrap_or(0);
    let range = match found.thumbnail {
        true => None,
        false => match requested_range(request_headers, size) {
            Ok(range) => range,
            Err(()) => return Ok(unsatisfiable(size)),
        },
    };
    let (start, len) = range.unwrap_or((0, size));
    let reader = state.media.read(&found.content, start, Some(len)).await?;
    let mut response = reader_body(reader).into_response();
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let end = start + len.saturating_sub(1);
        insert(response.headers_mut(), header::CONTENT_RANGE, &format!("bytes {start}-{end}/{size}"));
    }
    let headers = response.headers_mut();
    let content_type = found.content_type.as_deref().unwrap_or("application/octet-stream");
    insert(headers, header::CONTENT_TYPE, content_type);
    insert(headers, header::CONTENT_LENGTH, &len.to_string());
    let file_name = match found.thumbnail {
        true => thumbnail_name(content_type),
        false => file_name.or(found.file_name.as_deref()).filter(|name| !name.is_empty()),
    };
    insert(headers, header::CONTENT_DISPOSITION, &disposition(content_type, found.thumbnail, file_name));
    security_headers(headers);
    insert(headers, header::ACCEPT_RANGES, "bytes");
    // A media ID's bytes never change; only its holder's token may read them.
    insert(headers, header::CACHE_CONTROL, "private, max-age=86400");
    Ok(response)
}

/// The name a thumbnail is served under (the spec: "SHOULD contain a file
/// name").
fn thumbnail_name(content_type: &str) -> Option<&'static str> {
    match content_type {
        "image/jpeg" => Some("thumbnail.jpg"),
        "image/gif" => Some("thumbnail.gif"),
        "image/webp" => Some("thumbnail.webp"),
        _ => Some("thumbnail.png"),
    }
}

/// The single byte range asked for (`Range: bytes=a-b`, `a-`, `-n`) as
/// start and length; `None` for none (or several: the whole file is
/// served then); `Err` when it lies outside the file.
fn requested_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), Ok(end)) if start <= end && start < size => (start, end.min(size - 1) - start + 1),
        (Ok(start), Err(_)) if last.is_empty() && start < size => (start, size - start),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 && size > 0 => {
            let len = suffix.min(size);
            (size - len, len)
        }
        // Well-formed but outside the file: 416.
        (Ok(start), Ok(end)) if start <= end => return Err(()),
        (Ok(_), Err(_)) if last.is_empty() => return Err(()),
        (Err(_), Ok(0)) if first.is_empty() => return Err(()),
        // Anything else is not a range we understand: the whole file.
        _ => return Ok(None),
    };
    Ok(Some(range))
}

fn unsatisfiable(size: u64) -> Response {
    let mut response =
        WebError(Error::new(416, ruma::api::error::ErrorKind::Unknown, "The range is outside the file"))
            .into_response();
    insert(response.headers_mut(), header::CONTENT_RANGE, &format!("bytes */{size}"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        let mut headers = HeaderMap::new();
        headers.insert(header::RANGE, axum::http::HeaderValue::from_str(value).expect("header"));
        requested_range(&headers, size)
    }

    #[test]
    fn byte_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some((0, 10))));
        assert_eq!(range("bytes=90-200", 100), Ok(Some((90, 10))));
        assert_eq!(range("bytes=95-", 100), Ok(Some((95, 5))));
        assert_eq!(range("bytes=-30", 100), Ok(Some((70, 30))));
        assert_eq!(range("bytes=0-1,5-6", 100), Ok(None), "several ranges: the whole file");
        assert_eq!(range("items=0-1", 100), Ok(None));
        assert_eq!(range("bytes=100-", 100), Err(()));
        assert_eq!(range("bytes=5-2", 100), Ok(None), "malformed: ignored");
        assert_eq!(range("bytes=5-x", 100), Ok(None), "malformed: ignored");
    }
}
