//! Another server's media, read as it arrives: the federation download's
//! `multipart/mixed` body is taken apart on the fly (its metadata part
//! skipped, its file part's headers read, the file passed on chunk by
//! chunk with the closing delimiter held back), so a remote file goes to
//! disk without being held in memory, as uploads do.

use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// A stream of a body's chunks.
pub(crate) type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, String>> + Send>>;

/// The most the metadata part and the file part's headers may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The file part of a multipart body: its headers, and its bytes still
/// arriving.
pub(crate) struct FilePart {
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Chunks,
}

impl FilePart {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, value)| value.as_str())
    }
}

/// The `boundary` of a `multipart/mixed` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let mut params = content_type.split(';');
    if !params.next()?.trim().eq_ignore_ascii_case("multipart/mixed") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        let value = value.trim().trim_matches('"');
        (name.trim().eq_ignore_ascii_case("boundary") && !value.is_empty() && value.len() <= 200)
            .then(|| value.to_owned())
    })
}

/// Reads up to the second part's body and returns it as a stream.
pub(crate) async fn second_part(mut body: Chunks, boundary: &str) -> Result<FilePart, String> {
    let delimiter = format!("--{boundary}");
    let mut head = BytesMut::new();
    // The first delimiter, the metadata part, the second delimiter, and
    // the file part's headers up to the blank line.
    let (headers_start, body_start) = loop {
        if let Some(found) = locate_file_part(&head, delimiter.as_bytes()) {
            break found;
        }
        if head.len() > MAX_HEAD_BYTES {
            return Err("the multipart body's head is too large".into());
        }
        match body.next().await {
            Some(chunk) => head.extend_from_slice(&chunk?),
            None => return Err("the multipart body ended before its file part".into()),
        }
    };
    let headers = parse_headers(head.get(headers_start..body_start - 4).unwrap_or_default())?;
    let rest = head.split_off(body_start).freeze();
    Ok(FilePart { headers, body: file_bytes(rest, body, format!("\r\n{delimiter}")) })
}

/// Where the second part's headers start and its body starts, once the
/// buffer holds them.
fn locate_file_part(buffer: &[u8], delimiter: &[u8]) -> Option<(usize, usize)> {
    let first = find(buffer, delimiter, 0)?;
    let second = find(buffer, &[b"\r\n", delimiter].concat(), first + delimiter.len())?;
    // The delimiter line ends with CRLF (after optional whitespace).
    let line_end = find(buffer, b"\r\n", second + 2 + delimiter.len())?;
    let headers_start = line_end + 2;
    if buffer.get(headers_start..headers_start + 2) == Some(b"\r\n") {
        return Some((headers_start, headers_start + 2));
    }
    let blank = find(buffer, b"\r\n\r\n", headers_start)?;
    Some((headers_start, blank + 4))
}

fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, String> {
    let text = std::str::from_utf8(block).map_err(|_| "part headers are not UTF-8")?;
    Ok(text
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect())
}

/// The file part's bytes: everything up to `closing` (CRLF, then the
/// delimiter), which may be split across chunks, so the last bytes that
/// could be its start are held back until the next chunk says.
fn file_bytes(first: Bytes, body: Chunks, closing: String) -> Chunks {
    struct State {
        body: Chunks,
        pending: BytesMut,
        closing: Vec<u8>,
        done: bool,
    }
    let mut pending = BytesMut::new();
    pending.extend_from_slice(&first);
    let state = State { body, pending, closing: closing.into_bytes(), done: false };
    Box::pin(futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if state.done {
                return None;
            }
            if let Some(end) = find(&state.pending, &state.closing, 0) {
                state.done = true;
                let last = state.pending.split_to(end).freeze();
                return Some((Ok(last), state));
            }
            let safe = state.pending.len().saturating_sub(state.closing.len() - 1);
            if safe > 0 {
                let ready = state.pending.split_to(safe).freeze();
                return Some((Ok(ready), state));
            }
            match state.body.next().await {
                Some(Ok(chunk)) => state.pending.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    state.done = true;
                    return Some((Err(e), state));
                }
                None => {
                    state.done = true;
                    return Some((Err("the multipart body ended inside its file part".into()), state));
                }
            }
        }
    }))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    haystack.get(from..)?.windows(needle.len()).position(|window| window == needle).map(|at| at + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(body: &[u8], size: usize) -> Chunks {
        let chunks: Vec<Result<Bytes, String>> =
            body.chunks(size).map(|chunk| Ok(Bytes::copy_from_slice(chunk))).collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    async fn collect(mut body: Chunks) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }

    fn multipart(file: &[u8]) -> Vec<u8> {
        let mut body = b"--XyZ\r\nContent-Type: application/json\r\n\r\n{}\r\n--XyZ\r\n\
                         Content-Type: image/png\r\nContent-Disposition: inline; filename=a.png\r\n\r\n"
            .to_vec();
        body.extend_from_slice(file);
        body.extend_from_slice(b"\r\n--XyZ--\r\n");
        body
    }

    #[tokio::test]
    async fn the_file_part_is_read_whatever_the_chunk_sizes() {
        let file: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
        let body = multipart(&file);
        for size in [1, 2, 3, 7, 64, 1000, body.len()] {
            let part = second_part(chunked(&body, size), "XyZ").await.expect("a file part");
            assert_eq!(part.header("content-type"), Some("image/png"));
            assert_eq!(part.header("content-disposition"), Some("inline; filename=a.png"));
            assert_eq!(collect(part.body).await.expect("bytes"), file, "chunks of {size}");
        }
    }

    #[tokio::test]
    async fn a_truncated_or_headless_body_is_an_error() {
        let body = multipart(b"abc");
        let cut = body.get(..body.len() - 12).expect("shorter").to_vec();
        let part = second_part(chunked(&cut, 5), "XyZ").await.expect("a file part");
        assert!(collect(part.body).await.is_err(), "no closing delimiter");
        assert!(second_part(chunked(b"--XyZ\r\n\r\n{}", 3), "XyZ").await.is_err());
    }

    #[tokio::test]
    async fn a_location_part_has_no_bytes() {
        let body = b"--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b\r\nLocation: https://cdn.example/x\r\n\r\n\r\n--b--";
        let part = second_part(chunked(body, 4), "b").await.expect("a part");
        assert_eq!(part.header("location"), Some("https://cdn.example/x"));
        assert!(collect(part.body).await.expect("empty").is_empty());
    }

    #[test]
    fn the_boundary_is_read_from_the_content_type() {
        assert_eq!(boundary("multipart/mixed; boundary=abc").as_deref(), Some("abc"));
        assert_eq!(boundary("Multipart/Mixed;boundary=\"a b\"").as_deref(), Some("a b"));
        assert_eq!(boundary("image/png"), None);
        assert_eq!(boundary("multipart/mixed"), None);
    }
}
