//! The served data: record sets in, DNS records out, as one pure function.
//!
//! [`build_index`] reads each record set's `.status.values` (written by the operator) and
//! keeps only what may be served:
//! - the record set's namespace owns its name ([`mvdns_api::ownership`], the same rule the
//!   operator applies), so a set that lost a conflict is never served, whatever its status
//!   claims;
//! - its name lies inside one of the configured zones;
//! - each value parses for the record type (a hand-written status is not trusted).
//!
//! Record sets of one name and type in the owning namespace are served as one RRset.
//!
//! [`build_index_reusing`] is the same function with a memory: an RRset whose record sets
//! are unchanged (same uids and resourceVersions) is taken from the previous build
//! instead of being parsed and encoded again. Building 10,000 values took milliseconds
//! on every change of any one record set; now a change costs only its own RRset. When
//! only statuses changed (same uids and generations), it does not work out names, owners
//! and groups again either: it swaps the changed RRsets into a copy of the last index
//! (21 us for one changed set among 101 with 10 values each, against 560 us for a whole
//! build; `cargo run --release -p mvdns-server --example index_rebuild_cost`). A unit
//! test holds it to exactly what a whole build serves, over random changes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType as DnsType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use mvdns_api::ownership::{NameClaim, is_owner, name_owners};
use mvdns_api::value::{RecordData, parse_value};
use mvdns_api::zones::Refusal;
use mvdns_api::{MultiValueRecordSet, RecordType, Topology, WhenAllUnhealthy};

use crate::zone::Zones;

/// One served value: its record, and for an SRV value that points at a pod, the address
/// record of its synthesized target (sent in the additional section).
#[derive(Clone, Debug)]
pub struct Entry {
    pub record: Record,
    /// The record in wire form without its owner name: TYPE, CLASS, TTL, RDLENGTH and
    /// RDATA, encoded once per rebuild by hickory-proto for the fast path
    /// ([`crate::fast`]), which prefixes a compression pointer to the question.
    pub wire: Box<[u8]>,
    pub glue: Option<Record>,
    /// Topology zone of the endpoint, when the status knows it.
    pub zone: Option<String>,
}

/// The values of one name and type, split by health, with the selection settings.
#[derive(Clone, Debug)]
pub struct RrSet {
    pub record_type: DnsType,
    pub max_answers: usize,
    pub when_all_unhealthy: WhenAllUnhealthy,
    /// `topology: PreferSameZone`: healthy values in the client's zone first.
    pub prefer_same_zone: bool,
    pub healthy: Vec<Entry>,
    pub unhealthy: Vec<Entry>,
    /// With `prefer_same_zone`: the positions in `healthy` of each zone's values.
    pub healthy_by_zone: HashMap<String, Vec<usize>>,
    /// Some value carries glue (SRV to pods): answers need an additional section.
    pub has_glue: bool,
}

/// A name in a zone. No RRsets means the name exists only because names below it do
/// (an empty non-terminal), which is answered NODATA, not NXDOMAIN.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Shared with the next build when their record sets do not change.
    pub rrsets: Vec<Arc<RrSet>>,
}

impl Node {
    pub fn rrset(&self, record_type: DnsType) -> Option<&RrSet> {
        self.rrsets
            .iter()
            .find(|r| r.record_type == record_type)
            .map(Arc::as_ref)
    }
}

/// Why a record set (or part of one) is not served; counted in metrics and logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// `spec.name` is not a DNS name.
    InvalidName { record_set: String },
    /// Another namespace owns the name.
    NotOwner { record_set: String, owner: String },
    /// The name is outside every configured zone.
    OutsideZones { record_set: String, name: String },
    /// The name is in a zone this namespace may not publish in.
    NamespaceNotAllowed { record_set: String, zone: String },
    /// A status value that does not parse for the record type.
    InvalidValue { record_set: String, value: String },
    /// A CNAME where other records of the owning namespace live: CNAME cannot coexist
    /// with other data (RFC 1034 section 3.6.2), and existing data wins over the alias.
    CnameBesideOtherData { record_set: String, name: String },
}

