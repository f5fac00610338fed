//! The index against whole builds, the rules, and the quick way.

use serde_json::json;

use hickory_proto::rr::{Name, RData, RecordType as DnsType};
use mvdns_api::MultiValueRecordSet;

use super::*;
use crate::testing::{record_set, zones};
use crate::zone::Zones;

fn lower(name: &str) -> Name {
    Name::from_ascii(name).expect("name")
}

/// What a name serves, comparable: per type, the healthy and unhealthy records.
fn served(index: &Index, name: &str) -> Vec<(DnsType, Vec<String>, Vec<String>)> {
    let node = index.node(&lower(name)).expect("node");
    let records = |entries: &[Entry]| entries.iter().map(|e| e.record.to_string()).collect();
    node.rrsets
        .iter()
        .map(|r| (r.record_type, records(&r.healthy), records(&r.unhealthy)))
        .collect()
}

#[test]
fn unchanged_record_sets_are_reused_and_a_changed_one_is_rebuilt() {
    let versioned = |name: &str, version: &str, ips: &[&str]| {
        let values: Vec<_> = ips
            .iter()
            .map(|ip| json!({"value": ip, "healthy": true, "source": ip}))
            .collect();
        let mut rs = record_set(
            "a",
            name,
            "2026-01-01T00:00:00Z",
            json!({"name": format!("{name}.example.internal"), "type": "A"}),
            json!(values),
        );
        rs.metadata.uid = Some(format!("uid-{name}"));
        rs.metadata.resource_version = Some(version.into());
        rs
    };
    let web = versioned("web", "1", &["192.0.2.1", "192.0.2.2"]);
    let api = versioned("api", "1", &["192.0.2.9"]);
    let (_, first) = build_index_reusing(&[&web, &api], &Feeds::default(), &zones(), 1, &Built::default());
    assert_eq!(first.reused(), 0);
    let (_, second) = build_index_reusing(&[&web, &api], &Feeds::default(), &zones(), 2, &first);
    assert_eq!(second.reused(), 2, "nothing changed");

    let web2 = versioned("web", "2", &["192.0.2.3"]);
    let (incremental, third) = build_index_reusing(&[&web2, &api], &Feeds::default(), &zones(), 3, &second);
    assert_eq!(third.reused(), 1, "only web was rebuilt");
    let fresh = build_index(&[&web2, &api], &zones(), 3);
    for name in ["web.example.internal.", "api.example.internal."] {
        assert_eq!(served(&incremental, name), served(&fresh, name), "{name}");
    }
    assert_eq!(served(&incremental, "web.example.internal.")[0].1.len(), 1);
    assert_eq!(incremental.values_served, fresh.values_served);

    // Objects without a resourceVersion are never taken for unchanged.
    let plain = record_set(
        "a",
        "web",
        "2026-01-01T00:00:00Z",
        json!({"name": "web.example.internal", "type": "A"}),
        json!([]),
    );
    let (_, built) = build_index_reusing(&[&plain], &Feeds::default(), &zones(), 1, &Built::default());
    let (_, again) = build_index_reusing(&[&plain], &Feeds::default(), &zones(), 2, &built);
    assert_eq!(again.reused(), 0);
}

/// Everything an index serves and reports, in a comparable order (the name map and
/// zone positions are hash maps).
fn describe(index: &Index) -> (Vec<String>, usize, usize, Vec<String>) {
    let entries = |entries: &[Entry]| -> Vec<String> {
        entries
            .iter()
            .map(|e| format!("{} {:?} {:?} {:?}", e.record, e.wire, e.zone, e.glue))
            .collect()
    };
    let mut names: Vec<String> = index
        .names
        .iter()
        .map(|(key, node)| {
            let rrsets: Vec<String> = node
                .rrsets
                .iter()
                .map(|r| {
                    let mut by_zone: Vec<_> = r.healthy_by_zone.iter().collect();
                    by_zone.sort();
                    format!(
                        "{} max={} {:?} same-zone={} healthy={:?} unhealthy={:?} {by_zone:?} glue={}",
                        r.record_type,
                        r.max_answers,
                        r.when_all_unhealthy,
                        r.prefer_same_zone,
                        entries(&r.healthy),
                        entries(&r.unhealthy),
                        r.has_glue
                    )
                })
                .collect();
            format!("{key:?}: {rrsets:?}")
        })
        .collect();
    names.sort();
    let mut skipped: Vec<String> = index.skipped.iter().map(|s| format!("{s:?}")).collect();
    skipped.sort();
    (names, index.record_sets_served, index.values_served, skipped)
}

