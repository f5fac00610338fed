//! Which record sets are served, and how:
//! - the record set's namespace owns its name ([`mvdns_api::ownership`], the same rule the
//!   operator applies), so a set that lost a conflict is never served, whatever its status
//!   claims;
//! - its name lies inside one of the configured zones, and its namespace may publish there;
//! - a CNAME is not served beside other data of the same name (RFC 1034 section 3.6.2);
//! - record sets of one name and type in the owning namespace are served as one RRset,
//!   with settings combined towards the safe side ([`group_rrset`]);
//! - the names between a record set's name and its zone's apex exist (empty
//!   non-terminals), and so do the synthesized targets of pod SRV records.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use hickory_proto::rr::{LowerName, Name};
use mvdns_api::ownership::{NameClaim, is_owner, name_owners};
use mvdns_api::selection::{Facts, Rules, best_tier, plan};
use mvdns_api::zones::Refusal;
use mvdns_api::{MultiValueRecordSet, RecordType, Topology, WhenAllUnhealthy};

use super::feed::Feeds;
use super::model::{Entry, NameKey, Node, RrSet, Skipped, name_key};
use super::parsed::{ParseFor, Parsed, ParsedParts};
use super::records::{dns_type, parse_name, wire_without_owner};
use crate::zone::Zones;

/// A served (name, type); the name shared, as every build copies the keys.
pub(super) type GroupKey = (Arc<str>, RecordType);

/// The record sets to serve, grouped by (name, type) in a deterministic order, and the
/// ones left out by the rules that read specs alone.
#[derive(Debug, Default)]
pub(super) struct ServedGroups<'a> {
    pub groups: BTreeMap<GroupKey, Vec<&'a MultiValueRecordSet>>,
    pub skipped: Vec<Skipped>,
}

/// Applies the ownership, zone and CNAME rules to every record set.
pub(super) fn served_groups<'a>(record_sets: &[&'a MultiValueRecordSet], zones: &Zones) -> ServedGroups<'a> {
    let mut spec_skips = Vec::new();
    let claims: Vec<(&MultiValueRecordSet, Option<NameClaim>)> =
        record_sets.iter().map(|rs| (*rs, NameClaim::of(rs))).collect();
    let owners = name_owners(claims.iter().filter_map(|(_, claim)| claim.as_ref()));

    let mut groups: BTreeMap<GroupKey, Vec<&MultiValueRecordSet>> = BTreeMap::new();
    for (rs, claim) in &claims {
        let record_set = object_ref(rs);
        let Some(claim) = claim else {
            spec_skips.push(Skipped::InvalidName { record_set });
            continue;
        };
        if !is_owner(&owners, claim) {
            let owner = owners.get(&claim.name).map(|o| o.namespace.clone()).unwrap_or_default();
            spec_skips.push(Skipped::NotOwner { record_set, owner });
            continue;
        }
        let in_zones = parse_name(&claim.name).is_some_and(|n| zones.zone_of(&LowerName::new(&n)).is_some());
        if !in_zones {
            spec_skips.push(Skipped::OutsideZones {
                record_set,
                name: claim.name.clone(),
            });
            continue;
        }
        if let Err(Refusal::NamespaceNotAllowed { zone, .. }) = zones.publish.check(&claim.name, &claim.namespace) {
            spec_skips.push(Skipped::NamespaceNotAllowed { record_set, zone });
            continue;
        }
        groups
            .entry((Arc::from(claim.name.as_str()), rs.spec.record_type))
            .or_default()
            .push(rs);
    }

    let beside_other_data = |(name, record_type): &GroupKey| {
        *record_type == RecordType::CNAME && groups.keys().any(|(n, t)| n == name && *t != RecordType::CNAME)
    };
    let cnames_beside_data: Vec<GroupKey> = groups.keys().filter(|key| beside_other_data(key)).cloned().collect();
    for key in cnames_beside_data {
        let name = &key.0;
        for rs in groups.remove(&key).unwrap_or_default() {
            spec_skips.push(Skipped::CnameBesideOtherData {
                record_set: object_ref(rs),
                name: name.to_string(),
            });
        }
    }
    ServedGroups {
        groups,
        skipped: spec_skips,
    }
}

