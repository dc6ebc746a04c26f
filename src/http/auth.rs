//! The optional bearer token: with one configured, every request must carry
//! `Authorization: Bearer <token>` (RFC 6750); the token is compared in constant time.

use super::request::Request;
use super::Response;
use crate::config::HttpToken;

/// True if `req` carries `token` as a bearer token (scheme name in any case).
pub(crate) fn authorized(req: &Request, token: &HttpToken) -> bool {
    let Some(value) = req.authorization.as_deref() else {
        return false;
    };
    let value = value.trim_ascii();
    let Some((scheme, credentials)) = value.split_at_checked(6) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || !credentials.starts_with(b" ") {
        return false;
    }
    token.matches(credentials.trim_ascii_start())
}

/// 401 with the challenge clients expect: `invalid_token` when a token was sent.
pub(crate) fn unauthorized(req: &Request) -> Response {
    let sent = req.authorization.is_some();
    let mut r = Response::text(
        401,
        if sent {
            "the Authorization header does not carry the configured bearer token"
        } else {
            "this server requires `Authorization: Bearer <token>` (LEAKSCOPE_HTTP_TOKEN)"
        },
    );
    r.headers.push((
        "WWW-Authenticate",
        if sent {
            r#"Bearer realm="leakscope", error="invalid_token""#.to_string()
        } else {
            r#"Bearer realm="leakscope""#.to_string()
        },
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/metrics".into(),
            query: Vec::new(),
            authorization: auth.map(|a| a.as_bytes().to_vec()),
        }
    }

    #[test]
    fn bearer_scheme_and_token() {
        let t = HttpToken::new("s3cr3t").unwrap();
        for ok in [
            "Bearer s3cr3t",
            "bearer s3cr3t",
            "BEARER   s3cr3t ",
            " Bearer s3cr3t",
        ] {
            assert!(authorized(&req(Some(ok)), &t), "{ok:?}");
        }
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Bearers3cr3t"),
            Some("Basic s3cr3t"),
            Some("Bearer s3cr3"),
            Some("Bearer s3cr3t2"),
            Some("Bearer S3CR3T"),
            Some("s3cr3t"),
        ] {
            assert!(!authorized(&req(bad), &t), "{bad:?}");
        }
    }

    #[test]
    fn the_challenge() {
        let r = unauthorized(&req(None));
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "WWW-Authenticate" && v == r#"Bearer realm="leakscope""#));
        let r = unauthorized(&req(Some("Bearer nope")));
        assert!(r
            .headers
            .iter()
            .any(|(_, v)| v.contains(r#"error="invalid_token""#)));
        assert!(!String::from_utf8_lossy(&r.body).contains("nope"));
    }
}