/// A small deterministic generator, so that a failure repeats.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from((self.0 >> 33) % n as u64).expect("small")
    }
}

/// The record sets of the differential test: names claimed twice (one namespace
/// loses), a name outside the zones, a CNAME beside an A record, two sets of one
/// name and type, and values that do not parse.
fn random_record_set(rng: &mut Lcg, i: usize, version: u64) -> MultiValueRecordSet {
    let names = ["web", "api", "db", "shared", "alias"];
    let name = names[i % names.len()];
    let (record_type, host) = match i % 7 {
        5 => ("CNAME", "alias.example.internal".to_string()),
        6 => ("A", format!("{name}.elsewhere.test")),
        _ => ("A", format!("{name}.example.internal")),
    };
    let values: Vec<_> = (0..rng.below(5))
        .map(|v| {
            let value = match (record_type, rng.below(8)) {
                ("CNAME", _) => format!("target{v}.example.internal."),
                (_, 0) => "not-an-ip".to_string(),
                (_, k) => format!("192.0.2.{}", k + 8 * (i % 3)),
            };
            let zone = ["a", "b"][rng.below(2)];
            json!({"value": value, "healthy": rng.below(3) > 0, "source": format!("pod/p{v}"), "zone": zone})
        })
        .collect();
    let namespace = ["team-a", "team-b"][i % 2];
    let created = format!("2026-01-01T00:00:{:02}Z", i % 60);
    let topology = ["None", "PreferSameZone"][i % 2];
    let spec = json!({"name": host, "type": record_type, "topology": topology, "ttl": 30 + i % 3});
    let mut rs = record_set(namespace, &format!("rs{i}"), &created, spec, json!(values));
    rs.metadata.uid = Some(format!("uid-{i}"));
    rs.metadata.generation = Some(1);
    rs.metadata.resource_version = Some(version.to_string());
    rs
}

#[test]
fn a_rebuild_after_status_changes_serves_exactly_what_a_whole_build_does() {
    let mut rng = Lcg(7);
    let mut version = 0;
    let mut next_version = || {
        version += 1;
        version
    };
    let mut sets: Vec<MultiValueRecordSet> = (0..12)
        .map(|i| random_record_set(&mut rng, i, next_version()))
        .collect();
    let mut built = Built::default();
    let mut quick_builds = 0;
    for step in 0..400 {
        let at = rng.below(sets.len());
        match rng.below(10) {
            // Mostly status changes, as readiness flips make them.
            0..7 => {
                let uid_index: usize = sets[at].metadata.name.as_deref().expect("name")[2..]
                    .parse()
                    .expect("index");
                let generation = sets[at].metadata.generation;
                sets[at] = random_record_set(&mut rng, uid_index, next_version());
                sets[at].metadata.generation = generation;
            }
            // A spec change.
            7 => {
                sets[at].spec.ttl += 1;
                sets[at].metadata.generation = sets[at].metadata.generation.map(|g| g + 1);
                sets[at].metadata.resource_version = Some(next_version().to_string());
            }
            // A record set deleted, or one added.
            8 if sets.len() > 2 => {
                sets.remove(at);
            }
            _ => {
                let i = 12 + step;
                sets.push(random_record_set(&mut rng, i, next_version()));
            }
        }
        let refs: Vec<&MultiValueRecordSet> = sets.iter().collect();
        let (index, next) = build_index_reusing(&refs, &Feeds::default(), &zones(), 1, &built);
        let whole = build_index(&refs, &zones(), 1);
        assert_eq!(describe(&index), describe(&whole), "step {step}");
        quick_builds += usize::from(next.statuses_only());
        built = next;
    }
    assert!(
        quick_builds > 150,
        "the quick way was taken {quick_builds} times of 400"
    );
}

