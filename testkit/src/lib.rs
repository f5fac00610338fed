//! The test kit: what every test tier uses, in one place.
//! - [`fixtures`]: record sets and the zones the tests serve;
//! - [`loopback`]: a DNS server on 127.0.0.1 with a port the kernel picks, serving a
//!   given set of record sets, no Kubernetes involved;
//! - [`client`]: a DNS client over UDP and TCP.
//!
//! The unit tests inside `mvdns-server` cannot depend on this crate (it links the
//! server's library, and a unit test build is another copy of it), so the fixtures live
//! in `mvdns_server::testing` and are re-exported here: one definition for every tier.

pub mod client;
pub mod fixtures;
pub mod loopback;
