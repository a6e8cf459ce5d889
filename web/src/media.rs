//! Media over HTTP, for the client and federation downloads alike: the
//! headers that make serving other people's files safe, and the
//! `multipart/mixed` body of federation downloads.

use axum::http::{HeaderMap, HeaderValue, header};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};
use tessera_service::{
    Error,
    media::{ThumbnailSpec, thumbnail::Method},
};

/// The spec's "Serving inline content" list: types a browser will not run
/// as a page, so they may be shown inline; anything else is an attachment.
const INLINE_TYPES: &[&str] = &[
    "text/css",
    "text/plain",
    "text/csv",
    "application/json",
    "application/ld+json",
    "image/jpeg",
    "image/gif",
    "image/png",
    "image/apng",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "video/ogg",
    "video/quicktime",
    "audio/mp4",
    "audio/webm",
    "audio/aac",
    "audio/mpeg",
    "audio/ogg",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-pn-wav",
    "audio/flac",
    "audio/x-flac",
];

/// The spec's recommended policy, and `media-src` for audio and video.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; \
                                       style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

/// `Content-Disposition` for a file: inline only for the safe types (and
/// thumbnails, which are always pictures made here), with the file name
/// quoted or RFC 8187-encoded as it needs (ruma's RFC 6266 writer).
pub fn disposition(content_type: &str, thumbnail: bool, file_name: Option<&str>) -> String {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    // Browsers read `a/b, c/d` as its last type: a comma anywhere makes
    // the type untrustworthy.
    let safe = INLINE_TYPES.contains(&essence.as_str()) && !content_type.contains(',');
    let kind = match thumbnail || safe {
        true => ContentDispositionType::Inline,
        false => ContentDispositionType::Attachment,
    };
    ContentDisposition::new(kind).with_filename(file_name.map(str::to_owned)).to_string()
}

/// Sets a header, leaving out a value that cannot be one.
pub fn insert_header(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    // Stored types and names come from clients; one that is not a valid
    // header value is left out rather than failing the download.
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The headers every served file carries: no scripts, no sniffing, and
/// embeddable by web clients on other origins.
pub fn security_headers(headers: &mut HeaderMap) {
    insert_header(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    insert_header(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    insert_header(headers, header::HeaderName::from_static("cross-origin-resource-policy"), "cross-origin");
}

/// A federation download's body (spec: `GET /_matrix/federation/v1/media/download`):
/// two parts, the (empty) metadata as JSON, then the file with its type
/// and disposition; streamed. Returns the body and its `Content-Type`.
pub fn multipart_body(
    content_type: &str,
    disposition: &str,
    file: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> (axum::body::Body, String) {
    let boundary = format!("{:016x}{:016x}", rand_u64(), rand_u64());
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {content_type}\r\nContent-Disposition: {disposition}\r\n\r\n"
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let parts = futures_util::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(file)
        .chain(futures_util::stream::once(async move { Ok(Bytes::from(tail)) }));
    (axum::body::Body::from_stream(parts), format!("multipart/mixed; boundary={boundary}"))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Unpredictability is not needed, only a boundary absent from the
    // file; a fresh random-keyed hasher gives 64 bits without a new dependency.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    hasher.finish()
}

/// The thumbnail asked for; `scale` when no method is given.
pub fn thumbnail_spec(
    width: ruma::UInt,
    height: ruma::UInt,
    method: Option<&ruma::media::Method>,
    animated: Option<bool>,
) -> Result<ThumbnailSpec, Error> {
    let method = match method {
        None | Some(ruma::media::Method::Scale) => Method::Scale,
        Some(ruma::media::Method::Crop) => Method::Crop,
        Some(other) => return Err(Error::invalid_param(format!("Unknown thumbnail method {other:?}"))),
    };
    let side = |value: ruma::UInt| match u32::try_from(u64::from(value)) {
        Ok(side) if side > 0 => Ok(side),
        _ => Err(Error::invalid_param("width and height must be positive")),
    };
    Ok(ThumbnailSpec {
        width: side(width)?,
        height: side(height)?,
        method,
        animated: animated.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_safe_types_are_inline_and_names_are_escaped() {
        assert_eq!(disposition("image/png", false, Some("ascii")), "inline; filename=ascii");
        assert_eq!(disposition("Text/Plain; charset=utf-8", false, None), "inline");
        assert_eq!(disposition("text/html", false, Some("page.html")), "attachment; filename=page.html");
        assert_eq!(disposition("img/png", false, None), "attachment");
        assert_eq!(disposition("image/png;x=,text/html", false, None), "attachment");
        assert_eq!(
            disposition("image/png", false, Some("name with spaces")),
            "inline; filename=\"name with spaces\""
        );
        assert_eq!(disposition("image/png", false, Some("🐔")), "inline; filename*=utf-8''%F0%9F%90%94");
        assert_eq!(disposition("application/octet-stream", true, None), "inline");
    }
}