#[test]
fn a_status_change_takes_the_quick_way_and_a_new_serial() {
    let mut rng = Lcg(3);
    let first = random_record_set(&mut rng, 0, 1);
    let (_, built) = build_index_reusing(&[&first], &Feeds::default(), &zones(), 1, &Built::default());
    assert_eq!(built.whole_build(), Some(WholeBuild::NoPreviousShape));
    let mut changed = first.clone();
    changed.status = Some(
        serde_json::from_value(json!({"values": [{"value": "192.0.2.77", "healthy": true, "source": "pod/x"}]}))
            .expect("status"),
    );
    changed.metadata.resource_version = Some("2".into());
    let (index, built) = build_index_reusing(&[&changed], &Feeds::default(), &zones(), 2, &built);
    assert!(built.statuses_only());
    assert_eq!(index.serial, 2);
    assert_eq!(
        served(&index, "web.example.internal.")[0].1,
        ["web.example.internal. 30 IN A 192.0.2.77"]
    );
    // A spec change goes the whole way.
    let mut edited = changed.clone();
    edited.metadata.generation = Some(2);
    edited.metadata.resource_version = Some("3".into());
    let (_, built) = build_index_reusing(&[&edited], &Feeds::default(), &zones(), 3, &built);
    assert_eq!(built.whole_build(), Some(WholeBuild::SpecChanged));
    // So does a record set added, and one removed.
    let second = random_record_set(&mut rng, 1, 1);
    let (_, built) = build_index_reusing(&[&edited, &second], &Feeds::default(), &zones(), 4, &built);
    assert_eq!(built.whole_build(), Some(WholeBuild::RecordSetAddedOrRemoved));
    let (_, built) = build_index_reusing(&[&edited], &Feeds::default(), &zones(), 5, &built);
    assert_eq!(built.whole_build(), Some(WholeBuild::RecordSetAddedOrRemoved));
}

#[test]
fn the_serial_rises_strictly_even_within_one_second() {
    assert_eq!(next_serial(0, 1_700_000_000), 1_700_000_000);
    assert_eq!(next_serial(1_700_000_000, 1_700_000_000), 1_700_000_001);
    assert_eq!(
        next_serial(1_700_000_005, 1_700_000_001),
        1_700_000_006,
        "nor falls when the clock does"
    );
    // After 2^32 - 1 comes 0 (RFC 1982), and 5 is newer than both.
    assert_eq!(next_serial(u32::MAX, 5), 5);
    assert_eq!(next_serial(u32::MAX, u32::MAX), 0);
}

#[test]
fn only_the_owning_namespace_is_served_and_values_split_by_health() {
    let owner = record_set(
        "a",
        "web",
        "2026-01-01T00:00:00Z",
        json!({"name": "web.example.internal", "type": "A", "values": [{"value": "192.0.2.1"}]}),
        json!([
            {"value": "192.0.2.1", "healthy": true, "source": "0"},
            {"value": "192.0.2.2", "healthy": false, "source": "1"},
            {"value": "not-an-ip", "healthy": true, "source": "2"},
        ]),
    );
    let thief = record_set(
        "b",
        "web",
        "2026-02-01T00:00:00Z",
        json!({"name": "WEB.example.internal.", "type": "A", "values": [{"value": "198.51.100.1"}]}),
        json!([{"value": "198.51.100.1", "healthy": true, "source": "0"}]),
    );
    let index = build_index(&[&thief, &owner], &zones(), 1);
    let rrset = index
        .node(&lower("web.example.internal."))
        .and_then(|n| n.rrset(DnsType::A))
        .expect("served");
    let healthy: Vec<String> = rrset.healthy.iter().map(|e| e.record.data.to_string()).collect();
    assert_eq!(healthy, ["192.0.2.1"]);
    assert_eq!(rrset.unhealthy.len(), 1);
    assert!(index.skipped.contains(&Skipped::NotOwner {
        record_set: "b/web".into(),
        owner: "a".into()
    }));
    assert!(
        index
            .skipped
            .iter()
            .any(|s| matches!(s, Skipped::InvalidValue { value, .. } if value == "not-an-ip"))
    );
    assert_eq!(index.record_sets_served, 1);
}

