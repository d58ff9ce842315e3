//! Helpers shared by the examples' HTTP tests (dashboard, service).

use std::io::{Read, Write};
use std::time::Duration;

/// A free local port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request to `addr` (a JSON body when not empty): the status code
/// and the response body, or `None` when nothing answered.
pub fn request(addr: &str, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

#[allow(dead_code)] // the dashboard tests only
/// `GET path` on `addr` with one cookie: the status code and the body.
pub fn request_with_cookie(addr: &str, path: &str, cookie: &str) -> Option<(u16, String)> {
    let text = raw_get(addr, path, &format!("Cookie: {cookie}\r\n"))?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, body.to_string()))
}

#[allow(dead_code)] // the dashboard tests only
/// The response head of `GET path` on `addr` (status line and headers).
pub fn request_head(addr: &str, path: &str) -> Option<String> {
    let text = raw_get(addr, path, "")?;
    Some(text.split_once("\r\n\r\n")?.0.to_string())
}

#[allow(dead_code)] // the dashboard tests only
fn raw_get(addr: &str, path: &str, extra_headers: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra_headers}\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}
