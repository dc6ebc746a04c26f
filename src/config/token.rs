//! [`HttpToken`]: the bearer token the HTTP server requires, kept out of `Debug` output,
//! compared in constant time.

use std::fmt;

/// Longest token accepted.
pub(crate) const MAX_TOKEN_LEN: usize = 4096;

/// The bearer token every HTTP request must carry (`Authorization: Bearer <token>`) when
/// set (`LEAKSCOPE_HTTP_TOKEN`, `LEAKSCOPE_HTTP_TOKEN_FILE` or [`Config::http_token`]).
///
/// Its `Debug` output does not show the token, so a logged [`Config`] does not leak it.
///
/// [`Config`]: crate::Config
/// [`Config::http_token`]: crate::Config::http_token
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken(String);

impl HttpToken {
    /// The token `token`, or `None` if it is not a bearer token (RFC 6750's `b64token`:
    /// 1 to 4096 letters, digits and `-._~+/`, then optional `=` padding).
    pub fn new(token: &str) -> Option<HttpToken> {
        let body = token.trim_end_matches('=');
        let ok = !body.is_empty()
            && token.len() <= MAX_TOKEN_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
        ok.then(|| HttpToken(token.to_string()))
    }

    /// True if `presented` is the token. The time taken depends only on the token's
    /// length, not on where `presented` differs from it.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = u8::from(presented.len() != want.len());
        for (i, &w) in want.iter().enumerate() {
            // A wrong length still reads `want.len()` bytes (cycling through `presented`).
            let p = match presented.len() {
                0 => 0,
                n => presented[i % n],
            };
            diff |= w ^ p;
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HttpToken(<{} characters, not shown>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_only() {
        for ok in ["a", "s3cr3t-Token_1.2~x+y/z==", "0123456789abcdef", "ab="] {
            assert!(HttpToken::new(ok).is_some(), "{ok}");
        }
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            "",
            "=",
            "a b",
            "a=b",
            "tok\n",
            "é",
            "a:b",
            "\"a\"",
            long.as_str(),
        ] {
            assert!(HttpToken::new(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn matches_only_the_token_and_never_shows_it() {
        let t = HttpToken::new("s3cr3t").unwrap();
        assert!(t.matches(b"s3cr3t"));
        for other in [
            &b""[..],
            b"s3cr3",
            b"s3cr3tt",
            b"S3cr3t",
            b"s3cr3ts3cr3t",
            b"x",
        ] {
            assert!(!t.matches(other), "{other:?}");
        }
        let shown = format!("{t:?} {:?}", Some(t.clone()));
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }
}
