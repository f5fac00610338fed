//! The fast path against the hickory-proto path: for the same request and the same
//! random picks, both must produce the same message (decoded and compared field by
//! field: header, question with its case, answers, additional records and OPT), and the
//! fast path must decline whatever it cannot answer exactly.

use std::net::{IpAddr, Ipv4Addr};

use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::{Name, RecordType};
use mvdns_server::fast::answer_fast;
use mvdns_server::index::{Index, build_index};
use mvdns_server::topology::ClientZones;
use mvdns_server::wire::{Served, Transport, respond};
use mvdns_testkit::fixtures::{self, zones};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A record set of namespace `a` with these `status.values` (the test kit's fixture).
fn record_set(object: &str, spec: serde_json::Value, values: Vec<serde_json::Value>) -> mvdns_api::MultiValueRecordSet {
    fixtures::record_set(
        "a",
        object,
        "2026-01-01T00:00:00Z",
        spec,
        serde_json::Value::Array(values),
    )
}

fn value(v: String, healthy: bool) -> serde_json::Value {
    json!({"value": v, "healthy": healthy, "source": "x", "zone": "zone-a"})
}

fn index() -> Index {
    let sets = [
        record_set(
            "web",
            json!({"name": "web.example.internal", "type": "A", "podSelector": {}}),
            (1..=64).map(|i| value(format!("10.1.0.{i}"), i % 5 != 0)).collect(),
        ),
        record_set(
            "few",
            json!({"name": "few.example.internal", "type": "A", "ttl": 5, "maxAnswers": 3, "podSelector": {}}),
            (1..=5).map(|i| value(format!("10.2.0.{i}"), true)).collect(),
        ),
        record_set(
            "down",
            json!({"name": "down.example.internal", "type": "A", "podSelector": {}}),
            (1..=12).map(|i| value(format!("10.3.0.{i}"), false)).collect(),
        ),
        record_set(
            "v6",
            json!({"name": "web.example.internal", "type": "AAAA", "podSelector": {}}),
            (1..=20).map(|i| value(format!("2001:db8::{i:x}"), true)).collect(),
        ),
        record_set(
            "txt",
            json!({"name": "txt.example.internal", "type": "TXT", "values": [{"value": "a"}]}),
            (0..8).map(|i| value(format!("{i}{}", "t".repeat(150)), true)).collect(),
        ),
        record_set(
            "mx",
            json!({"name": "mail.example.internal", "type": "MX", "values": [{"value": "10 mx.example.com."}]}),
            vec![
                value("10 mx1.example.com.".into(), true),
                value("20 mx2.example.com.".into(), true),
            ],
        ),
        record_set(
            "srv",
            json!({"name": "_h._tcp.svc.example.internal", "type": "SRV", "values": [{"value": "1 1 80 a.example.com."}]}),
            vec![
                value("1 1 80 a.example.com.".into(), true),
                value("2 5 8080 b.example.com.".into(), true),
            ],
        ),
        record_set(
            "pods",
            json!({"name": "_h._tcp.pods.example.internal", "type": "SRV", "port": 8080, "podSelector": {}}),
            vec![json!({"value": "10.9.0.1", "healthy": true, "source": "pod/a", "port": 8080})],
        ),
        record_set(
            "alias",
            json!({"name": "alias.example.internal", "type": "CNAME", "values": [{"value": "a.example.com"}]}),
            vec![value("a.example.com.".into(), true)],
        ),
        record_set(
            "near",
            json!({"name": "near.example.internal", "type": "A", "topology": "PreferSameZone", "podSelector": {}}),
            (1..=9).map(|i| value(format!("10.4.0.{i}"), true)).collect(),
        ),
    ];
    let refs: Vec<&_> = sets.iter().collect();
    build_index(&refs, &zones(), 7)
}

fn random_case<R: Rng>(name: &str, rng: &mut R) -> String {
    name.chars()
        .map(|c| {
            if rng.random_bool(0.3) {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

#[test]
fn fast_and_hickory_paths_agree() {
    let index = index();
    let zones = zones();
    let client_zones = ClientZones::default();
    let served = Served {
        index: &index,
        zones: &zones,
        client_zones: &client_zones,
        synced: true,
    };
    let names = [
        "web.example.internal.",
        "few.example.internal.",
        "down.example.internal.",
        "txt.example.internal.",
        "mail.example.internal.",
        "_h._tcp.svc.example.internal.",
        "_h._tcp.pods.example.internal.",
        "alias.example.internal.",
        "near.example.internal.",
        "nothing.example.internal.",
        "example.internal.",
        "outside.example.com.",
    ];
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::TXT,
        RecordType::MX,
        RecordType::SRV,
        RecordType::CNAME,
        RecordType::SOA,
        RecordType::ANY,
    ];
    let mut generator = SmallRng::seed_from_u64(42);
    let (mut fast_answers, mut declined) = (0u32, 0u32);
    let mut out = Vec::new();
    for round in 0..20_000u64 {
        let name = random_case(names.choose(&mut generator).expect("names"), &mut generator);
        let record_type = *types.choose(&mut generator).expect("types");
        let mut request = Message::query();
        request.metadata.id = generator.random();
        request.metadata.recursion_desired = generator.random();
        request.metadata.checking_disabled = generator.random_bool(0.1);
        request.add_query(Query::query(Name::from_ascii(&name).expect("name"), record_type));
        if generator.random_bool(0.6) {
            let mut edns = Edns::new();
            edns.set_max_payload(*[0u16, 512, 1232, 4096].choose(&mut generator).expect("sizes"));
            request.set_edns(edns);
        }
        let packet = request.to_vec().expect("encode");
        let transport = if generator.random_bool(0.2) {
            Transport::Tcp
        } else {
            Transport::Udp
        };

        let fast = answer_fast(
            &packet,
            transport,
            &index,
            &mut SmallRng::seed_from_u64(round),
            &mut out,
        );
        let source = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let slow = respond(&packet, transport, source, served, &mut SmallRng::seed_from_u64(round)).expect("answered");
        let Some(fast_type) = fast else {
            declined += 1;
            continue;
        };
        fast_answers += 1;
        assert_eq!(fast_type, record_type);
        let fast_message = Message::from_vec(&out).expect("the fast answer decodes");
        let slow_message = Message::from_vec(&slow.bytes).expect("the slow answer decodes");
        assert_eq!(fast_message, slow_message, "{name} {record_type} (round {round})");
        assert_eq!(fast_message.queries[0].name().to_string(), name, "question case echoed");
    }
    println!("{fast_answers} answers compared, {declined} declined to the hickory path");
    assert!(
        fast_answers > 1000 && declined > 1000,
        "both paths exercised: {fast_answers} fast, {declined} declined"
    );
}
