//! One question to one answer, as a pure function of the index, the zones and a random
//! source. No sockets, no encoding: [`crate::wire`] does that.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use mvdns_api::WhenAllUnhealthy;
use rand::Rng;

use crate::index::{Entry, Index, Node, RrSet};
use crate::select::{pick_answers, pick_answers_near, pick_weighted, same_zone_safeguard, split_near};
use crate::zone::{Zone, Zones};

/// The sections and flags of a response to one question.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// Set for every name inside a served zone.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
    /// The answer depended on the client's zone (for the ECS scope in the response).
    pub zone_dependent: bool,
}

impl Answer {
    fn refused() -> Self {
        Self::empty(ResponseCode::Refused, false)
    }

    fn empty(rcode: ResponseCode, authoritative: bool) -> Self {
        Self {
            rcode,
            authoritative,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            zone_dependent: false,
        }
    }

    /// NXDOMAIN or NODATA: the zone's SOA in authority gives the negative TTL (RFC 2308).
    fn negative(rcode: ResponseCode, zone: &Zone, serial: u32) -> Self {
        let mut answer = Self::empty(rcode, true);
        answer.authorities.push(zone.soa(serial));
        answer
    }
}

/// Answers `name` (as asked, for the case echo) of `record_type` and `class`.
///
/// - outside every zone, another class than IN, or a zone transfer: REFUSED (never a
///   resolver, never a secondary);
/// - unknown name in a zone: NXDOMAIN with the SOA; known name without that type: NODATA
///   with the SOA;
/// - SOA and NS at each apex, synthesized from the zone settings;
/// - ANY: one RRset only (RFC 8482), chosen like a query for its type;
/// - a CNAME answers every type at its name, with one target at random, and the chain is
///   followed inside the served zones (see [`follow_cname`]);
/// - `client_zone` steers the selection of record sets with `PreferSameZone`.
pub fn answer<R: Rng + ?Sized>(
    index: &Index,
    zones: &Zones,
    question: &Question<'_>,
    client_zone: Option<&str>,
    rng: &mut R,
) -> Answer {
    let Question {
        name,
        record_type,
        class,
    } = *question;
    let lower = LowerName::new(name);
    let Some(zone) = zones.zone_of(&lower) else {
        return Answer::refused();
    };
    if class != DNSClass::IN || matches!(record_type, RecordType::AXFR | RecordType::IXFR) {
        return Answer::refused();
    }
    let at_apex = lower == zone.apex;
    let node = index.node(name);
    if node.is_none() && !at_apex {
        return Answer::negative(ResponseCode::NXDomain, zone, index.serial);
    }
    let empty = Node::default();
    let node = node.unwrap_or(&empty);

    if at_apex {
        match record_type {
            RecordType::SOA | RecordType::ANY => return positive(name, vec![zone.soa(index.serial)], Vec::new()),
            RecordType::NS => {
                let glue = nameserver_addresses(index, zones, &zone.nameservers, client_zone, rng);
                return positive(name, zone.ns_records(), glue);
            }
            _ => {}
        }
    }

    let rrset = match record_type {
        RecordType::ANY => node.rrsets.first().map(AsRef::as_ref),
        other => node.rrset(other).or_else(|| node.rrset(RecordType::CNAME)),
    };
    let Some(rrset) = rrset else {
        return Answer::negative(ResponseCode::NoError, zone, index.serial);
    };
    let (answers, additionals) = pick(rrset, client_zone, rng);
    if answers.is_empty() {
        return Answer::negative(ResponseCode::NoError, zone, index.serial);
    }
    let mut answer = positive(name, answers, additionals);
    answer.zone_dependent = rrset.prefer_same_zone;
    if rrset.record_type == RecordType::CNAME && !matches!(record_type, RecordType::CNAME | RecordType::ANY) {
        follow_cname(index, zones, record_type, client_zone, rng, &mut answer);
    }
    answer
}