/// Everything the server answers from, rebuilt whole on every change.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Keyed by the lower-case wire form of the name ([`name_key`]), so the fast path
    /// can look up a question's bytes without building a `Name`.
    pub names: HashMap<NameKey, Node>,
    /// SOA serial: the Unix time of the rebuild, so it grows with every change.
    pub serial: u32,
    pub record_sets_served: usize,
    pub values_served: usize,
    pub skipped: Vec<Skipped>,
}

impl Index {
    pub fn node(&self, name: &Name) -> Option<&Node> {
        self.names.get(&name_key(name))
    }

    /// The node of a name given as lower-case wire bytes.
    pub fn node_by_key(&self, key: &[u8]) -> Option<&Node> {
        self.names.get(key)
    }
}

/// A name as lower-case wire bytes: length-prefixed labels and the root's zero byte.
pub type NameKey = Box<[u8]>;

pub fn name_key(name: &Name) -> NameKey {
    let mut key = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        key.push(u8::try_from(label.len()).unwrap_or(u8::MAX));
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    key.into_boxed_slice()
}

/// A record's TYPE, CLASS, TTL, RDLENGTH and RDATA (no owner name), as hickory-proto
/// encodes them.
fn wire_without_owner(record: &Record) -> Box<[u8]> {
    let mut rdata = Vec::with_capacity(32);
    let mut encoder = BinEncoder::new(&mut rdata);
    // Encoding data we built ourselves from parsed values cannot fail; an empty RDATA
    // would only make the fast path decline the record set.
    let _ = record.data.emit(&mut encoder);
    let mut wire = Vec::with_capacity(10 + rdata.len());
    wire.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    wire.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    wire.extend_from_slice(&record.ttl.to_be_bytes());
    wire.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    wire.extend_from_slice(&rdata);
    wire.into_boxed_slice()
}

/// Builds the index from every record set the watcher holds.
pub fn build_index(record_sets: &[&MultiValueRecordSet], zones: &Zones, serial: u32) -> Index {
    Arc::unwrap_or_clone(build_index_reusing(record_sets, zones, serial, &Built::default()).0)
}

/// The RRsets of a build, by (name, type), with the record sets each was built from, for
/// the next build to reuse.
#[derive(Clone, Debug, Default)]
pub struct Built {
    groups: HashMap<GroupKey, Arc<BuiltGroup>>,
    /// How many RRsets this build took from the one before it.
    reused: usize,
    /// Whether this build only swapped changed RRsets into the last index.
    statuses_only: bool,
    /// The build as a whole, for a next build in which only statuses changed.
    shape: Option<Shape>,
}

impl Built {
    /// How many RRsets the last build took from the one before it.
    pub fn reused(&self) -> usize {
        self.reused
    }

    /// Whether the last build only swapped the RRsets of changed statuses into the
    /// index before it, without working out names, owners and groups again.
    pub fn statuses_only(&self) -> bool {
        self.statuses_only
    }
}

/// A served (name, type); the name shared, as every build copies the keys.
type GroupKey = (Arc<str>, RecordType);

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

/// A record set as one version of one object: its uid and resourceVersion. Any change
/// to it (spec or status) changes the resourceVersion. `None` (an object without them,
/// as in unit tests) is never reused.
type Source = Option<(String, String)>;

fn source(rs: &MultiValueRecordSet) -> Source {
    Some((rs.metadata.uid.clone()?, rs.metadata.resource_version.clone()?))
}

/// Whether `sets` are exactly the record sets `sources` were taken from (never, when one
/// of them has no uid or resourceVersion).
fn same_sources(sources: &[Source], sets: &[&MultiValueRecordSet]) -> bool {
    sources.len() == sets.len() && sources.iter().zip(sets).all(|(source, rs)| is_source(source, rs))
}

