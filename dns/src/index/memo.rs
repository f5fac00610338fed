//! Builds that reuse the one before: an RRset whose record sets are unchanged (same uids
//! and resourceVersions) is taken from the previous build instead of being parsed and
//! encoded again, so a change costs only its own RRset. When only statuses changed (same
//! uids and generations), the names, owners and groups are not worked out again either:
//! the changed RRsets are swapped into a copy of the last index (21 us for one changed
//! set among 101 with 10 values each, against 560 us for a whole build;
//! `cargo run --release -p mvdns-server --example index_rebuild_cost`). A unit test holds
//! both ways to exactly what a whole build serves, over random changes.
//!
//! Whenever the quick way cannot be taken, the build says why ([`WholeBuild`]); the
//! server counts the reasons in a metric.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mvdns_api::MultiValueRecordSet;

use super::feed::Feeds;
use super::model::{Index, RrSet, Skipped, name_key};
use super::parsed::ParsedParts;
use super::policy::{GroupKey, ServedGroups, add_glue_names, add_with_ancestors, group_rrset, served_groups};
use super::records::parse_name;
use crate::zone::Zones;

/// Builds the index from every record set the watcher holds.
/// Every record set is served from its own status (the slices of big ones are left
/// out; [`build_index_reusing`] takes them).
pub fn build_index(record_sets: &[&MultiValueRecordSet], zones: &Zones, serial: u32) -> Index {
    Arc::unwrap_or_clone(build_index_reusing(record_sets, &Feeds::default(), zones, serial, &Built::default()).0)
}

/// The RRsets of a build, by (name, type), with the record sets each was built from, for
/// the next build to reuse.
#[derive(Clone, Debug, Default)]
pub struct Built {
    groups: HashMap<GroupKey, Arc<BuiltGroup>>,
    /// How many RRsets this build took from the one before it.
    reused: usize,
    /// Why this build was whole; `None` when it only swapped changed RRsets into the
    /// last index.
    whole_build: Option<WholeBuild>,
    /// The build as a whole, for a next build in which only statuses changed.
    shape: Option<Shape>,
    /// Every part's values as parsed, for the next build's changed RRsets.
    parsed: ParsedParts,
}

impl Built {
    /// How many RRsets the last build took from the one before it.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Whether the last build only swapped the RRsets of changed statuses into the
    /// index before it, without working out names, owners and groups again.
    pub fn statuses_only(&self) -> bool {
        self.whole_build.is_none()
    }

    /// Why the last build was a whole one, if it was.
    pub fn whole_build(&self) -> Option<WholeBuild> {
        self.whole_build
    }

    /// How many object versions (statuses, slices) are kept parsed for the next build.
    pub fn parsed_parts(&self) -> usize {
        self.parsed.len()
    }
}

/// Why a build could not take the quick way (only statuses changed) and was whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WholeBuild {
    /// No build before this one kept what the quick way needs (the first build, or one
    /// over objects without uids or generations).
    NoPreviousShape,
    /// A record set was added or removed.
    RecordSetAddedOrRemoved,
    /// A record set without a uid or generation (never the case for a stored object).
    NoUidOrGeneration,
    /// A record set's spec changed (a new generation) or another object took its place.
    SpecChanged,
    /// A changed RRset has pod SRV targets, whose glue names come from the status.
    PodSrvGlue,
    /// The previous build does not hold what its shape says (a bug; the whole build
    /// puts it right).
    Inconsistent,
}

impl WholeBuild {
    /// A short label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoPreviousShape => "no_previous_shape",
            Self::RecordSetAddedOrRemoved => "record_set_added_or_removed",
            Self::NoUidOrGeneration => "no_uid_or_generation",
            Self::SpecChanged => "spec_changed",
            Self::PodSrvGlue => "pod_srv_glue",
            Self::Inconsistent => "inconsistent",
        }
    }
}

#[derive(Debug)]
struct BuiltGroup {
    sources: Vec<Source>,
    rrset: Arc<RrSet>,
    skipped: Vec<Skipped>,
}

/// What a build depends on apart from the statuses, and what it made.
#[derive(Clone, Debug)]
struct Shape {
    /// Every record set built from, by uid, with its generation. A uid's namespace, name
    /// and creation time never change and every spec change bumps the generation, so
    /// record sets with the same uids and generations have the same names, owners and
    /// groups: only their statuses can differ.
    specs: Arc<HashMap<String, i64>>,
    /// The group of each served record set, by uid.
    group_of: Arc<HashMap<String, GroupKey>>,
    /// The skips that depend on specs alone (names, owners, zones, CNAME rules).
    spec_skips: Arc<Vec<Skipped>>,
    index: Arc<Index>,
}