/// The addresses of the name servers that lie in a served zone, from their record sets
/// (healthy values, picked by each set's own rule, as a query for them would get), for
/// the additional section of an NS answer: a resolver then needs no second query, and
/// for in-zone servers of a delegated zone it has no other way in (RFC 1034 4.2.1 glue).
/// A name server without a record set adds nothing.
fn nameserver_addresses<R: Rng + ?Sized>(
    index: &Index,
    zones: &Zones,
    nameservers: &[Name],
    client_zone: Option<&str>,
    rng: &mut R,
) -> Vec<Record> {
    let mut glue = Vec::new();
    for nameserver in nameservers {
        if zones.zone_of(&LowerName::new(nameserver)).is_none() {
            continue;
        }
        let Some(node) = index.node(nameserver) else {
            continue;
        };
        for record_type in [RecordType::A, RecordType::AAAA] {
            if let Some(rrset) = node.rrset(record_type) {
                let (picked, _) = pick(rrset, client_zone, rng);
                glue.extend(picked.into_iter().map(|mut record| {
                    record.name = nameserver.clone();
                    record
                }));
            }
        }
    }
    glue
}

/// CNAMEs followed inside the zones at most; a longer chain (or a loop) ends the answer
/// there, and the client goes on from the last target (RFC 1034 4.3.2 allows both).
const MAX_CHAIN: usize = 8;

/// Follows the CNAME that ends `answer` while its target lies in a served zone, as an
/// authoritative server does (RFC 1034 4.3.2 step 3a; Knot and NSD do the same): each
/// target's own records, picked by the target's own multivalue rule, are added under the
/// target's name. Without this a stub resolver that does not chase (glibc's getent, asked
/// directly, or CoreDNS's `forward`) finds no address.
///
/// The response code is the last name's (RFC 6604): a target that does not exist gives
/// NXDOMAIN, one without the type NODATA, both with that zone's SOA. A target outside
/// every zone ends the chain with NOERROR: the client's resolver follows it.
fn follow_cname<R: Rng + ?Sized>(
    index: &Index,
    zones: &Zones,
    record_type: RecordType,
    client_zone: Option<&str>,
    rng: &mut R,
    answer: &mut Answer,
) {
    let mut seen: Vec<LowerName> = answer.answers.iter().map(|r| LowerName::new(&r.name)).collect();
    for _ in 0..MAX_CHAIN {
        let Some(target) = answer.answers.last().and_then(cname_target) else {
            return;
        };
        let lower = LowerName::new(&target);
        if seen.contains(&lower) {
            return; // a loop: what was gathered is the answer
        }
        seen.push(lower.clone());
        let Some(zone) = zones.zone_of(&lower) else {
            return;
        };
        let Some(node) = index.node(&target) else {
            answer.rcode = ResponseCode::NXDomain;
            answer.authorities.push(zone.soa(index.serial));
            return;
        };
        let Some(rrset) = node.rrset(record_type).or_else(|| node.rrset(RecordType::CNAME)) else {
            answer.authorities.push(zone.soa(index.serial));
            return;
        };
        let (picked, glue) = pick(rrset, client_zone, rng);
        if picked.is_empty() {
            answer.authorities.push(zone.soa(index.serial));
            return;
        }
        answer.zone_dependent |= rrset.prefer_same_zone;
        answer.answers.extend(picked.into_iter().map(|mut record| {
            record.name = target.clone();
            record
        }));
        answer.additionals.extend(glue);
        if rrset.record_type != RecordType::CNAME {
            return;
        }
    }
}

fn cname_target(record: &Record) -> Option<Name> {
    match &record.data {
        RData::CNAME(target) => Some(target.0.clone()),
        _ => None,
    }
}

/// One question: the name as asked, its type and class.
#[derive(Clone, Copy, Debug)]
pub struct Question<'a> {
    pub name: &'a Name,
    pub record_type: RecordType,
    pub class: DNSClass,
}

/// The records one query gets from `rrset`, and the glue of the picked ones. A CNAME
/// answers with one target: a name has one canonical name at a time.
fn pick<R: Rng + ?Sized>(rrset: &RrSet, client_zone: Option<&str>, rng: &mut R) -> (Vec<Record>, Vec<Record>) {
    let max_answers = if rrset.record_type == RecordType::CNAME {
        1
    } else {
        rrset.max_answers
    };
    let picked = choose(rrset, client_zone, max_answers, rng);
    let additionals = picked.iter().filter_map(|e| e.glue.clone()).collect();
    (picked.into_iter().map(|e| e.record.clone()).collect(), additionals)
}