/// The RRset of one (name, type) group. Settings combine towards the safe side: the
/// lowest TTL and `maxAnswers`, and fail-open (`ReturnUnhealthy`, Route 53's behaviour)
/// if any set of the group asks for it; zone preference if any set asks for it; the
/// larger `minHealthy` and `minHealthyPercent` ([`Rules::combine`]).
///
/// The tier and panic rules ([`mvdns_api::selection`]) depend on health alone, so they
/// are applied here, once per build, and not per query: `healthy` holds only the tiers
/// answered now.
pub(super) fn group_rrset(
    owner: &Name,
    record_type: RecordType,
    sets: &[&MultiValueRecordSet],
    feeds: &Feeds,
    parsed: &mut ParsedParts,
    skipped: &mut Vec<Skipped>,
) -> RrSet {
    let ttl = sets.iter().map(|rs| rs.spec.ttl).min().unwrap_or(30);
    let max_answers = sets.iter().map(|rs| rs.spec.max_answers).min().unwrap_or(8).clamp(1, 8);
    let when_all_unhealthy = if sets
        .iter()
        .any(|rs| rs.spec.when_all_unhealthy == WhenAllUnhealthy::ReturnUnhealthy)
    {
        WhenAllUnhealthy::ReturnUnhealthy
    } else {
        WhenAllUnhealthy::ReturnNone
    };
    let prefer_same_zone = sets.iter().any(|rs| rs.spec.topology == Topology::PreferSameZone);
    let rules = sets
        .iter()
        .map(|rs| Rules::of(&rs.spec))
        .reduce(Rules::combine)
        .unwrap_or_default();
    // Each part parsed, or taken as parsed by an earlier build ([`ParsedParts`]).
    let parse_for = ParseFor {
        owner,
        record_type,
        ttl,
    };
    let parts: Vec<(&MultiValueRecordSet, Arc<[Parsed]>)> = sets
        .iter()
        .flat_map(|rs| {
            feeds
                .of(rs)
                .parts()
                .into_iter()
                .map(|(version, values)| (*rs, parsed.get_or_parse(version, parse_for, values)))
                .collect::<Vec<_>>()
        })
        .collect();
    // One record per key, the best class winning, then the better tier (the same record
    // from two sets is healthy if either says so).
    let mut by_key: BTreeMap<&str, (Class, u8, &Entry)> = BTreeMap::new();
    for (rs, values) in &parts {
        for value in values.iter() {
            let (key, facts, entry) = match value {
                Parsed::Value { key, facts, entry } => (key.as_str(), *facts, entry),
                Parsed::Invalid(value) => {
                    skipped.push(Skipped::InvalidValue {
                        record_set: object_ref(rs),
                        value: value.clone(),
                    });
                    continue;
                }
            };
            let rank = (Class::of(facts), facts.priority);
            if by_key
                .get(key)
                .is_none_or(|(class, priority, _)| rank < (*class, *priority))
            {
                by_key.insert(key, (rank.0, rank.1, entry));
            }
        }
    }
    let entries = by_key
        .into_values()
        .map(|(class, priority, entry)| (class, priority, entry.clone()));
    let pools = Pools::sort(entries, rules);
    let weighted = pools.all().any(|e| e.weight != 1);
    let mut healthy_by_zone: HashMap<String, Vec<usize>> = HashMap::new();
    if prefer_same_zone {
        for (position, entry) in pools.answered.iter().enumerate() {
            if let Some(zone) = &entry.zone {
                healthy_by_zone.entry(zone.clone()).or_default().push(position);
            }
        }
    }
    let has_glue = pools.all().any(|e| e.glue.is_some());
    RrSet {
        record_type: dns_type(record_type),
        max_answers: usize::from(max_answers),
        when_all_unhealthy,
        prefer_same_zone,
        healthy: pools.answered,
        tiers: pools.tiers,
        drained: pools.drained,
        unhealthy: pools.unhealthy,
        standby: pools.standby,
        weighted,
        healthy_by_zone,
        has_glue,
    }
}

/// How a value is served, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Healthy,
    /// Healthy, and drained or a terminating pod.
    Drained,
    Unhealthy,
    UnhealthyDrained,
}

impl Class {
    fn of(facts: Facts) -> Self {
        match (facts.healthy, facts.drained) {
            (true, false) => Self::Healthy,
            (true, true) => Self::Drained,
            (false, false) => Self::Unhealthy,
            (false, true) => Self::UnhealthyDrained,
        }
    }

    fn facts(self, priority: u8) -> Facts {
        Facts {
            priority,
            healthy: matches!(self, Self::Healthy | Self::Drained),
            drained: matches!(self, Self::Drained | Self::UnhealthyDrained),
        }
    }
}