/// A record set as what its RRset is made of: its uid, and its resourceVersion or, when
/// the build knows its feed ([`Feeds::version_of`]), its generation (the spec) and the
/// feed's version (the status or the slices it is served from). Any change to what is
/// served changes it; a status write that leaves a sliced record set's slices as they
/// were (its counts) does not, so the RRset of a big name is not made again for it.
/// `None` (an object without them, as in unit tests) is never reused.
type Source = Option<(String, String)>;

fn source(rs: &MultiValueRecordSet, feeds: &Feeds) -> Source {
    let version = match (feeds.version_of(rs), rs.metadata.generation) {
        (Some(feed), Some(generation)) => format!("g{generation}|{feed}"),
        _ => rs.metadata.resource_version.clone()?,
    };
    Some((rs.metadata.uid.clone()?, version))
}

/// Whether `sets` are exactly the record sets `sources` were taken from (never, when one
/// of them has no uid or resourceVersion).
fn same_sources(sources: &[Source], sets: &[&MultiValueRecordSet], feeds: &Feeds) -> bool {
    sources.len() == sets.len()
        && sources
            .iter()
            .zip(sets)
            .all(|(source, rs)| is_source(source, rs, feeds))
}

fn is_source(source: &Source, rs: &MultiValueRecordSet, feeds: &Feeds) -> bool {
    source.is_some() && *source == self::source(rs, feeds)
}

/// [`build_index`], taking each RRset from `previous` when its record sets are exactly
/// the ones it was built from. Returns the index and what the next build may reuse.
/// `previous` must come from a build with the same `zones` (a server's are fixed).
///
/// When only statuses changed since `previous` (the common case: a pod's readiness
/// flipped), the names, owners and groups are those of the last build: only the changed
/// groups' RRsets are made again and swapped into a copy of the last index. A DNS
/// replica does this after every status write, on cores the API server and the operator
/// are busy on, so it is kept to a copy of the name map and one RRset.
pub fn build_index_reusing(
    record_sets: &[&MultiValueRecordSet],
    feeds: &Feeds,
    zones: &Zones,
    serial: u32,
    previous: &Built,
) -> (Arc<Index>, Built) {
    let mut parsed = previous.parsed.clone();
    let quick = match &previous.shape {
        Some(shape) => rebuild_statuses(record_sets, feeds, serial, previous, shape, &mut parsed),
        None => Err(WholeBuild::NoPreviousShape),
    };
    let (index, mut built) =
        quick.unwrap_or_else(|reason| build_whole(record_sets, feeds, zones, serial, previous, reason, &mut parsed));
    // Kept: the parts of every record set and slice that exist now.
    let live: HashSet<&str> = record_sets
        .iter()
        .filter_map(|rs| rs.metadata.uid.as_deref())
        .chain(feeds.slice_uids())
        .collect();
    parsed.retain_live(&live);
    built.parsed = parsed;
    (index, built)
}

/// The groups with a member whose version is not the one they were built from, when
/// only statuses changed since `shape` was built; otherwise why not.
fn changed_groups<'a>(
    record_sets: &[&MultiValueRecordSet],
    feeds: &Feeds,
    previous: &Built,
    shape: &'a Shape,
) -> Result<HashSet<&'a GroupKey>, WholeBuild> {
    if record_sets.len() != shape.specs.len() {
        return Err(WholeBuild::RecordSetAddedOrRemoved);
    }
    let mut changed = HashSet::new();
    for rs in record_sets {
        let (Some(uid), Some(generation)) = (rs.metadata.uid.as_ref(), rs.metadata.generation) else {
            return Err(WholeBuild::NoUidOrGeneration);
        };
        if shape.specs.get(uid) != Some(&generation) {
            // Same count, so one went and another came, or a spec changed.
            return Err(WholeBuild::SpecChanged);
        }
        let Some(key) = shape.group_of.get(uid) else { continue };
        let built_from = &previous.groups.get(key).ok_or(WholeBuild::Inconsistent)?.sources;
        if !built_from.iter().any(|source| is_source(source, rs, feeds)) {
            changed.insert(key);
        }
    }
    Ok(changed)
}

