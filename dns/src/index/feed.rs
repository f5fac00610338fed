//! Where each record set's values come from for one build: its own status, or the
//! `MultiValueRecordSlice`s that belong to it ([`mvdns_api::slice::belongs_to`]: same
//! namespace, its name and its uid as owner), when its status says it is served from
//! slices (`status.slices: N`).
//!
//! No partial answer while slices are replaced: the operator writes new and changed
//! slices before the status that counts them, and deletes emptied slices only after,
//! so the slices a server holds number at least `N` unless the status arrived before
//! the slices it counts (two watches, no order between them). Until they arrive the
//! record set keeps the values it was served with last (the last complete state);
//! its own older status, when it moves from its status into slices.

use std::collections::HashMap;
use std::sync::Arc;

use mvdns_api::slice::belongs_to;
use mvdns_api::{Guarded, MultiValueRecordSet, MultiValueRecordSlice, ValueStatus};

/// The values of one record set for a build.
#[derive(Clone, Debug)]
pub enum Feed {
    /// The status of this version of the record set (the current one, or an earlier
    /// one held while its slices arrive), as the watch holds it.
    Status(Arc<Guarded>),
    /// Its slices, in name order.
    Slices(Vec<Arc<MultiValueRecordSlice>>),
}

impl Feed {
    /// The values in parts: the status, or one part per slice, each with what
    /// identifies that version of it (uid and resourceVersion), for reuse.
    pub fn parts(&self) -> Vec<Part<'_>> {
        match self {
            Self::Status(guarded) => match &guarded.0 {
                Ok(rs) => vec![(version(&rs.metadata), status_values(rs))],
                Err(_) => Vec::new(),
            },
            Self::Slices(slices) => slices
                .iter()
                .map(|slice| (version(&slice.metadata), slice.spec.values.as_slice()))
                .collect(),
        }
    }

    /// What identifies this feed's contents: changes whenever a value can have changed.
    fn version(&self) -> String {
        let id = |meta| version(meta).map(|(uid, rv)| format!("{uid}@{rv}")).unwrap_or_default();
        match self {
            Self::Status(guarded) => match &guarded.0 {
                Ok(rs) => format!("status:{}", id(&rs.metadata)),
                Err(_) => String::new(),
            },
            Self::Slices(slices) => {
                let parts: Vec<String> = slices.iter().map(|s| id(&s.metadata)).collect();
                format!("slices:{}", parts.join(","))
            }
        }
    }
}

/// Part of a record set's values, with the uid and resourceVersion of the object that
/// holds them (the record set, or one slice).
pub type Part<'a> = (Option<(&'a str, &'a str)>, &'a [ValueStatus]);

fn version(meta: &kube::core::ObjectMeta) -> Option<(&str, &str)> {
    Some((meta.uid.as_deref()?, meta.resource_version.as_deref()?))
}

fn status_values(rs: &MultiValueRecordSet) -> &[ValueStatus] {
    rs.status.as_ref().map(|s| s.values.as_slice()).unwrap_or_default()
}

/// The feed of every record set served from slices, or held at an earlier version, by
/// uid; a record set not in it is served from its own status.
#[derive(Clone, Debug, Default)]
pub struct Feeds {
    by_uid: HashMap<String, Feed>,
    /// Each record set's feed version, by uid (see [`Feed::version`]).
    versions: HashMap<String, String>,
}

impl Feeds {
    /// Works out the feeds for `record_sets` from the slices a server holds, keeping
    /// from `previous` the feed of a record set whose slices have not all arrived.
    pub fn join(record_sets: &[Arc<Guarded>], slices: &[Arc<MultiValueRecordSlice>], previous: &Feeds) -> Self {
        let mut by_owner: HashMap<(&str, &str), Vec<&Arc<MultiValueRecordSlice>>> = HashMap::new();
        for slice in slices {
            let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
            by_owner
                .entry((namespace, slice.spec.record_set.as_str()))
                .or_default()
                .push(slice);
        }
        let mut feeds = Feeds::default();
        for guarded in record_sets {
            let Ok(rs) = &guarded.0 else { continue };
            let Some(uid) = rs.metadata.uid.clone() else { continue };
            let counted = rs.status.as_ref().and_then(|s| s.slices);
            let feed = match counted {
                None => Feed::Status(guarded.clone()),
                Some(count) => {
                    let namespace = rs.metadata.namespace.as_deref().unwrap_or_default();
                    let name = rs.metadata.name.as_deref().unwrap_or_default();
                    let mut mine: Vec<Arc<MultiValueRecordSlice>> = by_owner
                        .get(&(namespace, name))
                        .into_iter()
                        .flatten()
                        .filter(|slice| belongs_to(slice, rs))
                        .map(|slice| Arc::clone(slice))
                        .collect();
                    mine.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                    let complete = mine.len() >= usize::try_from(count).unwrap_or(usize::MAX);
                    match previous.by_uid.get(&uid) {
                        Some(held) if !complete => held.clone(),
                        _ => Feed::Slices(mine),
                    }
                }
            };
            feeds.versions.insert(uid.clone(), feed.version());
            feeds.by_uid.insert(uid, feed);
        }
        feeds
    }

    /// The feed of a record set: its own status unless [`Feeds::join`] said otherwise.
    pub fn of<'a>(&'a self, rs: &'a MultiValueRecordSet) -> FeedRef<'a> {
        match rs.metadata.uid.as_ref().and_then(|uid| self.by_uid.get(uid)) {
            Some(feed) => FeedRef::Joined(feed),
            None => FeedRef::Own(rs),
        }
    }

