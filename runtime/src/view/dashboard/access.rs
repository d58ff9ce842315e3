//! Who may see the dashboard: whoever holds its token. Loopback is reachable by
//! every user of a shared login node, so a dashboard (sample keys, failure
//! reasons) answers only requests that carry the random token of the URL the
//! program printed, in the query (`?token=...`) or in the cookie the page sets on
//! the first visit. A runtime can turn the token off explicitly
//! ([`crate::RuntimeConfig::dashboard_without_token`]).

use crate::wire::auth::random_bytes;

/// The dashboard's access rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone who reaches the port.
    Open,
    /// Only requests that carry this token.
    Token(String),
}

impl Access {
    /// A fresh random token (128 bits, hex).
    pub fn fresh_token() -> Self {
        let bytes = random_bytes();
        Access::Token(bytes[..16].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The name of the cookie that carries the token of the dashboard on `port`
    /// (cookies are shared by every port of a host, so each port has its own).
    pub fn cookie_name(port: u16) -> String {
        format!("gridpipe_dashboard_{port}")
    }

    /// Whether a request with this query string and this value of the port's
    /// cookie may be answered.
    pub fn allows(&self, query: &str, cookie: Option<&str>) -> bool {
        let Access::Token(token) = self else {
            return true;
        };
        let in_query = query
            .split('&')
            .filter_map(|pair| pair.strip_prefix("token="))
            .any(|t| same(t.as_bytes(), token.as_bytes()));
        in_query || cookie.is_some_and(|c| same(c.as_bytes(), token.as_bytes()))
    }

    /// The dashboard's URL for `addr`: with the token in the query when there is one.
    pub fn url(&self, addr: &std::net::SocketAddr) -> String {
        match self {
            Access::Open => format!("http://{addr}/"),
            Access::Token(t) => format!("http://{addr}/?token={t}"),
        }
    }
}

/// Compares two byte strings in time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_in_the_query_or_the_cookie_opens_the_dashboard() {
        let access = Access::Token("abc123".into());
        assert!(access.allows("token=abc123", None));
        assert!(access.allows("x=1&token=abc123", None));
        assert!(access.allows("", Some("abc123")));
        assert!(!access.allows("", None));
        assert!(!access.allows("token=abc12", None));
        assert!(!access.allows("token=abc1234", None));
        assert!(!access.allows("token=", Some("wrong")));
        assert!(!access.allows("xtoken=abc123", None));
        assert!(Access::Open.allows("", None));
    }

    #[test]
    fn tokens_are_fresh_and_in_the_url() {
        let (a, b) = (Access::fresh_token(), Access::fresh_token());
        assert_ne!(a, b);
        let Access::Token(t) = &a else { panic!() };
        assert_eq!(t.len(), 32);
        let addr: std::net::SocketAddr = "127.0.0.1:8787".parse().unwrap();
        assert_eq!(a.url(&addr), format!("http://127.0.0.1:8787/?token={t}"));
        assert_eq!(Access::Open.url(&addr), "http://127.0.0.1:8787/");
        assert_ne!(Access::cookie_name(8787), Access::cookie_name(8788));
    }
}
