//! Loopback ports for test servers, and a minimal HTTP client for them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Ports for test servers: below Linux's ephemeral range (32768 and up),
/// so no outgoing connection of a test's clients takes one between the pick
/// and the server's bind, and apart from `lagrate demo`'s 20000..32000.
const PORTS: std::ops::Range<u16> = 10_000..20_000;
static PORT_CURSOR: std::sync::OnceLock<std::sync::atomic::AtomicU32> = std::sync::OnceLock::new();

/// A free TCP port on loopback, never handed out twice by one process.
/// Each test process starts at a place its id hashes to, so parallel tests
/// (whose ids are often consecutive) pick from different places.
pub fn free_port() -> u16 {
    let span = u32::from(PORTS.end - PORTS.start);
    let cursor = PORT_CURSOR.get_or_init(|| {
        std::sync::atomic::AtomicU32::new(std::process::id().wrapping_mul(2_654_435_761) % span)
    });
    (0..span)
        .map(|_| {
            PORTS.start + (cursor.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % span) as u16
        })
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .unwrap_or_else(|| panic!("no free port on 127.0.0.1 in {PORTS:?}"))
}

/// A minimal HTTP/1.0 GET, enough for loopback test servers.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return (0, String::new());
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
