//! One request in, one response out, whatever the transport: the fast path
//! ([`crate::fast`]) when it can answer, else the full path ([`crate::wire::respond`]),
//! and the query metrics of both.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use mvdns_runtime::listen;
use rand::rngs::SmallRng;

use crate::Shared;
use crate::fast::answer_fast;
use crate::wire::{Served, Transport, respond};

/// One request: the fast path ([`answer_fast`]) when it can, else [`respond`]; the
/// response goes into `out`. Returns whether there is something to send.
pub fn handle(
    shared: &Shared,
    packet: &[u8],
    transport: Transport,
    peer: SocketAddr,
    rng: &mut SmallRng,
    out: &mut Vec<u8>,
) -> bool {
    let started = Instant::now();
    let index = shared.index.load();
    let synced = shared.synced.load(Ordering::Acquire);
    let transport_label = match transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let metrics = &shared.metrics;
    if synced && let Some(record_type) = answer_fast(packet, transport, &index, rng, out) {
        metrics.count_query(record_type, ResponseCode::NoError, transport_label, started.elapsed());
        return true;
    }
    let client_zones = shared.client_zones.load();
    let served = Served {
        index: &index,
        zones: &shared.zones,
        client_zones: &client_zones,
        synced,
    };
    let Some(response) = respond(packet, transport, listen::client_address(peer), served, rng) else {
        metrics.count_dropped("not_a_query");
        return false;
    };
    if response.truncated {
        metrics.truncated.inc();
    }
    *out = response.bytes;
    let query_type = response.query_type;
    match query_type {
        Some(record_type) => metrics.count_query(record_type, response.rcode, transport_label, started.elapsed()),
        None => metrics.count_undecoded(response.rcode, transport_label, started.elapsed()),
    }
    true
}