#[test]
fn a_restricted_zone_serves_only_its_namespaces() {
    let zones = Zones::new(&crate::zone::ZoneSettings {
        apexes: vec!["example.internal.".into()],
        restricted: vec!["pay.example.internal.=payments".into()],
        ..crate::zone::ZoneSettings::default()
    })
    .expect("zones");
    let in_namespace = |namespace: &str, name: &str| {
        record_set(
            namespace,
            "web",
            "2026-01-01T00:00:00Z",
            json!({"name": name, "type": "A", "values": [{"value": "192.0.2.1"}]}),
            json!([{"value": "192.0.2.1", "healthy": true, "source": "0"}]),
        )
    };
    let allowed = in_namespace("payments", "api.pay.example.internal.");
    let intruder = in_namespace("shop", "checkout.pay.example.internal.");
    let elsewhere = in_namespace("shop", "shop.example.internal.");
    let index = build_index(&[&allowed, &intruder, &elsewhere], &zones, 1);
    assert!(index.node(&lower("api.pay.example.internal.")).is_some());
    assert!(index.node(&lower("shop.example.internal.")).is_some());
    assert!(index.node(&lower("checkout.pay.example.internal.")).is_none());
    assert!(index.skipped.contains(&Skipped::NamespaceNotAllowed {
        record_set: "shop/web".into(),
        zone: "pay.example.internal.".into()
    }));
}

#[test]
fn sets_of_one_name_merge_and_empty_non_terminals_exist() {
    let one = record_set(
        "a",
        "one",
        "2026-01-01T00:00:00Z",
        json!({"name": "_http._tcp.web.example.internal", "type": "SRV", "port": 8080, "ttl": 60, "podSelector": {}}),
        json!([{"value": "10.0.0.7", "healthy": true, "source": "pod/a", "port": 8080}]),
    );
    let two = record_set(
        "a",
        "two",
        "2026-01-02T00:00:00Z",
        json!({"name": "_http._tcp.web.example.internal", "type": "SRV", "ttl": 10, "maxAnswers": 2, "values": [{"value": "1 1 80 web.example.com."}]}),
        json!([{"value": "1 1 80 web.example.com.", "healthy": true, "source": "0"}]),
    );
    let index = build_index(&[&one, &two], &zones(), 1);
    let rrset = index
        .node(&lower("_http._tcp.web.example.internal."))
        .and_then(|n| n.rrset(DnsType::SRV))
        .expect("served");
    assert_eq!(rrset.healthy.len(), 2);
    assert_eq!(rrset.max_answers, 2);
    assert!(rrset.healthy.iter().all(|e| e.record.ttl == 10));
    let pod = rrset.healthy.iter().find(|e| e.glue.is_some()).expect("pod value");
    assert_eq!(
        pod.record.data.to_string(),
        "0 1 8080 10-0-0-7._http._tcp.web.example.internal."
    );
    let glue = index
        .node(&lower("10-0-0-7._http._tcp.web.example.internal."))
        .and_then(|n| n.rrset(DnsType::A))
        .expect("target answers A");
    assert_eq!(glue.healthy[0].record.data.to_string(), "10.0.0.7");
    for ent in [
        "_tcp.web.example.internal.",
        "web.example.internal.",
        "example.internal.",
    ] {
        assert!(index.node(&lower(ent)).is_some_and(|n| n.rrsets.is_empty()), "{ent}");
    }
}

#[test]
fn names_outside_the_zones_and_cname_beside_data_are_skipped() {
    let outside = record_set(
        "a",
        "out",
        "2026-01-01T00:00:00Z",
        json!({"name": "web.example.com", "type": "A", "values": [{"value": "192.0.2.1"}]}),
        json!([{"value": "192.0.2.1", "healthy": true, "source": "0"}]),
    );
    let data = record_set(
        "a",
        "data",
        "2026-01-01T00:00:00Z",
        json!({"name": "api.example.internal", "type": "TXT", "values": [{"value": "hello"}]}),
        json!([{"value": "x".repeat(300), "healthy": true, "source": "0"}]),
    );
    let alias = record_set(
        "a",
        "alias",
        "2026-01-01T00:00:00Z",
        json!({"name": "api.example.internal", "type": "CNAME", "values": [{"value": "web.example.com"}]}),
        json!([{"value": "web.example.com.", "healthy": true, "source": "0"}]),
    );
    let index = build_index(&[&outside, &data, &alias], &zones(), 1);
    assert!(index.node(&lower("web.example.com.")).is_none());
    let node = index.node(&lower("api.example.internal.")).expect("served");
    assert!(node.rrset(DnsType::CNAME).is_none());
    let txt = &node.rrset(DnsType::TXT).expect("txt").healthy[0].record.data;
    let RData::TXT(txt) = txt else { panic!("not TXT") };
    assert_eq!(txt.txt_data.len(), 2, "300 bytes need two character-strings");
    assert_eq!(index.skipped.len(), 2);
}