/// The entries of one answer from `rrset`, the rules in this order:
/// 1. the pool: the healthy values that are not drained, of the failover tiers answered
///    now (the index applied the tier and panic rules of [`mvdns_api::selection`]); if
///    there are none, the healthy drained ones; if there are none either, the fail-open
///    pool (`ReturnUnhealthy`: the unhealthy values; `ReturnNone`: nothing);
/// 2. the tiers, when more than one is answered: the better tiers first, each picked by
///    the rules below, and the last one fills the rest of the answer;
/// 3. the zone (`topology: PreferSameZone`, healthy values only): the client's zone's
///    values when it has enough, else all of them and the rest from other zones;
/// 4. the weights, when some value weighs other than 1 (`select::pick_weighted`),
///    within what the zone rule leaves; else a uniform pick.
pub fn choose<'a, R: Rng + ?Sized>(
    rrset: &'a RrSet,
    client_zone: Option<&str>,
    max_answers: usize,
    rng: &mut R,
) -> Vec<&'a Entry> {
    if rrset.healthy.is_empty() {
        return fallback(rrset, max_answers, rng);
    }
    let near = client_zone
        .filter(|_| rrset.prefer_same_zone)
        // A known zone without healthy values here is an empty "near" list: the answer
        // comes from the other zones.
        .map(|zone| rrset.healthy_by_zone.get(zone).map_or(&[][..], Vec::as_slice));
    if rrset.tiers.is_empty() {
        return pick_healthy(&rrset.healthy, near, rrset.weighted, max_answers, rng);
    }
    let mut picked = Vec::with_capacity(max_answers);
    for tier in &rrset.tiers {
        let room = max_answers.saturating_sub(picked.len());
        if room == 0 {
            break;
        }
        let near_in_tier: Option<Vec<usize>> = near.map(|near| {
            near.iter()
                .filter(|i| tier.contains(i))
                .map(|i| i - tier.start)
                .collect()
        });
        let pool = &rrset.healthy[tier.clone()];
        picked.extend(pick_healthy(pool, near_in_tier.as_deref(), rrset.weighted, room, rng));
    }
    picked
}

/// Rule 1's fallbacks: the drained values, else the fail-open pool.
fn fallback<'a, R: Rng + ?Sized>(rrset: &'a RrSet, max_answers: usize, rng: &mut R) -> Vec<&'a Entry> {
    if !rrset.drained.is_empty() {
        return pick_pool(rrset, &rrset.drained, max_answers, rng);
    }
    match rrset.when_all_unhealthy {
        WhenAllUnhealthy::ReturnUnhealthy => pick_pool(rrset, &rrset.unhealthy, max_answers, rng),
        WhenAllUnhealthy::ReturnNone => Vec::new(),
    }
}

/// Rules 3 and 4 within one pool of healthy values; `near` holds the positions in `pool`
/// of the client's zone's values.
fn pick_healthy<'a, R: Rng + ?Sized>(
    pool: &'a [Entry],
    near: Option<&[usize]>,
    weighted: bool,
    max_answers: usize,
    rng: &mut R,
) -> Vec<&'a Entry> {
    if !weighted {
        return pick_answers_near(pool, &[], max_answers, WhenAllUnhealthy::ReturnNone, near, rng);
    }
    let Some(near) = near else {
        return pick_weighted(pool, |e| e.weight, max_answers, rng);
    };
    let (close, far) = split_near(pool, near);
    let mut picked: Vec<&Entry> = pick_weighted(&close, |e| e.weight, max_answers, rng)
        .into_iter()
        .copied()
        .collect();
    if close.len() < same_zone_safeguard(max_answers) {
        let fill = max_answers.saturating_sub(picked.len());
        picked.extend(pick_weighted(&far, |e| e.weight, fill, rng).into_iter().copied());
    }
    picked
}

/// A pick from one fallback pool, weighted when the RRset is.
fn pick_pool<'a, R: Rng + ?Sized>(rrset: &RrSet, pool: &'a [Entry], max_answers: usize, rng: &mut R) -> Vec<&'a Entry> {
    if rrset.weighted {
        pick_weighted(pool, |e| e.weight, max_answers, rng)
    } else {
        pick_answers(pool, &[], max_answers, WhenAllUnhealthy::ReturnNone, rng)
    }
}

