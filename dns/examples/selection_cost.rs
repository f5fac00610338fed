//! The cost per query of zone-aware and weighted selection against plain random selection,
//! over the 64-value RRset of the benchmarks (values spread over three zones), and of the
//! failover tiers and the panic threshold through `answer::choose`, the function both query
//! paths call. A measurement for the notes, not a test:
//! `cargo run --release -p mvdns-server --example selection_cost`.

use std::hint::black_box;
use std::time::Instant;

use hickory_proto::rr::{Name, RecordType};
use mvdns_api::WhenAllUnhealthy;
use mvdns_server::answer::choose;
use mvdns_server::index::{RrSet, build_index};
use mvdns_server::select::{pick_answers, pick_answers_near, pick_weighted};
use mvdns_server::testing::{record_set, zones};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use serde_json::json;

const ROUNDS: u32 = 2_000_000;

fn main() {
    let zones = ["zone-a", "zone-b", "zone-c"];
    let values: Vec<(u32, &str)> = (0..64).map(|i| (i, zones[i as usize % 3])).collect();
    let mut rng = SmallRng::seed_from_u64(1);
    let when = WhenAllUnhealthy::ReturnUnhealthy;

    let plain = time(|| pick_answers(&values, &[], 8, when, &mut rng).len());
    // The index precomputes each zone's positions once per rebuild.
    let in_a = positions(&values, "zone-a");
    let near = time(|| pick_answers_near(&values, &[], 8, when, Some(&in_a), &mut rng).len());
    // Zone a with only 2 values left: the top-up path.
    let thin: Vec<(u32, &str)> = values.iter().copied().filter(|v| v.1 != "zone-a" || v.0 < 6).collect();
    let thin_a = positions(&thin, "zone-a");
    let top_up = time(|| pick_answers_near(&thin, &[], 8, when, Some(&thin_a), &mut rng).len());
    // Weights 1-4 over the same 64 values.
    let weighted = time(|| pick_weighted(&values, |v| 1 + v.0 % 4, 8, &mut rng).len());
    println!("plain random, 8 of 64:          {plain:6.1} ns per answer");
    println!(
        "weighted (1-4), 8 of 64:        {weighted:6.1} ns per answer (+{:.1} ns)",
        weighted - plain
    );
    println!(
        "same zone (22 of 64 in zone):   {near:6.1} ns per answer (+{:.1} ns)",
        near - plain
    );
    println!(
        "same zone, 2 left + top-up:     {top_up:6.1} ns per answer (+{:.1} ns)",
        top_up - plain
    );

    // Through `choose`, on RRsets the index built: the tier and panic rules are applied
    // once per build, so only a spill over two tiers does work per query.
    let one_tier = rrset(json!({}), |_| (true, 0));
    let chosen = time(|| choose(&one_tier, None, 8, &mut rng).len());
    let failed_over = rrset(json!({}), |i| (i >= 4, u8::from(i >= 4)));
    let over = time(|| choose(&failed_over, None, 8, &mut rng).len());
    let spill = rrset(json!({"minHealthy": 6}), |i| (true, u8::from(i >= 4)));
    let spilled = time(|| choose(&spill, None, 8, &mut rng).len());
    let panic = rrset(json!({"minHealthyPercent": 50}), |i| (i < 8, 0));
    let panicked = time(|| choose(&panic, None, 8, &mut rng).len());
    println!("choose, one tier, 8 of 64:      {chosen:6.1} ns per answer");
    println!(
        "choose, tier 0 down (tier 1):   {over:6.1} ns per answer (+{:.1} ns)",
        over - chosen
    );
    println!(
        "choose, 4 in tier 0 + fill:     {spilled:6.1} ns per answer (+{:.1} ns)",
        spilled - chosen
    );
    println!(
        "choose, panic (8 of 64 up):     {panicked:6.1} ns per answer (+{:.1} ns)",
        panicked - chosen
    );
}

/// The RRset of 64 A values, `value(i)` giving each one's health and tier, with `extra`
/// in the spec.
fn rrset(extra: serde_json::Value, value: impl Fn(u32) -> (bool, u8)) -> RrSet {
    let values: Vec<_> = (0..64)
        .map(|i| {
            let (healthy, priority) = value(i);
            json!({"value": format!("10.0.0.{i}"), "healthy": healthy, "source": format!("pod/p{i}"), "priority": priority})
        })
        .collect();
    let mut spec = json!({"name": "web.example.internal.", "type": "A", "podSelector": {}});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let set = record_set("bench", "web", "2026-01-01T00:00:00Z", spec, json!(values));
    let index = build_index(&[&set], &zones(), 1);
    let name = Name::from_ascii("web.example.internal.").expect("a valid name");
    index
        .node(&name)
        .and_then(|node| node.rrset(RecordType::A))
        .cloned()
        .expect("the RRset is served")
}

fn positions(values: &[(u32, &str)], zone: &str) -> Vec<usize> {
    (0..values.len()).filter(|&i| values[i].1 == zone).collect()
}

fn time(mut pick: impl FnMut() -> usize) -> f64 {
    let started = Instant::now();
    for _ in 0..ROUNDS {
        black_box(pick());
    }
    started.elapsed().as_nanos() as f64 / f64::from(ROUNDS)
}
