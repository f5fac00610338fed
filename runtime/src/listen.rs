//! Listening on both address families. The binaries listen on `[::]` by default: one
//! socket then takes IPv6 and, as v4-mapped addresses, IPv4 too (IPV6_V6ONLY off, set on
//! the socket rather than left to the `net.ipv6.bindv6only` sysctl of the pod's network
//! namespace), so the same flags work on IPv4-only, IPv6-only and dual-stack clusters.
//! A kernel without IPv6 (`ipv6.disable=1`) cannot open `[::]`; there the same port on
//! `0.0.0.0` is used instead ([`ipv4_fallback`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// The wildcard of both families, `[::]:port`.
pub fn any_address(port: u16) -> SocketAddr {
    (Ipv6Addr::UNSPECIFIED, port).into()
}

/// Whether a socket bound to `address` should take both families: the IPv6 wildcard.
pub fn takes_both_families(address: SocketAddr) -> bool {
    address.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
}

/// The address to try instead when binding `address` failed with `error`: the IPv4
/// wildcard on the same port, when the IPv6 wildcard failed because the kernel has no
/// IPv6. Any other failure (a port in use, no permission) is the caller's to report.
pub fn ipv4_fallback(address: SocketAddr, error: &io::Error) -> Option<SocketAddr> {
    let no_ipv6 = error.raw_os_error() == Some(EAFNOSUPPORT) || error.kind() == io::ErrorKind::AddrNotAvailable;
    (takes_both_families(address) && no_ipv6).then(|| (Ipv4Addr::UNSPECIFIED, address.port()).into())
}

/// EAFNOSUPPORT on Linux ("Address family not supported by protocol").
const EAFNOSUPPORT: i32 = 97;

/// A new socket for `address`, taking both families when it is the IPv6 wildcard.
pub fn socket_for(address: SocketAddr, kind: Type, protocol: Protocol) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(address), kind, Some(protocol))?;
    if takes_both_families(address) {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// The address a client sent from, as the rules see it: an IPv4 client of a dual-stack
/// socket arrives as `::ffff:a.b.c.d` and is read as `a.b.c.d`.
pub fn client_address(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_ipv6_wildcard_takes_both_families_and_falls_back() {
        let wildcard = any_address(53);
        assert!(takes_both_families(wildcard));
        assert!(!takes_both_families("[::1]:53".parse().expect("address")));
        assert!(!takes_both_families("0.0.0.0:53".parse().expect("address")));
        let no_ipv6 = io::Error::from_raw_os_error(97);
        assert_eq!(
            ipv4_fallback(wildcard, &no_ipv6),
            Some("0.0.0.0:53".parse().expect("address"))
        );
        let in_use = io::Error::from(io::ErrorKind::AddrInUse);
        assert_eq!(ipv4_fallback(wildcard, &in_use), None);
        assert_eq!(ipv4_fallback("[::1]:53".parse().expect("address"), &no_ipv6), None);
    }

    #[test]
    fn a_v4_mapped_client_is_read_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:4000".parse().expect("address");
        assert_eq!(client_address(mapped), "10.0.0.7".parse::<IpAddr>().expect("address"));
        let v6: SocketAddr = "[fd00::7]:4000".parse().expect("address");
        assert_eq!(client_address(v6), "fd00::7".parse::<IpAddr>().expect("address"));
    }

    #[test]
    fn the_wildcard_socket_answers_both_families_on_loopback() -> io::Result<()> {
        let socket = socket_for(any_address(0), Type::DGRAM, Protocol::UDP)?;
        socket.bind(&any_address(0).into())?;
        let server: std::net::UdpSocket = socket.into();
        let port = server.local_addr()?.port();
        for loopback in [IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)] {
            let client = std::net::UdpSocket::bind((loopback, 0))?;
            client.send_to(b"ping", (loopback, port))?;
            server.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            let mut buffer = [0u8; 8];
            let (length, from) = server.recv_from(&mut buffer)?;
            assert_eq!(&buffer[..length], b"ping");
            assert_eq!(client_address(from), loopback);
        }
        Ok(())
    }
}