fn is_source(source: &Source, rs: &MultiValueRecordSet) -> bool {
    source.as_ref().is_some_and(|(uid, version)| {
        rs.metadata.uid.as_ref() == Some(uid) && rs.metadata.resource_version.as_ref() == Some(version)
    })
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
    zones: &Zones,
    serial: u32,
    previous: &Built,
) -> (Arc<Index>, Built) {
    if let Some(quick) = previous
        .shape
        .as_ref()
        .and_then(|shape| rebuild_statuses(record_sets, serial, previous, shape))
    {
        return quick;
    }
    build_whole(record_sets, zones, serial, previous)
}

/// The new index when only statuses changed since `shape` was built; `None` when
/// anything else did (a record set added, removed or edited), or when an RRset has pod
/// SRV targets, whose glue names come from the status.
fn rebuild_statuses(
    record_sets: &[&MultiValueRecordSet],
    serial: u32,
    previous: &Built,
    shape: &Shape,
) -> Option<(Arc<Index>, Built)> {
    if record_sets.len() != shape.specs.len() {
        return None;
    }
    // The groups with a member whose version is not the one they were built from.
    let mut changed: HashSet<&GroupKey> = HashSet::new();
    for rs in record_sets {
        let uid = rs.metadata.uid.as_ref()?;
        if shape.specs.get(uid) != Some(&rs.metadata.generation?) {
            return None;
        }
        let Some(key) = shape.group_of.get(uid) else { continue };
        let built_from = &previous.groups.get(key)?.sources;
        if !built_from.iter().any(|source| is_source(source, rs)) {
            changed.insert(key);
        }
    }
    if changed.is_empty() {
        // Nothing served changed (only statuses of record sets that are not served).
        let built = Built {
            groups: previous.groups.clone(),
            reused: previous.groups.len(),
            statuses_only: true,
            shape: Some(shape.clone()),
        };
        return Some((shape.index.clone(), built));
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
        let old = &previous.groups.get(*key)?.rrset;
        let owner = parse_name(&key.0)?;
        let mut skipped = Vec::new();
        let rrset = Arc::new(group_rrset(&owner, key.1, sets, &mut skipped));
        if old.has_glue || rrset.has_glue {
            return None;
        }
        let served = names
            .get_mut(&name_key(&owner))?
            .rrsets
            .iter_mut()
            .find(|served| Arc::ptr_eq(served, old))?;
        *served = rrset.clone();
        let group = BuiltGroup {
            sources: sets.iter().map(|rs| source(rs)).collect(),
            rrset,
            skipped,
        };
        groups.insert((*key).clone(), Arc::new(group));
    }
    let index = Arc::new(Index {
        names,
        serial,
        record_sets_served: shape.index.record_sets_served,
        values_served: groups
            .values()
            .map(|g| g.rrset.healthy.len() + g.rrset.unhealthy.len())
            .sum(),
        skipped: all_skips(&shape.spec_skips, &groups),
    });
    let built = Built {
        reused: groups.len() - changed.len(),
        groups,
        statuses_only: true,
        shape: Some(Shape {
            index: index.clone(),
            ..shape.clone()
        }),
    };
    Some((index, built))
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
    zones: &Zones,
    serial: u32,
    previous: &Built,
) -> (Arc<Index>, Built) {
    let mut groups_built = HashMap::new();
    let mut spec_skips = Vec::new();
    let mut index = Index {
        serial,
        ..Index::default()
    };
    let claims: Vec<(&MultiValueRecordSet, Option<NameClaim>)> =
        record_sets.iter().map(|rs| (*rs, NameClaim::of(rs))).collect();
    let owners = name_owners(claims.iter().filter_map(|(_, claim)| claim.as_ref()));

    // Served record sets grouped by (name, type); BTreeMap for a deterministic build.
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

    let mut group_of = HashMap::new();
    let mut reused = 0;
    for ((name, record_type), sets) in &groups {
        let Some(owner) = parse_name(name) else { continue };
        if *record_type == RecordType::CNAME && groups.keys().any(|(n, t)| n == name && *t != RecordType::CNAME) {
            for rs in sets {
                spec_skips.push(Skipped::CnameBesideOtherData {
                    record_set: object_ref(rs),
                    name: name.to_string(),
                });
            }
            continue;
        }
        let key = (name.clone(), *record_type);
        let group = match previous.groups.get(&key) {
            Some(old) if same_sources(&old.sources, sets) => {
                reused += 1;
                old.clone()
            }
            _ => {
                let mut skipped = Vec::new();
                let rrset = Arc::new(group_rrset(&owner, *record_type, sets, &mut skipped));
                Arc::new(BuiltGroup {
                    sources: sets.iter().map(|rs| source(rs)).collect(),
                    rrset,
                    skipped,
                })
            }
        };
        index.record_sets_served += sets.len();
        index.values_served += group.rrset.healthy.len() + group.rrset.unhealthy.len();
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
        statuses_only: false,
        shape,
    };
    (index, built)
}

