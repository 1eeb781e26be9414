//! Address facts more than one binary needs: whether a host named in a URL
//! is this machine (then compressing costs more than it saves, and
//! plaintext never leaves the host).

/// Whether `host` (a URL's host: a name, an IPv4 address or a bracketed
/// IPv6 address) is this machine's loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.3.2.1", "[::1]", "::1"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "[::2]", "", "localhost.example"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
