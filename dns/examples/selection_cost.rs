//! The cost per query of zone-aware and weighted selection against plain random selection,
//! over the 64-value RRset of the benchmarks (values spread over three zones). A measurement for
//! the notes, not a test: `cargo run --release -p mvdns-server --example selection_cost`.

use std::hint::black_box;
use std::time::Instant;

use mvdns_api::WhenAllUnhealthy;
use mvdns_server::select::{pick_answers, pick_answers_near, pick_weighted};
use rand::SeedableRng;
use rand::rngs::SmallRng;

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