/// The RRset of one (name, type) group. Settings combine towards the safe side: the
/// lowest TTL and `maxAnswers`, and fail-open (`ReturnUnhealthy`, Route 53's behaviour)
/// if any set of the group asks for it; zone preference if any set asks for it.
fn group_rrset(
    owner: &Name,
    record_type: RecordType,
    sets: &[&MultiValueRecordSet],
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
    let mut healthy: BTreeMap<String, Entry> = BTreeMap::new();
    let mut unhealthy: BTreeMap<String, Entry> = BTreeMap::new();
    for rs in sets {
        for value in rs.status.iter().flat_map(|s| &s.values) {
            let Some(mut entry) = entry_for(owner, record_type, ttl, &value.value, value.port) else {
                skipped.push(Skipped::InvalidValue {
                    record_set: object_ref(rs),
                    value: value.value.clone(),
                });
                continue;
            };
            entry.zone = value.zone.clone();
            // The same record from two sets: healthy if either says so.
            let key = entry.record.data.to_string();
            if value.healthy {
                unhealthy.remove(&key);
                healthy.insert(key, entry);
            } else if !healthy.contains_key(&key) {
                unhealthy.insert(key, entry);
            }
        }
    }
    let healthy: Vec<Entry> = healthy.into_values().collect();
    let mut healthy_by_zone: HashMap<String, Vec<usize>> = HashMap::new();
    if prefer_same_zone {
        for (position, entry) in healthy.iter().enumerate() {
            if let Some(zone) = &entry.zone {
                healthy_by_zone.entry(zone.clone()).or_default().push(position);
            }
        }
    }
    let unhealthy: Vec<Entry> = unhealthy.into_values().collect();
    let has_glue = healthy.iter().chain(&unhealthy).any(|e| e.glue.is_some());
    RrSet {
        record_type: dns_type(record_type),
        max_answers: usize::from(max_answers),
        when_all_unhealthy,
        prefer_same_zone,
        healthy,
        unhealthy,
        healthy_by_zone,
        has_glue,
    }
}

