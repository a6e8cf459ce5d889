//! A minimal HTTP/1.1 client that writes the request target byte for byte.
//!
//! reqwest (through the `url` crate) normalises what the sweep must send as
//! is: it resolves `..` segments and refuses or re-encodes malformed
//! percent-escapes and raw non-ASCII. Here the request line is exactly the
//! bytes given, and the answer is read by its framing (Content-Length or
//! chunked), so a response is told apart from a dropped connection.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long a request may take before it counts as unanswered. The sweep
/// gives long-polls `timeout=0`, so nothing legitimately waits this long.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// What became of one request.
#[derive(Debug)]
pub enum Outcome {
    Answered {
        status: u16,
        body: String,
    },
    /// The connection ended (or failed) before a complete status line and
    /// headers arrived.
    Dropped(String),
    /// Nothing complete within [`ANSWER_LIMIT`].
    Unanswered,
}

/// Sends one request on a new connection to `addr` (`host:port`).
pub async fn send(addr: &str, method: &str, target: &str, token: &str, body: Option<&[u8]>) -> Outcome {
    match tokio::time::timeout(ANSWER_LIMIT, exchange(addr, method, target, token, body)).await {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Unanswered,
    }
}

async fn exchange(addr: &str, method: &str, target: &str, token: &str, body: Option<&[u8]>) -> Outcome {
    let mut stream = match TcpStream::connect(addr).await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Dropped(format!("connect: {e}")),
    };
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n")
            .into_bytes();
    match body {
        Some(body) => {
            request.extend_from_slice(
                format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len())
                    .as_bytes(),
            );
            request.extend_from_slice(body);
        }
        None => request.extend_from_slice(b"\r\n"),
    }
    // A server may answer (and close) before reading all of a body it
    // refuses; the answer is still read below.
    let write_error = stream.write_all(&request).await.err();

    let mut received = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(outcome) = complete(&received, false) {
            return outcome;
        }
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => {
                return complete(&received, true).unwrap_or_else(|| {
                    Outcome::Dropped(format!("read: {e} (write: {write_error:?}, {} bytes)", received.len()))
                });
            }
        }
    }
    complete(&received, true).unwrap_or_else(|| {
        Outcome::Dropped(format!(
            "closed after {} bytes without a response (write: {write_error:?})",
            received.len()
        ))
    })
}

/// The response in `received` if it is complete; at end of stream, any
/// response whose status line and headers arrived.
fn complete(received: &[u8], at_end: bool) -> Option<Outcome> {
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&received[..head_end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse::<u16>().ok()?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let rest = &received[head_end + 4..];
    let body = if chunked {
        match dechunk(rest) {
            Some(body) => body,
            None if at_end => rest.to_vec(),
            None => return None,
        }
    } else if let Some(length) = length {
        match rest.get(..length) {
            Some(body) => body.to_vec(),
            None if at_end => rest.to_vec(),
            None => return None,
        }
    } else if at_end {
        rest.to_vec()
    } else {
        return None;
    };
    Some(Outcome::Answered { status, body: String::from_utf8_lossy(&body).into_owned() })
}

/// The body of a complete chunked encoding, or `None` if more is to come.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