/// The new index when only statuses changed since `shape` was built; otherwise why not.
fn rebuild_statuses(
    record_sets: &[&MultiValueRecordSet],
    feeds: &Feeds,
    serial: u32,
    previous: &Built,
    shape: &Shape,
    parsed: &mut ParsedParts,
) -> Result<(Arc<Index>, Built), WholeBuild> {
    use WholeBuild::{Inconsistent, PodSrvGlue};
    let changed = changed_groups(record_sets, feeds, previous, shape)?;
    if changed.is_empty() {
        // Nothing served changed (only statuses of record sets that are not served).
        let built = Built {
            groups: previous.groups.clone(),
            reused: previous.groups.len(),
            whole_build: None,
            shape: Some(shape.clone()),
            parsed: ParsedParts::default(),
        };
        return Ok((shape.index.clone(), built));
    }
    // The members of each changed group, in the order a whole build takes them.
    let mut members: HashMap<&GroupKey, Vec<&MultiValueRecordSet>> = HashMap::with_capacity(changed.len());
    for rs in record_sets {
        if let Some(key) = rs.metadata.uid.as_ref().and_then(|uid| shape.group_of.get(uid))
            && changed.contains(key)
        {
            members.entry(key).or_default().push(rs);
        }
    }
    let mut groups = previous.groups.clone();
    let mut names = shape.index.names.clone();
    for (key, sets) in &members {
        let old = &previous.groups.get(*key).ok_or(Inconsistent)?.rrset;
        let owner = parse_name(&key.0).ok_or(Inconsistent)?;
        let mut skipped = Vec::new();
        let rrset = Arc::new(group_rrset(&owner, key.1, sets, feeds, parsed, &mut skipped));
        if old.has_glue || rrset.has_glue {
            return Err(PodSrvGlue);
        }
        let served = names
            .get_mut(&name_key(&owner))
            .ok_or(Inconsistent)?
            .rrsets
            .iter_mut()
            .find(|served| Arc::ptr_eq(served, old))
            .ok_or(Inconsistent)?;
        *served = rrset.clone();
        let group = BuiltGroup {
            sources: sets.iter().map(|rs| source(rs, feeds)).collect(),
            rrset,
            skipped,
        };
        groups.insert((*key).clone(), Arc::new(group));
    }
    let index = Arc::new(Index {
        names,
        serial,
        record_sets_served: shape.index.record_sets_served,
        values_served: groups.values().map(|g| g.rrset.value_count()).sum(),
        skipped: all_skips(&shape.spec_skips, &groups),
    });
    let built = Built {
        reused: groups.len() - changed.len(),
        groups,
        whole_build: None,
        shape: Some(Shape {
            index: index.clone(),
            ..shape.clone()
        }),
        parsed: ParsedParts::default(),
    };
    Ok((index, built))
}

/// The spec skips, then the value skips of every group, in name order.
fn all_skips(spec_skips: &[Skipped], groups: &HashMap<GroupKey, Arc<BuiltGroup>>) -> Vec<Skipped> {
    let mut keys: Vec<&GroupKey> = groups.keys().collect();
    keys.sort();
    let value_skips = keys.into_iter().flat_map(|key| groups[key].skipped.iter().cloned());
    spec_skips.iter().cloned().chain(value_skips).collect()
}

/// The whole build: claims and owners, groups, and every RRset not in `previous`.
fn build_whole(
    record_sets: &[&MultiValueRecordSet],
    feeds: &Feeds,
    zones: &Zones,
    serial: u32,
    previous: &Built,
    reason: WholeBuild,
    parsed: &mut ParsedParts,
) -> (Arc<Index>, Built) {
    let mut groups_built = HashMap::new();
    let mut index = Index {
        serial,
        ..Index::default()
    };
    let ServedGroups {
        groups,
        skipped: spec_skips,
    } = served_groups(record_sets, zones);
    let mut group_of = HashMap::new();
    let mut reused = 0;
    for ((name, record_type), sets) in &groups {
        let Some(owner) = parse_name(name) else { continue };
        let key = (name.clone(), *record_type);
        let group = match previous.groups.get(&key) {
            Some(old) if same_sources(&old.sources, sets, feeds) => {
                reused += 1;
                old.clone()
            }
            _ => {
                let mut skipped = Vec::new();
                let rrset = Arc::new(group_rrset(&owner, *record_type, sets, feeds, parsed, &mut skipped));
                Arc::new(BuiltGroup {
                    sources: sets.iter().map(|rs| source(rs, feeds)).collect(),
                    rrset,
                    skipped,
                })
            }
        };
        index.record_sets_served += sets.len();
        index.values_served += group.rrset.value_count();
        add_glue_names(&mut index.names, &group.rrset);
        add_with_ancestors(&mut index.names, &owner, zones)
            .rrsets
            .push(group.rrset.clone());
        for rs in sets {
            if let Some(uid) = &rs.metadata.uid {
                group_of.insert(uid.clone(), key.clone());
            }
        }
        groups_built.insert(key, group);
    }
    for zone in zones.iter() {
        index.names.entry(name_key(&zone.apex_name)).or_default();
    }
    index.skipped = all_skips(&spec_skips, &groups_built);
    let index = Arc::new(index);
    // Objects without a uid and generation (unit tests) never take the quick way.
    let specs: Option<HashMap<String, i64>> = record_sets
        .iter()
        .map(|rs| Some((rs.metadata.uid.clone()?, rs.metadata.generation?)))
        .collect();
    let shape = specs.map(|specs| Shape {
        specs: Arc::new(specs),
        group_of: Arc::new(group_of),
        spec_skips: Arc::new(spec_skips),
        index: index.clone(),
    });
    let built = Built {
        groups: groups_built,
        reused,
        whole_build: Some(reason),
        shape,
        parsed: ParsedParts::default(),
    };
    (index, built)
}
