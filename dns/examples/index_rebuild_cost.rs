//! The cost of one index rebuild when the status of one record set of many changed
//! (what a DNS replica does after each status write): a whole build, and a build from
//! the one before (which only remakes the changed RRset). A measurement for the notes,
//! not a test:
//! `cargo run --release -p mvdns-server --example index_rebuild_cost [SETS] [VALUES]`.

use std::time::Instant;

use mvdns_api::MultiValueRecordSet;
use mvdns_server::index::{Built, Feeds, build_index, build_index_reusing};
use serde_json::json;

const ROUNDS: u32 = 2_000;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let sets: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(101);
    let values: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let zones = mvdns_testkit::fixtures::zones();
    let record_sets = (0..sets)
        .map(|i| record_set(i, values, 1))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut changed = record_sets.clone();
    let mut refs: Vec<&MultiValueRecordSet> = record_sets.iter().collect();

    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(build_index(&refs, &zones, 1));
    }
    let full = started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS);

    let (_, mut built) = build_index_reusing(&refs, &Feeds::default(), &zones, 1, &Built::default());
    changed[0] = record_set(0, values, 2)?;
    let mut total = 0.0;
    for round in 0..ROUNDS {
        // Alternate the first set between two versions, as flips do.
        changed[0] = record_set(0, values, 3 + u64::from(round))?;
        refs = changed.iter().collect();
        let started = Instant::now();
        let (index, next) = build_index_reusing(&refs, &Feeds::default(), &zones, 1, &built);
        total += started.elapsed().as_secs_f64();
        std::hint::black_box(index);
        built = next;
    }
    let reusing = total * 1e6 / f64::from(ROUNDS);
    println!("{sets} record sets x {values} values: whole build {full:.0} us, one status changed {reusing:.1} us");
    Ok(())
}

fn record_set(i: usize, values: usize, version: u64) -> anyhow::Result<MultiValueRecordSet> {
    let values: Vec<_> = (0..values)
        .map(|v| json!({"value": format!("10.{}.{}.{}", i / 250, i % 250, v), "healthy": true, "source": format!("pod/p-{i}-{v}")}))
        .collect();
    Ok(serde_json::from_value(json!({
        "apiVersion": "mvdns.io/v1alpha1",
        "kind": "MultiValueRecordSet",
        "metadata": {"name": format!("s{i}"), "namespace": "bench", "uid": format!("uid-{i}"),
                     "resourceVersion": version.to_string(), "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"name": format!("s{i}.bench.example.internal."), "type": "A", "podSelector": {"matchLabels": {"set": format!("s{i}")}}},
        "status": {"values": values},
    }))?)
}
