//! Just enough HTTP/1.1 for the admin API: one request per connection, bodies by
//! Content-Length (with `Expect: 100-continue`, which curl sends for large uploads), and bounds on
//! everything a client sends.

use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The request line and headers may take at most this much.
const MAX_HEAD: usize = 16 * 1024;
/// Headers a request may have at most.
const MAX_HEADERS: usize = 64;
/// A client gets this long to send its request head (curl sends it at once)...
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// ...and this long for its body (up to `module_max_bytes`).
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(thiserror::Error, Debug)]
pub enum HttpError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client was too slow")]
    Timeout,
    #[error("reading the request: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad request: {0}")]
    Bad(String),
    #[error("send a Content-Length (chunked uploads are not supported)")]
    LengthRequired,
    #[error("the body is {size} bytes, over the cap of {max} bytes")]
    TooLarge { size: u64, max: u64 },
}

impl HttpError {
    /// The status to answer with, if the connection is still worth answering.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Closed | HttpError::Timeout | HttpError::Io(_) => None,
            HttpError::Bad(_) => Some(400),
            HttpError::LengthRequired => Some(411),
            HttpError::TooLarge { .. } => Some(413),
        }
    }
}

#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// The `Authorization` header: a credential, never printed.
    pub authorization: Option<Secret>,
    pub body: Vec<u8>,
}

/// A header value that holds a credential: its `Debug` does not show it.
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Request {
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Every value of a repeated query parameter, in order.
    pub fn query_all(&self, key: &str) -> Vec<&str> {
        self.query.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

/// `%XX` escapes of a query component (RFC 3986); a malformed escape stays as it is.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) =
                (b.get(i + 1).and_then(|&c| hex(c)), b.get(i + 2).and_then(|&c| hex(c)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Escape everything but RFC 3986's unreserved characters, for a query component.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into().into_bytes() }
    }

    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        let mut body = serde_json::to_vec_pretty(value).expect("admin views serialize");
        body.push(b'\n');
        Response { status, content_type: "application/json", body }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: impl std::fmt::Display) -> Self {
        Self::json(status, &serde_json::json!({ "error": message.to_string() }))
    }
}

/// Read one request; bodies over `max_body` are refused from the Content-Length alone.
pub async fn read_request<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    max_body: u64,
) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(4096);
    let head_end = tokio::time::timeout(HEAD_TIMEOUT, async {
        loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                return Ok(pos);
            }
            if buf.len() > MAX_HEAD {
                return Err(HttpError::Bad(format!("request head over {MAX_HEAD} bytes")));
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await? {
                0 => return Err(HttpError::Closed),
                n => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .map_err(|_| HttpError::Timeout)??;
    let mut body = buf.split_off(head_end + 4);
    let head =
        std::str::from_utf8(&buf[..head_end]).map_err(|_| HttpError::Bad("head is not UTF-8".into()))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Err(HttpError::Bad("malformed request line".into()));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let mut length: u64 = 0;
    let mut expect_continue = false;
    let mut authorization = None;
    for (n, line) in lines.enumerate() {
        if n == MAX_HEADERS {
            return Err(HttpError::Bad(format!("more than {MAX_HEADERS} headers")));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Bad(format!("malformed header {line:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length =
                    value.parse().map_err(|_| HttpError::Bad(format!("bad Content-Length {value:?}")))?;
            }
            "transfer-encoding" => return Err(HttpError::LengthRequired),
            "expect" => expect_continue = value.eq_ignore_ascii_case("100-continue"),
            "authorization" => authorization = Some(Secret(value.to_string())),
            _ => {}
        }
    }
    if length > max_body {
        return Err(HttpError::TooLarge { size: length, max: max_body });
    }
    if body.len() as u64 > length {
        return Err(HttpError::Bad("more bytes than Content-Length".into()));
    }
    if expect_continue && (body.len() as u64) < length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let missing = usize::try_from(length).unwrap_or(usize::MAX) - body.len();
    body.reserve_exact(missing);
    tokio::time::timeout(BODY_TIMEOUT, (&mut *stream).take(missing as u64).read_to_end(&mut body))
        .await
        .map_err(|_| HttpError::Timeout)??;
    if (body.len() as u64) < length {
        return Err(HttpError::Closed);
    }
    Ok(Request { method: method.to_string(), path: path.to_string(), query, authorization, body })
}

pub async fn write_response<S: AsyncWrite + Unpin>(stream: &mut S, r: &Response) -> std::io::Result<()> {
    // A 401 names the scheme the client should use (RFC 6750).
    let challenge = if r.status == 401 { "www-authenticate: Bearer realm=\"guise\"\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n{challenge}connection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&r.body).await?;
    stream.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Content",
        _ => "Internal Server Error",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(raw: &[u8], max: u64) -> (Result<Request, HttpError>, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(raw).await.unwrap();
        client.shutdown().await.unwrap();
        let r = read_request(&mut server, max).await;
        drop(server);
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        (r, echoed)
    }

    #[tokio::test]
    async fn a_body_by_content_length_with_expect_continue() {
        let raw = b"PUT /modules/kafka?x=1&to=3 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nab";
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client.write_all(raw).await.unwrap();
        let reader = tokio::spawn(async move {
            let r = read_request(&mut server, 10).await;
            (r, server)
        });
        // The rest of the body comes only after the 100 Continue, as curl does.
        let mut interim = [0u8; 25];
        client.read_exact(&mut interim).await.unwrap();
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        client.write_all(b"cde").await.unwrap();
        let (r, _server) = reader.await.unwrap();
        let r = r.unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/modules/kafka"));
        assert_eq!(r.query("to"), Some("3"));
        assert_eq!(percent_decode(&percent_encode("dead-letter=dlq &x%")), "dead-letter=dlq &x%");
        assert_eq!(percent_decode("a%3Db%zz"), "a=b%zz");
        assert_eq!(r.body, b"abcde");
    }

    #[tokio::test]
    async fn oversized_chunked_short_and_malformed_requests_are_refused() {
        let (r, _) = parse(b"PUT /m HTTP/1.1\r\nContent-Length: 11\r\n\r\n", 10).await;
        assert!(matches!(r, Err(HttpError::TooLarge { size: 11, max: 10 })), "{r:?}");
        let (r, _) = parse(b"PUT /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 10).await;
        assert_eq!(r.unwrap_err().status(), Some(411));
        let (r, _) = parse(b"PUT /m HTTP/1.1\r\nContent-Length: 9\r\n\r\nabc", 10).await;
        assert!(matches!(r, Err(HttpError::Closed)), "{r:?}");
        let (r, _) = parse(b"GARBAGE\r\n\r\n", 10).await;
        assert_eq!(r.unwrap_err().status(), Some(400));
        let (r, _) = parse(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 10).await;
        assert_eq!(r.unwrap_err().status(), Some(400));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        let (r, _) = parse(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 10).await;
        assert!(r.unwrap_err().to_string().contains("more than 64 headers"));
        let (r, _) = parse(b"GET / HTTP/1.1\r\nAuthorization: Bearer s3cret\r\n\r\n", 10).await;
        let r = r.unwrap();
        assert_eq!(r.authorization.as_ref().map(|s| s.0.as_str()), Some("Bearer s3cret"));
        assert!(!format!("{r:?}").contains("s3cret"), "a request's Debug hides its credential");
        let big = vec![b'a'; MAX_HEAD + 10];
        let (r, _) = parse(&big, 10).await;
        assert_eq!(r.unwrap_err().status(), Some(400));
    }
}