/// A NOERROR answer whose records carry the name exactly as asked, so the answer
/// echoes the question's case and compresses to a pointer to it.
fn positive(name: &Name, mut answers: Vec<Record>, additionals: Vec<Record>) -> Answer {
    for record in &mut answers {
        record.name = name.clone();
    }
    Answer {
        rcode: ResponseCode::NoError,
        authoritative: true,
        answers,
        authorities: Vec::new(),
        additionals,
        zone_dependent: false,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    use super::*;
    use crate::index::build_index;
    use crate::testing::{record_set, zones};
    use crate::zone::ZoneSettings;

    fn index(spec: serde_json::Value, values: serde_json::Value) -> Index {
        let rs = record_set("a", "web", "2026-01-01T00:00:00Z", spec, values);
        build_index(&[&rs], &zones(), 42)
    }

    fn ask(index: &Index, name: &str, record_type: RecordType) -> Answer {
        let name = Name::from_ascii(name).expect("name");
        let question = Question {
            name: &name,
            record_type,
            class: DNSClass::IN,
        };
        answer(index, &zones(), &question, None, &mut StdRng::seed_from_u64(1))
    }

    fn web() -> Index {
        let values: Vec<_> = (1..=20)
            .map(|i| json!({"value": format!("192.0.2.{i}"), "healthy": i <= 5, "source": format!("pod/p{i}")}))
            .collect();
        index(
            json!({"name": "web.example.internal", "type": "A", "podSelector": {}}),
            json!(values),
        )
    }

    /// The addresses one `choose` picks from the RRset of `web.example.internal. A`.
    fn chosen(index: &Index, rng: &mut StdRng) -> Vec<String> {
        let node = index
            .node(&Name::from_ascii("web.example.internal.").expect("name"))
            .expect("node");
        let rrset = node.rrset(RecordType::A).expect("A");
        choose(rrset, None, rrset.max_answers, rng)
            .into_iter()
            .map(|e| e.record.data.to_string())
            .collect()
    }

    #[test]
    fn drained_values_are_answered_only_when_nothing_else_is_healthy() {
        let spec = json!({"name": "web.example.internal", "type": "A", "podSelector": {}});
        let value = |ip: &str, healthy: bool, drained: bool| json!({"value": ip, "healthy": healthy, "source": format!("pod/{ip}"), "drained": drained});
        let mut rng = StdRng::seed_from_u64(5);
        let some_drained = index(
            spec.clone(),
            json!([
                value("10.0.0.1", true, false),
                value("10.0.0.2", true, true),
                value("10.0.0.3", false, false)
            ]),
        );
        for _ in 0..50 {
            assert_eq!(chosen(&some_drained, &mut rng), ["10.0.0.1"]);
        }
        // Nothing undrained is healthy: the drained healthy value, before the unhealthy one.
        let all_drained = index(
            spec.clone(),
            json!([value("10.0.0.1", false, false), value("10.0.0.2", true, true)]),
        );
        assert_eq!(chosen(&all_drained, &mut rng), ["10.0.0.2"]);
        // Drained and unhealthy: the fail-open pool, as for any unhealthy value.
        let down = index(spec, json!([value("10.0.0.2", false, true)]));
        assert_eq!(chosen(&down, &mut rng), ["10.0.0.2"]);
    }

    #[test]
    fn weights_decide_the_first_answer_and_weight_zero_waits() {
        let spec = json!({"name": "web.example.internal", "type": "A", "podSelector": {}, "maxAnswers": 2});
        let value = |ip: &str, weight: u8| json!({"value": ip, "healthy": true, "source": format!("pod/{ip}"), "weight": weight});
        let weighted = index(
            spec.clone(),
            json!([value("10.0.0.1", 1), value("10.0.0.2", 3), value("10.0.0.3", 0)]),
        );
        let mut rng = StdRng::seed_from_u64(9);
        let mut firsts = std::collections::BTreeMap::<String, u32>::new();
        for _ in 0..4_000 {
            let picked = chosen(&weighted, &mut rng);
            assert!(
                !picked.contains(&"10.0.0.3".to_owned()),
                "weight 0 while others are healthy"
            );
            *firsts.entry(picked[0].clone()).or_default() += 1;
        }
        let share = f64::from(firsts["10.0.0.2"]) / 4_000.0;
        assert!(
            (share - 0.75).abs() < 0.03,
            "weight 3 of 4 came first {share:.3} of the time"
        );
        let only_zero = index(spec, json!([value("10.0.0.3", 0)]));
        assert_eq!(
            chosen(&only_zero, &mut rng),
            ["10.0.0.3"],
            "weight 0 when nothing weighs more"
        );
    }

    fn tiered(ip: &str, priority: u8, healthy: bool) -> serde_json::Value {
        json!({"value": ip, "healthy": healthy, "source": format!("pod/{ip}"), "priority": priority})
    }

    #[test]
    fn the_best_tier_answers_and_a_thin_one_is_filled_from_the_next() {
        let spec = |min_healthy: u32| json!({"name": "web.example.internal", "type": "A", "podSelector": {}, "maxAnswers": 3, "minHealthy": min_healthy});
        let values = json!([
            tiered("10.0.0.1", 0, true),
            tiered("10.0.0.2", 0, true),
            tiered("10.0.1.1", 1, true),
            tiered("10.0.1.2", 1, true),
            tiered("10.0.2.1", 2, true),
        ]);
        let mut rng = StdRng::seed_from_u64(3);
        let primary = index(spec(1), values.clone());
        for _ in 0..50 {
            let mut got = chosen(&primary, &mut rng);
            got.sort();
            assert_eq!(got, ["10.0.0.1", "10.0.0.2"], "tier 0 has enough");
        }
        let spill = index(spec(3), values.clone());
        let mut fills = BTreeSet::new();
        for _ in 0..200 {
            let got = chosen(&spill, &mut rng);
            assert_eq!(got.len(), 3);
            let mut first_two = got[..2].to_vec();
            first_two.sort();
            assert_eq!(first_two, ["10.0.0.1", "10.0.0.2"], "the thin tier whole, first");
            assert!(got[2].starts_with("10.0.1."), "filled from tier 1: {got:?}");
            fills.insert(got[2].clone());
        }
        assert_eq!(fills.len(), 2, "either value of tier 1 fills");
        let down = index(
            spec(1),
            json!([
                tiered("10.0.0.1", 0, false),
                tiered("10.0.1.1", 1, true),
                tiered("10.0.2.1", 2, true)
            ]),
        );
        assert_eq!(chosen(&down, &mut rng), ["10.0.1.1"], "tier 0 is down: tier 1");
        let all_down = index(
            spec(1),
            json!([tiered("10.0.1.1", 1, false), tiered("10.0.0.1", 0, false)]),
        );
        assert_eq!(
            chosen(&all_down, &mut rng),
            ["10.0.0.1"],
            "fail-open from the best tier"
        );
    }

    #[test]
    fn below_the_panic_threshold_every_value_is_answered() {
        let values: Vec<_> = (1..=10).map(|i| tiered(&format!("10.0.0.{i}"), 0, i <= 2)).collect();
        let spec = |percent: u8| json!({"name": "web.example.internal", "type": "A", "podSelector": {}, "maxAnswers": 8, "minHealthyPercent": percent});
        let mut rng = StdRng::seed_from_u64(4);
        let calm = index(spec(20), json!(values));
        assert_eq!(chosen(&calm, &mut rng).len(), 2, "20% healthy is not below 20%");
        let panic = index(spec(50), json!(values));
        let mut seen = BTreeSet::new();
        for _ in 0..100 {
            let got = chosen(&panic, &mut rng);
            assert_eq!(got.len(), 8);
            seen.extend(got);
        }
        assert_eq!(seen.len(), 10, "health ignored: all ten values answer");
    }

    mod properties {
        use mvdns_api::selection::{Facts, Rules, plan};
        use proptest::prelude::*;

        use super::*;

        /// One value: (healthy, drained, priority, weight, zone).
        fn value() -> impl Strategy<Value = (bool, bool, u8, u8, u8)> {
            (any::<bool>(), prop::bool::weighted(0.2), 0u8..3, 0u8..4, 0u8..3)
        }

        proptest! {
            #[test]
            fn every_answer_follows_the_documented_rules(
                values in prop::collection::vec(value(), 1..24),
                max_answers in 1u8..=8,
                min_healthy in 1u32..6,
                min_healthy_percent in prop::sample::select(vec![0u8, 30, 60, 100]),
                prefer_same_zone in any::<bool>(),
                return_none in any::<bool>(),
                client_zone in prop::option::of(0u8..3),
                seed in any::<u64>(),
            ) {
                let zone_name = |z: u8| ["a", "b", "c"][usize::from(z)];
                let status: Vec<_> = values.iter().enumerate().map(|(i, &(healthy, drained, priority, weight, zone))| {
                    json!({"value": format!("10.0.0.{i}"), "healthy": healthy, "drained": drained, "source": format!("pod/{i}"),
                           "priority": priority, "weight": weight, "zone": zone_name(zone)})
                }).collect();
                let spec = json!({"name": "web.example.internal", "type": "A", "podSelector": {},
                    "maxAnswers": max_answers, "minHealthy": min_healthy, "minHealthyPercent": min_healthy_percent,
                    "topology": if prefer_same_zone {"PreferSameZone"} else {"None"},
                    "whenAllUnhealthy": if return_none {"ReturnNone"} else {"ReturnUnhealthy"}});
                let index = index(spec, json!(status));
                let rrset = index.node(&Name::from_ascii("web.example.internal.").expect("name"))
                    .and_then(|n| n.rrset(RecordType::A)).expect("rrset");
                let facts = |ip: &str| {
                    let i: usize = ip.rsplit('.').next().and_then(|n| n.parse().ok()).expect("ip");
                    let (healthy, drained, priority, ..) = values[i];
                    Facts { priority, healthy, drained }
                };
                let pick = |seed: u64| -> Vec<String> {
                    let zone = client_zone.map(zone_name);
                    choose(rrset, zone, usize::from(max_answers), &mut StdRng::seed_from_u64(seed))
                        .into_iter().map(|e| e.record.data.to_string()).collect()
                };
                let answer = pick(seed);
                prop_assert_eq!(&answer, &pick(seed), "determinism under a seeded RNG");
                prop_assert!(answer.len() <= usize::from(max_answers));
                let unique: BTreeSet<&String> = answer.iter().collect();
                prop_assert_eq!(unique.len(), answer.len(), "no value twice");
                let all: Vec<Facts> = values.iter().map(|&(healthy, drained, priority, ..)| Facts { priority, healthy, drained }).collect();
                let rules = Rules { min_healthy, min_healthy_percent };
                let plan = plan(all.iter().copied(), rules);
                let priorities: Vec<u8> = answer.iter().map(|ip| facts(ip).priority).collect();
                if !plan.priorities.is_empty() {
                    prop_assert!(!answer.is_empty());
                    prop_assert!(answer.iter().all(|ip| plan.answers_from(facts(ip))), "only the answered tiers, never a drained value");
                    prop_assert!(priorities.windows(2).all(|w| w[0] <= w[1]), "better tiers first: {:?}", priorities);
                } else if all.iter().any(|f| f.healthy && f.drained) {
                    prop_assert!(!answer.is_empty());
                    prop_assert!(answer.iter().all(|ip| { let f = facts(ip); f.healthy && f.drained }), "drained values as the last resort");
                } else if return_none {
                    prop_assert!(answer.is_empty());
                } else {
                    prop_assert!(!answer.is_empty() && answer.iter().all(|ip| !facts(ip).healthy), "fail-open");
                }
                if plan.priorities.is_empty() {
                    let tiers: BTreeSet<u8> = priorities.iter().copied().collect();
                    prop_assert!(tiers.len() <= 1, "a fallback answers from one tier: {:?}", tiers);
                }
            }
        }
    }

    #[test]
    fn rcodes_follow_the_zone_and_the_names() {
        let index = web();
        let refused = ask(&index, "web.example.com.", RecordType::A);
        assert_eq!((refused.rcode, refused.authoritative), (ResponseCode::Refused, false));
        let nx = ask(&index, "nope.example.internal.", RecordType::A);
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        assert_eq!(nx.authorities[0].ttl, 30, "negative TTL from the SOA");
        let nodata = ask(&index, "web.example.internal.", RecordType::AAAA);
        assert_eq!((nodata.rcode, nodata.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
        let transfer = ask(&index, "example.internal.", RecordType::AXFR);
        assert_eq!(transfer.rcode, ResponseCode::Refused);
        let name = Name::from_ascii("web.example.internal.").expect("name");
        let question = Question {
            name: &name,
            record_type: RecordType::A,
            class: DNSClass::CH,
        };
        let chaos = answer(&index, &zones(), &question, None, &mut StdRng::seed_from_u64(1));
        assert_eq!(chaos.rcode, ResponseCode::Refused);
    }

    #[test]
    fn apex_has_soa_and_ns_and_any_is_minimal() {
        let index = web();
        let soa = ask(&index, "Example.Internal.", RecordType::SOA);
        assert_eq!(soa.answers.len(), 1);
        assert_eq!(soa.answers[0].name.to_string(), "Example.Internal.");
        let ns = ask(&index, "example.internal.", RecordType::NS);
        assert_eq!(ns.answers[0].data.to_string(), "ns.example.internal.");
        let any = ask(&index, "web.example.internal.", RecordType::ANY);
        assert_eq!(any.answers.len(), 5);
        assert!(any.answers.iter().all(|r| r.record_type() == RecordType::A));
    }

    #[test]
    fn an_apex_ns_answer_carries_the_addresses_of_in_zone_name_servers() {
        let settings = ZoneSettings {
            apexes: vec!["example.internal.".into()],
            nameservers: vec!["ns1.example.internal.".into(), "ns.other.test.".into()],
            ..ZoneSettings::default()
        };
        let zones = Zones::new(&settings).expect("zones");
        let index = index_of(&[(
            "ns1".into(),
            json!({"name": "ns1.example.internal.", "type": "A", "values": [{"value": "127.0.0.53"}, {"value": "127.0.0.54"}]}),
            json!([
                {"value": "127.0.0.53", "healthy": true, "source": "0"},
                {"value": "127.0.0.54", "healthy": false, "source": "1"},
            ]),
        )]);
        let name = Name::from_ascii("example.internal.").expect("name");
        let question = Question {
            name: &name,
            record_type: RecordType::NS,
            class: DNSClass::IN,
        };
        let ns = answer(&index, &zones, &question, None, &mut StdRng::seed_from_u64(1));
        assert_eq!(ns.answers.len(), 2);
        // Only the healthy address of the in-zone server; the other server is not ours.
        let glue: Vec<String> = ns
            .additionals
            .iter()
            .map(|r| format!("{} {}", r.name, r.data))
            .collect();
        assert_eq!(glue, ["ns1.example.internal. 127.0.0.53"]);
    }

    #[test]
    fn only_healthy_values_are_answered_with_the_case_echoed() {
        let index = web();
        let answer = ask(&index, "WeB.example.INTERNAL.", RecordType::A);
        let values: BTreeSet<String> = answer.answers.iter().map(|r| r.data.to_string()).collect();
        let healthy: BTreeSet<String> = (1..=5).map(|i| format!("192.0.2.{i}")).collect();
        assert_eq!(values, healthy);
        assert!(
            answer
                .answers
                .iter()
                .all(|r| r.name.to_string() == "WeB.example.INTERNAL.")
        );
        assert!(answer.authoritative);
    }

    #[test]
    fn cname_answers_other_types_with_one_target() {
        let index = index(
            json!({"name": "web.example.internal", "type": "CNAME", "values": [{"value": "a.example.com"}]}),
            json!([
                {"value": "a.example.com.", "healthy": true, "source": "0"},
                {"value": "b.example.com.", "healthy": true, "source": "1"},
            ]),
        );
        let answer = ask(&index, "web.example.internal.", RecordType::A);
        assert_eq!(answer.answers.len(), 1);
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    }

    /// Several record sets in one index (`index` above builds one).
    fn index_of(sets: &[(String, serde_json::Value, serde_json::Value)]) -> Index {
        let sets: Vec<_> = sets
            .iter()
            .map(|(name, spec, values)| record_set("a", name, "2026-01-01T00:00:00Z", spec.clone(), values.clone()))
            .collect();
        build_index(&sets.iter().collect::<Vec<_>>(), &zones(), 42)
    }

    fn cname(name: &str, target: &str) -> (String, serde_json::Value, serde_json::Value) {
        (
            format!("cname-{name}"),
            json!({"name": name, "type": "CNAME", "values": [{"value": target}]}),
            json!([{"value": target, "healthy": true, "source": "0"}]),
        )
    }

    fn pods(name: &str, healthy: &[&str]) -> (String, serde_json::Value, serde_json::Value) {
        let values: Vec<_> = healthy
            .iter()
            .map(|ip| json!({"value": ip, "healthy": true, "source": format!("pod/{ip}")}))
            .collect();
        (
            format!("pods-{name}"),
            json!({"name": name, "type": "A", "podSelector": {}}),
            json!(values),
        )
    }

    fn summary(answer: &Answer) -> Vec<String> {
        answer
            .answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect()
    }

    #[test]
    fn an_in_zone_cname_target_is_followed_and_picked_by_its_own_rule() {
        let index = index_of(&[
            cname("alias.example.internal", "hop.example.internal."),
            cname("hop.example.internal", "web.example.internal."),
            pods("web.example.internal", &["192.0.2.1", "192.0.2.2"]),
        ]);
        let answer = ask(&index, "Alias.example.internal.", RecordType::A);
        assert_eq!(answer.rcode, ResponseCode::NoError);
        let lines = summary(&answer);
        assert_eq!(
            lines[..2],
            [
                "Alias.example.internal. CNAME hop.example.internal.",
                "hop.example.internal. CNAME web.example.internal."
            ]
        );
        let addresses: BTreeSet<_> = lines[2..].iter().cloned().collect();
        let expected: BTreeSet<_> = ["web.example.internal. A 192.0.2.1", "web.example.internal. A 192.0.2.2"]
            .map(String::from)
            .into();
        assert_eq!(
            addresses, expected,
            "the target's healthy values, under the target's name"
        );
        // Asked for the CNAME itself, or ANY: the CNAME alone.
        assert_eq!(
            ask(&index, "alias.example.internal.", RecordType::CNAME).answers.len(),
            1
        );
        assert_eq!(ask(&index, "alias.example.internal.", RecordType::ANY).answers.len(), 1);
    }

    #[test]
    fn a_chain_ends_with_the_last_names_rcode() {
        let index = index_of(&[
            cname("gone.example.internal", "missing.example.internal."),
            cname("v6.example.internal", "web.example.internal."),
            cname("out.example.internal", "www.example.com."),
            cname("loop-a.example.internal", "loop-b.example.internal."),
            cname("loop-b.example.internal", "loop-a.example.internal."),
            pods("web.example.internal", &["192.0.2.1"]),
        ]);
        let nx = ask(&index, "gone.example.internal.", RecordType::A);
        assert_eq!(
            (nx.rcode, nx.answers.len()),
            (ResponseCode::NXDomain, 1),
            "RFC 6604: the target's NXDOMAIN"
        );
        assert_eq!(nx.authorities[0].record_type(), RecordType::SOA);
        let nodata = ask(&index, "v6.example.internal.", RecordType::AAAA);
        assert_eq!((nodata.rcode, nodata.answers.len()), (ResponseCode::NoError, 1));
        assert_eq!(nodata.authorities[0].record_type(), RecordType::SOA);
        let out = ask(&index, "out.example.internal.", RecordType::A);
        assert_eq!(
            (out.rcode, out.answers.len(), out.authorities.len()),
            (ResponseCode::NoError, 1, 0)
        );
        let looped = ask(&index, "loop-a.example.internal.", RecordType::A);
        assert_eq!(
            (looped.rcode, summary(&looped).len()),
            (ResponseCode::NoError, 2),
            "each name once"
        );
    }

    #[test]
    fn all_unhealthy_with_return_none_is_nodata() {
        let index = index(
            json!({"name": "web.example.internal", "type": "A", "whenAllUnhealthy": "ReturnNone", "podSelector": {}}),
            json!([{"value": "192.0.2.1", "healthy": false, "source": "pod/a"}]),
        );
        let answer = ask(&index, "web.example.internal.", RecordType::A);
        assert_eq!((answer.rcode, answer.answers.len()), (ResponseCode::NoError, 0));
    }

    #[test]
    fn srv_carries_glue_for_pod_targets() {
        let index = index(
            json!({"name": "_http._tcp.web.example.internal", "type": "SRV", "port": "http", "podSelector": {}}),
            json!([{"value": "2001:db8::7", "healthy": true, "source": "pod/a", "port": 8080}]),
        );
        let answer = ask(&index, "_http._tcp.web.example.internal.", RecordType::SRV);
        assert_eq!(
            answer.answers[0].data.to_string(),
            "0 1 8080 2001-db8--7._http._tcp.web.example.internal."
        );
        assert_eq!(answer.additionals.len(), 1);
        assert_eq!(answer.additionals[0].data.to_string(), "2001:db8::7");
        let ent = ask(&index, "_tcp.web.example.internal.", RecordType::A);
        assert_eq!((ent.rcode, ent.answers.len()), (ResponseCode::NoError, 0));
    }
}