/// One status value as a record. An SRV value with a `port` is a pod address: the record
/// points at `<address with dashes>.<name>` (as Kubernetes names pods behind headless
/// Services), and that name's address record goes along as glue.
pub fn entry_for(owner: &Name, record_type: RecordType, ttl: u32, value: &str, port: Option<u16>) -> Option<Entry> {
    if let (RecordType::SRV, Some(port)) = (record_type, port) {
        let ip: IpAddr = value.parse().ok()?;
        let target = pod_target(owner, ip)?;
        let glue = Record::from_rdata(target.clone(), ttl, address_rdata(ip));
        let srv = RData::SRV(SRV::new(0, 1, port, target));
        let record = Record::from_rdata(owner.clone(), ttl, srv);
        return Some(Entry {
            wire: wire_without_owner(&record),
            record,
            glue: Some(glue),
            zone: None,
        });
    }
    let rdata = match parse_value(record_type, value).ok()? {
        RecordData::A(ip) => RData::A(A(ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(ip)),
        RecordData::Cname(target) => RData::CNAME(CNAME(parse_name(&target)?)),
        RecordData::Ns(target) => RData::NS(NS(parse_name(&target)?)),
        RecordData::Mx { preference, exchange } => RData::MX(MX::new(preference, parse_name(&exchange)?)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(priority, weight, port, parse_name(&target)?)),
        RecordData::Txt(text) => RData::TXT(TXT::new(txt_strings(&text))),
    };
    let record = Record::from_rdata(owner.clone(), ttl, rdata);
    Some(Entry {
        wire: wire_without_owner(&record),
        record,
        glue: None,
        zone: None,
    })
}

/// `10.0.0.7` under `web.example.internal.` is `10-0-0-7.web.example.internal.`;
/// `2001:db8::7` is `2001-db8--7.web.example.internal.`.
fn pod_target(owner: &Name, ip: IpAddr) -> Option<Name> {
    let label = ip.to_string().replace(['.', ':'], "-");
    owner.prepend_label(label.as_str()).ok()
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// A TXT value as character-strings of at most 255 bytes each (RFC 1035 section 3.3),
/// split on character boundaries.
fn txt_strings(text: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 255 {
            strings.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    strings.push(current);
    strings
}

/// SRV targets synthesized for pods answer A/AAAA queries too.
fn add_glue_names(names: &mut HashMap<NameKey, Node>, rrset: &RrSet) {
    for entry in rrset.healthy.iter().chain(&rrset.unhealthy) {
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
                }],
                unhealthy: Vec::new(),
                healthy_by_zone: HashMap::new(),
                has_glue: false,
            }));
        }
    }
}

/// The node of `name`, creating it and every empty non-terminal up to its zone's apex.
fn add_with_ancestors<'a>(names: &'a mut HashMap<NameKey, Node>, name: &Name, zones: &Zones) -> &'a mut Node {
    if let Some(zone) = zones.zone_of(&LowerName::new(name)) {
        let mut parent = name.base_name();
        while parent.num_labels() > zone.apex_name.num_labels() {
            names.entry(name_key(&parent)).or_default();
            parent = parent.base_name();
        }
    }
    names.entry(name_key(name)).or_default()
}

fn parse_name(fqdn: &str) -> Option<Name> {
    Name::from_ascii(fqdn).ok().map(|n| n.to_lowercase())
}

fn dns_type(record_type: RecordType) -> DnsType {
    match record_type {
        RecordType::A => DnsType::A,
        RecordType::AAAA => DnsType::AAAA,
        RecordType::SRV => DnsType::SRV,
        RecordType::MX => DnsType::MX,
        RecordType::TXT => DnsType::TXT,
        RecordType::CNAME => DnsType::CNAME,
        RecordType::NS => DnsType::NS,
    }
}

fn object_ref(rs: &MultiValueRecordSet) -> String {
    format!(
        "{}/{}",
        rs.metadata.namespace.as_deref().unwrap_or_default(),
        rs.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{record_set, zones};

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
        let (_, first) = build_index_reusing(&[&web, &api], &zones(), 1, &Built::default());
        assert_eq!(first.reused(), 0);
        let (_, second) = build_index_reusing(&[&web, &api], &zones(), 2, &first);
        assert_eq!(second.reused(), 2, "nothing changed");

        let web2 = versioned("web", "2", &["192.0.2.3"]);
        let (incremental, third) = build_index_reusing(&[&web2, &api], &zones(), 3, &second);
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
        let (_, built) = build_index_reusing(&[&plain], &zones(), 1, &Built::default());
        let (_, again) = build_index_reusing(&[&plain], &zones(), 2, &built);
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
            let (index, next) = build_index_reusing(&refs, &zones(), 1, &built);
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
        let (_, built) = build_index_reusing(&[&first], &zones(), 1, &Built::default());
        assert!(!built.statuses_only());
        let mut changed = first.clone();
        changed.status = Some(
            serde_json::from_value(json!({"values": [{"value": "192.0.2.77", "healthy": true, "source": "pod/x"}]}))
                .expect("status"),
        );
        changed.metadata.resource_version = Some("2".into());
        let (index, built) = build_index_reusing(&[&changed], &zones(), 2, &built);
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
        let (_, built) = build_index_reusing(&[&edited], &zones(), 3, &built);
        assert!(!built.statuses_only());
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
}
