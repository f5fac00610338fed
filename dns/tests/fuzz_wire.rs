//! A bounded fuzz of the request path (runs in the test command): random bytes, and
//! random mutations of valid queries, through `wire::respond`. Whatever comes in, the
//! server must not panic, and anything it sends must decode, be a response, carry the
//! request's ID and fit the size limit of its transport.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};
use mvdns_server::index::{Index, build_index};
use mvdns_server::topology::ClientZones;
use mvdns_server::wire::{Served, Transport, respond, size_limit};
use mvdns_server::zone::Zones;
use mvdns_testkit::fixtures::{record_set, zones};
use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::SmallRng;

fn index() -> Index {
    let values: Vec<_> = (1..=64)
        .map(|i| serde_json::json!({"value": format!("10.1.0.{i}"), "healthy": i % 3 != 0, "source": format!("pod/p{i}")}))
        .collect();
    let rs = record_set(
        "a",
        "web",
        "2026-01-01T00:00:00Z",
        serde_json::json!({"name": "web.example.internal", "type": "A", "podSelector": {}}),
        serde_json::Value::Array(values),
    );
    build_index(&[&rs], &zones(), 1)
}

fn valid_query(name: &str, record_type: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x5a5a;
    if let Ok(name) = Name::from_ascii(name) {
        message.add_query(Query::query(name, record_type));
    }
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.set_edns(opt);
    }
    message.to_vec().expect("encode")
}

/// The properties every answer must have, for any input.
fn check(packet: &[u8], transport: Transport, index: &Index, zones: &Zones) -> Result<(), TestCaseError> {
    let client_zones = ClientZones::default();
    let served = Served {
        index,
        zones,
        client_zones: &client_zones,
        synced: true,
    };
    let mut rng = SmallRng::seed_from_u64(packet.len() as u64);
    let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Some(response) = respond(packet, transport, source, served, &mut rng) else {
        return Ok(());
    };
    let decoded =
        Message::from_vec(&response.bytes).map_err(|e| TestCaseError::fail(format!("undecodable answer: {e}")))?;
    prop_assert_eq!(decoded.metadata.message_type, MessageType::Response);
    prop_assert_eq!(decoded.metadata.id, u16::from_be_bytes([packet[0], packet[1]]));
    let client_payload = Message::from_vec(packet)
        .ok()
        .and_then(|m| m.edns.map(|e| e.max_payload()));
    prop_assert!(response.bytes.len() <= size_limit(transport, client_payload).max(512));
    Ok(())
}

const TYPES: [RecordType; 8] = [
    RecordType::A,
    RecordType::AAAA,
    RecordType::SRV,
    RecordType::TXT,
    RecordType::ANY,
    RecordType::SOA,
    RecordType::NS,
    RecordType::AXFR,
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_break_the_server(packet in proptest::collection::vec(any::<u8>(), 0..600), tcp in any::<bool>()) {
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        check(&packet, transport, &index(), &zones())?;
    }

    #[test]
    fn mutated_queries_never_break_the_server(
        name in prop::sample::select(vec!["web.example.internal.", "WEB.Example.Internal.", "nope.example.internal.", "example.internal.", "example.com."]),
        type_index in 0usize..TYPES.len(),
        edns in prop::option::of(0u16..5000),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in prop::option::of(any::<prop::sample::Index>()),
        tcp in any::<bool>(),
    ) {
        let mut packet = valid_query(name, TYPES[type_index], edns);
        for (position, byte) in flips {
            let i = position.index(packet.len());
            // Keep the ID, so the check can compare it; everything else is fair game.
            if i >= 2 {
                packet[i] ^= byte;
            }
        }
        if let Some(cut) = cut {
            let len = 2 + cut.index(packet.len() - 1);
            packet.truncate(len);
        }
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        check(&packet, transport, &index(), &zones())?;
    }
}
