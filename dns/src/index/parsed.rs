//! Values parsed once per object version: the records of each part of a feed (a record
//! set's status, or one `MultiValueRecordSlice`), by the uid of the object that holds
//! them, kept from one build to the next while that object's resourceVersion and what
//! its records depend on (owner name, type, TTL) stay the same. A flip in a name of
//! 10,000 values rewrites one slice of 100, and the next build parses those 100 values,
//! not the 10,000; the rest of its RRset is assembled from what was parsed before.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::Name;
use mvdns_api::selection::Facts;
use mvdns_api::{RecordType, ValueStatus};

use super::model::Entry;
use super::records::entry_for;

/// One value of a part, parsed for its RRset.
// Nearly every value is valid: boxing the entry would add an allocation to each of them
// to save space on the rare invalid one.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Parsed {
    Value {
        /// What makes the record one (its data as text): the same record from two parts
        /// or two record sets is served once.
        key: String,
        facts: Facts,
        entry: Entry,
    },
    /// Not a valid value of the type: reported, not served.
    Invalid(String),
}

/// The parsed values of one object version, with what they were parsed for.
#[derive(Debug)]
struct ParsedPart {
    resource_version: String,
    owner: Name,
    record_type: RecordType,
    ttl: u32,
    values: Arc<[Parsed]>,
}

/// The parsed parts of the last builds, by uid of the object holding them.
#[derive(Clone, Debug, Default)]
pub struct ParsedParts {
    by_uid: HashMap<String, Arc<ParsedPart>>,
}

/// What a part is parsed for: its RRset's owner, type and TTL.
#[derive(Clone, Copy, Debug)]
pub(super) struct ParseFor<'a> {
    pub owner: &'a Name,
    pub record_type: RecordType,
    pub ttl: u32,
}

impl ParsedParts {
    /// The parsed values of `values`, held by the object `version` (uid and
    /// resourceVersion): from an earlier build when that object version was parsed for
    /// the same RRset settings, otherwise parsed now and kept. Without a version (an
    /// object that has none, as in unit tests) they are parsed and not kept.
    pub(super) fn get_or_parse(
        &mut self,
        version: Option<(&str, &str)>,
        parse_for: ParseFor<'_>,
        values: &[ValueStatus],
    ) -> Arc<[Parsed]> {
        let Some((uid, resource_version)) = version else {
            return parse_part(parse_for, values);
        };
        if let Some(part) = self.by_uid.get(uid)
            && part.resource_version == resource_version
            && part.owner == *parse_for.owner
            && part.record_type == parse_for.record_type
            && part.ttl == parse_for.ttl
        {
            return part.values.clone();
        }
        let parsed = parse_part(parse_for, values);
        let part = ParsedPart {
            resource_version: resource_version.to_owned(),
            owner: parse_for.owner.clone(),
            record_type: parse_for.record_type,
            ttl: parse_for.ttl,
            values: parsed.clone(),
        };
        self.by_uid.insert(uid.to_owned(), Arc::new(part));
        parsed
    }

    /// Forgets the parts of objects that no longer feed any record set.
    pub(super) fn retain_live(&mut self, live: &HashSet<&str>) {
        self.by_uid.retain(|uid, _| live.contains(uid.as_str()));
    }

    /// How many object versions are kept parsed.
    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }
}

fn parse_part(parse_for: ParseFor<'_>, values: &[ValueStatus]) -> Arc<[Parsed]> {
    values.iter().map(|value| parse_one(parse_for, value)).collect()
}

fn parse_one(parse_for: ParseFor<'_>, value: &ValueStatus) -> Parsed {
    let ParseFor {
        owner,
        record_type,
        ttl,
    } = parse_for;
    let Some(mut entry) = entry_for(owner, record_type, ttl, &value.value, value.port) else {
        return Parsed::Invalid(value.value.clone());
    };
    entry.zone = value.zone.clone();
    entry.weight = u32::from(value.effective_weight());
    Parsed::Value {
        key: entry.record.data.to_string(),
        facts: value.facts(),
        entry,
    }
}