/// A group's entries sorted by the tier and panic rules.
struct Pools {
    /// What answers come from: the tiers of the plan, best first.
    answered: Vec<Entry>,
    /// With more than one tier answered: each tier's positions in `answered`.
    tiers: Vec<Range<usize>>,
    /// The fallbacks, each from its best tier.
    drained: Vec<Entry>,
    unhealthy: Vec<Entry>,
    /// The rest: healthy values of tiers not answered now, and the fallbacks of worse tiers.
    standby: Vec<Entry>,
}

impl Pools {
    fn sort(entries: impl IntoIterator<Item = (Class, u8, Entry)>, rules: Rules) -> Self {
        let entries: Vec<(Class, u8, Entry)> = entries.into_iter().collect();
        let plan = plan(entries.iter().map(|(class, p, _)| class.facts(*p)), rules);
        let mut answered: Vec<(u8, Entry)> = Vec::new();
        let (mut drained, mut unhealthy, mut standby) = (Vec::new(), Vec::new(), Vec::new());
        for (class, priority, entry) in entries {
            let facts = class.facts(priority);
            if plan.answers_from(facts) {
                answered.push((priority, entry));
            } else if plan.counts_as_healthy(facts) {
                standby.push(entry);
            } else if class == Class::Drained {
                drained.push((priority, entry));
            } else {
                unhealthy.push((priority, entry));
            }
        }
        // Stable: within a tier the entries keep their (deterministic) key order.
        answered.sort_by_key(|(priority, _)| *priority);
        let tiers = if plan.priorities.len() > 1 {
            tier_ranges(&answered)
        } else {
            Vec::new()
        };
        let mut best_only = |pool: Vec<(u8, Entry)>| {
            let best = best_tier(pool.iter().map(|(p, _)| *p));
            let (kept, rest): (Vec<_>, Vec<_>) = pool.into_iter().partition(|(p, _)| Some(*p) == best);
            standby.extend(rest.into_iter().map(|(_, e)| e));
            kept.into_iter().map(|(_, e)| e).collect::<Vec<Entry>>()
        };
        let drained = best_only(drained);
        let unhealthy = best_only(unhealthy);
        Self {
            answered: answered.into_iter().map(|(_, e)| e).collect(),
            tiers,
            drained,
            unhealthy,
            standby,
        }
    }

    fn all(&self) -> impl Iterator<Item = &Entry> {
        self.answered
            .iter()
            .chain(&self.drained)
            .chain(&self.unhealthy)
            .chain(&self.standby)
    }
}

/// The positions of each tier in a list sorted by tier.
fn tier_ranges<T>(sorted: &[(u8, T)]) -> Vec<Range<usize>> {
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (position, (priority, _)) in sorted.iter().enumerate() {
        match ranges.last_mut() {
            Some(last) if sorted[last.start].0 == *priority => last.end = position + 1,
            _ => ranges.push(position..position + 1),
        }
    }
    ranges
}

/// SRV targets synthesized for pods answer A/AAAA queries too.
pub(super) fn add_glue_names(names: &mut HashMap<NameKey, Node>, rrset: &RrSet) {
    for entry in rrset.entries() {
        let Some(glue) = &entry.glue else { continue };
        let node = names.entry(name_key(&glue.name)).or_default();
        if node.rrset(glue.record_type()).is_none() {
            node.rrsets.push(Arc::new(RrSet {
                record_type: glue.record_type(),
                max_answers: 1,
                when_all_unhealthy: WhenAllUnhealthy::ReturnUnhealthy,
                prefer_same_zone: false,
                healthy: vec![Entry {
                    wire: wire_without_owner(glue),
                    record: glue.clone(),
                    glue: None,
                    zone: None,
                    weight: 1,
                }],
                tiers: Vec::new(),
                drained: Vec::new(),
                unhealthy: Vec::new(),
                standby: Vec::new(),
                weighted: false,
                healthy_by_zone: HashMap::new(),
                has_glue: false,
            }));
        }
    }
}

/// The node of `name`, creating it and every empty non-terminal up to its zone's apex.
pub(super) fn add_with_ancestors<'a>(
    names: &'a mut HashMap<NameKey, Node>,
    name: &Name,
    zones: &Zones,
) -> &'a mut Node {
    if let Some(zone) = zones.zone_of(&LowerName::new(name)) {
        let mut parent = name.base_name();
        while parent.num_labels() > zone.apex_name.num_labels() {
            names.entry(name_key(&parent)).or_default();
            parent = parent.base_name();
        }
    }
    names.entry(name_key(name)).or_default()
}

pub(super) fn object_ref(rs: &MultiValueRecordSet) -> String {
    format!(
        "{}/{}",
        rs.metadata.namespace.as_deref().unwrap_or_default(),
        rs.metadata.name.as_deref().unwrap_or_default()
    )
}
