//! What the server answers from: names, their RRsets split by health, and what was left
//! out and why. Built by [`super::memo`]; read by the query path.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType as DnsType};
use mvdns_api::WhenAllUnhealthy;

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
    /// The value's weight in answers (`status.values[].weight`; 1 unless set).
    pub weight: u32,
}

/// The values of one name and type, split by health, with the selection settings.
#[derive(Clone, Debug)]
pub struct RrSet {
    pub record_type: DnsType,
    pub max_answers: usize,
    pub when_all_unhealthy: WhenAllUnhealthy,
    /// `topology: PreferSameZone`: healthy values in the client's zone first.
    pub prefer_same_zone: bool,
    /// What answers come from: the healthy values, not drained, of the failover tiers
    /// answered now (in panic, every value not drained), sorted by tier.
    pub healthy: Vec<Entry>,
    /// When more than one tier is answered: each tier's positions in `healthy`, best
    /// first; answers take the better tiers whole and fill from the last. Empty in the
    /// common case of one tier, which then costs nothing per query.
    pub tiers: Vec<Range<usize>>,
    /// Healthy values that are drained (or terminating pods), of their best tier:
    /// answered only when `healthy` is empty.
    pub drained: Vec<Entry>,
    /// Unhealthy values, drained or not, of their best tier: the fail-open pool
    /// (`ReturnUnhealthy`).
    pub unhealthy: Vec<Entry>,
    /// Values not answered now: the healthy ones of worse tiers, and the fallbacks of
    /// worse tiers. Kept for the names they give (SRV targets) and the counts.
    pub standby: Vec<Entry>,
    /// Some value weighs other than 1: answers use weighted selection.
    pub weighted: bool,
    /// With `prefer_same_zone`: the positions in `healthy` of each zone's values.
    pub healthy_by_zone: HashMap<String, Vec<usize>>,
    /// Some value carries glue (SRV to pods): answers need an additional section.
    pub has_glue: bool,
}

impl RrSet {
    /// Every value of the RRset, answered or not.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.healthy
            .iter()
            .chain(&self.drained)
            .chain(&self.unhealthy)
            .chain(&self.standby)
    }

    pub fn value_count(&self) -> usize {
        self.healthy.len() + self.drained.len() + self.unhealthy.len() + self.standby.len()
    }
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

/// Everything the server answers from; each rebuild makes a new one (sharing the RRsets
/// that did not change) and swaps it in whole.
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Keyed by the lower-case wire form of the name ([`name_key`]), so the fast path
    /// can look up a question's bytes without building a `Name`.
    pub names: HashMap<NameKey, Node>,
    /// SOA serial: rises with every rebuild ([`next_serial`]).
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

/// The SOA serial of the next index: `max(previous + 1, now)` in serial-number arithmetic
/// (RFC 1982), with now the Unix time. Two rebuilds within one second still get
/// different serials, and a clock stepping back never lowers one, so a secondary (or
/// anything comparing serials) always sees the newer zone as newer.
pub fn next_serial(previous: u32, unix_time: u32) -> u32 {
    // RFC 1982: `a` is newer than `b` when `a - b` (mod 2^32) lies in 1..2^31.
    let newer = |a: u32, b: u32| (1..1u32 << 31).contains(&a.wrapping_sub(b));
    if newer(unix_time, previous) {
        unix_time
    } else {
        previous.wrapping_add(1)
    }
}
