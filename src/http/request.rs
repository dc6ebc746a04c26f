//! A request head, parsed with `httparse`: method, path, query parameters and the
//! `Authorization` header; everything else in the head is ignored, and a body is never
//! read (the endpoints take none).

use super::{Response, MAX_HEAD, MAX_HEADERS};

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    /// Query parameters in order, as sent (no percent-decoding: no endpoint needs it).
    pub(crate) query: Vec<(String, String)>,
    /// The `Authorization` header's value, if there is one.
    pub(crate) authorization: Option<Vec<u8>>,
}

/// What the bytes received so far hold.
#[derive(Debug)]
pub(crate) enum Head {
    /// A whole head.
    Complete(Request),
    /// Not all of it yet.
    Partial,
    /// A head that cannot be served: the response to send.
    Bad(Response),
}

impl Request {
    /// Parses the head at the start of `buf` (the bytes received so far).
    pub(crate) fn parse(buf: &[u8]) -> Head {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => return Head::Bad(too_large()),
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
                return Head::Bad(too_large());
            }
            Ok(httparse::Status::Partial) => return Head::Partial,
            Err(httparse::Error::TooManyHeaders) => return Head::Bad(too_large()),
            Err(httparse::Error::Version) => {
                return Head::Bad(Response::text(
                    400,
                    "unsupported protocol (HTTP/1.0 and HTTP/1.1 only)",
                ))
            }
            Err(e) => {
                let line = buf.split(|&b| b == b'\n').next().unwrap_or(&[]);
                let line = String::from_utf8_lossy(line);
                return Head::Bad(Response::text(
                    400,
                    format!(
                        "malformed request line or header ({e}): {:?}",
                        line.trim_end()
                    ),
                ));
            }
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Head::Bad(Response::text(400, "malformed request line"));
        };
        if !target.starts_with('/') {
            return Head::Bad(Response::text(
                400,
                format!("request target must be a path: {target:?}"),
            ));
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        let authorization = req
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("authorization"))
            .map(|h| h.value.to_vec());
        Head::Complete(Request {
            method: method.to_string(),
            path: path.to_string(),
            query,
            authorization,
        })
    }
}

fn too_large() -> Response {
    Response::text(
        431,
        format!("request head larger than {MAX_HEAD} bytes or {MAX_HEADERS} headers"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(b: &[u8]) -> Request {
        match Request::parse(b) {
            Head::Complete(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn bad(b: &[u8]) -> Response {
        match Request::parse(b) {
            Head::Bad(r) => r,
            other => panic!("{}: {other:?}", String::from_utf8_lossy(b)),
        }
    }

    #[test]
    fn request_lines() {
        let r = complete(
            b"GET /debug/pprof/profile?seconds=5&x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer t0k\r\n\r\n",
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/debug/pprof/profile");
        assert_eq!(
            r.query,
            vec![("seconds".into(), "5".into()), ("x".into(), String::new())]
        );
        assert_eq!(r.authorization.as_deref(), Some(&b"Bearer t0k"[..]));
        let r = complete(b"HEAD /metrics HTTP/1.0\nauthorization: x\n\n");
        assert_eq!((r.method.as_str(), r.path.as_str()), ("HEAD", "/metrics"));
        assert_eq!(r.authorization.as_deref(), Some(&b"x"[..]));
        assert_eq!(complete(b"GET / HTTP/1.1\r\n\r\n").authorization, None);
        for (bad_head, status, says) in [
            (&b"GET  /x HTTP/1.1\r\n\r\n"[..], 400, "malformed"),
            (b"GET /x HTTP/2\r\n\r\n", 400, "HTTP/1.0 and HTTP/1.1 only"),
            (b"GET http://a/x HTTP/1.1\r\n\r\n", 400, "must be a path"),
            (b"\xff /x HTTP/1.1\r\n\r\n", 400, "malformed"),
            (b"garbage\r\n\r\n", 400, "malformed request line"),
            (
                b"GET /x HTTP/1.1\r\nBad Header: 1\r\n\r\n",
                400,
                "malformed",
            ),
        ] {
            let r = bad(bad_head);
            assert_eq!(r.status, status);
            assert!(
                String::from_utf8_lossy(&r.body).contains(says),
                "{}",
                String::from_utf8_lossy(&r.body)
            );
        }
    }

    #[test]
    fn partial_heads_wait_unless_too_large() {
        for part in [&b""[..], b"GET /x", b"GET /x HTTP/1.1\r\nHost: a\r\n"] {
            assert!(matches!(Request::parse(part), Head::Partial), "{part:?}");
        }
        let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
        huge.extend([b'a'; MAX_HEAD]);
        assert_eq!(bad(&huge).status, 431);
        huge.extend(b"\r\n\r\n");
        assert_eq!(bad(&huge).status, 431, "complete, but too large");
        let mut many = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("X-{i}: 1\r\n").bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(bad(&many).status, 431);
    }
}