/// A big name: each slice parsed once per version, one slice's change remade from the
/// others as parsed before, and a status write that leaves the slices as they were
/// (counts) reusing the RRset whole; every build serves what a fresh one does.
#[test]
fn a_sliced_name_reparses_only_the_changed_slice_and_keeps_its_rrset_through_status_writes() {
    use mvdns_api::slice::{RECORD_SET_LABEL, owner_reference};
    use mvdns_api::{Guarded, MultiValueRecordSlice};
    use std::sync::Arc;

    let guarded = |rv: &str, healthy_count: u32| {
        let mut rs = record_set(
            "a",
            "web",
            "2026-01-01T00:00:00Z",
            json!({"name": "web.example.internal", "type": "A"}),
            json!([]),
        );
        rs.metadata.uid = Some("uid-web".into());
        rs.metadata.resource_version = Some(rv.into());
        rs.metadata.generation = Some(1);
        let status = rs.status.get_or_insert_default();
        status.slices = Some(3);
        status.healthy_count = healthy_count;
        Arc::new(kube::core::DeserializeGuard(Ok(rs)))
    };
    let slice = |i: u32, rv: &str, unhealthy: Option<u32>| {
        let values: Vec<_> = (0..100)
            .map(|v| json!({"value": format!("10.0.{i}.{v}"), "healthy": Some(v) != unhealthy, "source": format!("pod/p{i}-{v}")}))
            .collect();
        let slice: MultiValueRecordSlice = serde_json::from_value(json!({
            "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSlice",
            "metadata": {"name": format!("web-{i}"), "namespace": "a", "uid": format!("uid-web-{i}"), "resourceVersion": rv,
                         "labels": {RECORD_SET_LABEL: "web"}, "ownerReferences": [owner_reference("web", "uid-web")]},
            "spec": {"recordSet": "web", "values": values},
        }))
        .expect("slice");
        Arc::new(slice)
    };
    let readable = |g: &Arc<Guarded>| g.0.as_ref().expect("readable").clone();
    let build = |rs: &Arc<Guarded>, slices: &[Arc<MultiValueRecordSlice>], previous: &Built| {
        let feeds = Feeds::join(std::slice::from_ref(rs), slices, &Feeds::default());
        let rs = readable(rs);
        let (index, built) = build_index_reusing(&[&rs], &feeds, &zones(), 1, previous);
        let (fresh, _) = build_index_reusing(&[&rs], &feeds, &zones(), 1, &Built::default());
        assert_eq!(describe(&index), describe(&fresh), "served as a fresh build serves");
        (index, built)
    };

    let rs = guarded("1", 300);
    let slices = [slice(0, "1", None), slice(1, "1", None), slice(2, "1", None)];
    let (index, built) = build(&rs, &slices, &Built::default());
    assert_eq!(index.values_served, 300);
    assert_eq!(built.parsed_parts(), 3, "each slice parsed and kept");

    // One value of the second slice goes unhealthy: that slice is new, the others are not.
    let flipped = [slices[0].clone(), slice(1, "2", Some(7)), slices[2].clone()];
    let (index, built) = build(&rs, &flipped, &built);
    assert_eq!(served(&index, "web.example.internal.")[0].1.len(), 299);
    assert_eq!(built.parsed_parts(), 3, "the old version of the slice is forgotten");
    assert!(built.statuses_only());

    // The status write that follows (new counts, same slices) remakes nothing.
    let (_, after_status) = build(&guarded("2", 299), &flipped, &built);
    assert_eq!(after_status.reused(), 1, "the RRset is the one built from these slices");

    // A slice deleted (the record set shrank to two slices): its parse goes too.
    let shrunk = guarded("3", 200);
    let (_, built) = build(&shrunk, &flipped[..2], &after_status);
    assert_eq!(built.parsed_parts(), 2);
}