    /// The uids of the slices some record set is served from in this build.
    pub fn slice_uids(&self) -> impl Iterator<Item = &str> {
        self.by_uid.values().flat_map(|feed| match feed {
            Feed::Slices(slices) => slices.iter().filter_map(|s| s.metadata.uid.as_deref()).collect(),
            Feed::Status(_) => Vec::new(),
        })
    }

    /// What identifies the values a record set is served with in this build, beyond
    /// its own resourceVersion.
    pub fn version_of(&self, rs: &MultiValueRecordSet) -> Option<&str> {
        rs.metadata
            .uid
            .as_ref()
            .and_then(|uid| self.versions.get(uid))
            .map(String::as_str)
    }
}

/// A record set's feed as one build reads it.
#[derive(Clone, Copy, Debug)]
pub enum FeedRef<'a> {
    Own(&'a MultiValueRecordSet),
    Joined(&'a Feed),
}

impl<'a> FeedRef<'a> {
    /// The values in parts, each with the version of the object holding it.
    pub fn parts(self) -> Vec<Part<'a>> {
        match self {
            Self::Own(rs) => vec![(version(&rs.metadata), status_values(rs))],
            Self::Joined(feed) => feed.parts(),
        }
    }

    /// Every value, part by part.
    pub fn values(self) -> impl Iterator<Item = &'a ValueStatus> {
        self.parts().into_iter().flat_map(|(_, values)| values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvdns_api::slice::{RECORD_SET_LABEL, owner_reference};
    use serde_json::json;

    fn record_set(rv: &str, values: &[&str], slices: Option<u32>) -> Arc<Guarded> {
        let values: Vec<_> = values
            .iter()
            .map(|v| json!({"value": v, "healthy": true, "source": "static/0"}))
            .collect();
        Arc::new(kube::core::DeserializeGuard(Ok(serde_json::from_value(json!({
            "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
            "metadata": {"name": "web", "namespace": "shop", "uid": "uid-web", "resourceVersion": rv},
            "spec": {"name": "web.example.internal.", "type": "A", "podSelector": {}},
            "status": {"values": values, "slices": slices},
        }))
        .expect("record set"))))
    }

    fn slice(namespace: &str, name: &str, rv: &str, values: &[&str]) -> Arc<MultiValueRecordSlice> {
        let values: Vec<_> = values
            .iter()
            .map(|v| json!({"value": v, "healthy": true, "source": "pod/p"}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSlice",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "resourceVersion": rv,
                             "labels": {RECORD_SET_LABEL: "web"}, "ownerReferences": [owner_reference("web", "uid-web")]},
                "spec": {"recordSet": "web", "values": values},
            }))
            .expect("slice"),
        )
    }

    fn served(feeds: &Feeds, rs: &Guarded) -> Vec<String> {
        let rs = rs.0.as_ref().expect("readable");
        let mut values: Vec<String> = feeds.of(rs).values().map(|v| v.value.clone()).collect();
        values.sort();
        values
    }

    #[test]
    fn a_sliced_record_set_is_served_from_its_own_slices_only() {
        let rs = record_set("1", &[], Some(2));
        let slices = [
            slice("shop", "web-0", "1", &["10.0.0.1"]),
            slice("shop", "web-1", "1", &["10.0.0.2"]),
            // Forged in another namespace, naming this record set and its uid.
            slice("other", "web-9", "1", &["10.9.9.9"]),
        ];
        let feeds = Feeds::join(std::slice::from_ref(&rs), &slices, &Feeds::default());
        assert_eq!(served(&feeds, &rs), ["10.0.0.1", "10.0.0.2"]);
    }

    #[test]
    fn until_the_counted_slices_arrive_the_last_complete_state_is_served() {
        // Served from the status, then the status moves the values into two slices that
        // this server has not seen yet: the old status stays served.
        let before = record_set("1", &["10.0.0.1", "10.0.0.2"], None);
        let feeds = Feeds::join(std::slice::from_ref(&before), &[], &Feeds::default());
        let moved = record_set("2", &[], Some(2));
        let partial = [slice("shop", "web-0", "5", &["10.0.0.1"])];
        let feeds = Feeds::join(std::slice::from_ref(&moved), &partial, &feeds);
        assert_eq!(served(&feeds, &moved), ["10.0.0.1", "10.0.0.2"]);
        // Both arrived: the slices are served.
        let whole = [
            partial[0].clone(),
            slice("shop", "web-1", "6", &["10.0.0.2", "10.0.0.3"]),
        ];
        let feeds = Feeds::join(std::slice::from_ref(&moved), &whole, &feeds);
        assert_eq!(served(&feeds, &moved), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        // More slices than counted (an emptied one not yet deleted): complete.
        let fewer = record_set("3", &[], Some(1));
        let feeds = Feeds::join(std::slice::from_ref(&fewer), &whole, &feeds);
        assert_eq!(served(&feeds, &fewer).len(), 3);
        // Back into the status: the status alone, whatever slices are left.
        let back = record_set("4", &["10.0.0.1"], None);
        let feeds = Feeds::join(std::slice::from_ref(&back), &whole, &feeds);
        assert_eq!(served(&feeds, &back), ["10.0.0.1"]);
    }

    #[test]
    fn the_feed_version_follows_every_slice() {
        let rs = record_set("1", &[], Some(1));
        let one = Feeds::join(
            std::slice::from_ref(&rs),
            &[slice("shop", "web-0", "1", &["10.0.0.1"])],
            &Feeds::default(),
        );
        let two = Feeds::join(
            std::slice::from_ref(&rs),
            &[slice("shop", "web-0", "2", &["10.0.0.2"])],
            &one,
        );
        let rs = rs.0.as_ref().expect("readable");
        assert_ne!(one.version_of(rs), two.version_of(rs));
    }
}
