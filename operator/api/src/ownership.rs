//! Who may publish a DNS name: one namespace per name.
//!
//! Record sets with the same name and type in one namespace form one group and are
//! served together. A name claimed from two namespaces is a conflict: the namespace
//! holding the oldest record set for that name (any type) owns it; the others get
//! `Conflict=True` and are not served. The operator (to write conditions) and the DNS
//! server (to refuse a conflicting set even if its status claims values) both call
//! [`name_owners`] on the record sets they see, so they agree without talking.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use crate::MultiValueRecordSet;
use crate::value::normalize_fqdn;

/// One record set's claim on a DNS name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameClaim {
    /// The name, normalised (lower case, trailing dot).
    pub name: String,
    pub namespace: String,
    /// Object name, the last tie-breaker.
    pub object: String,
    /// When the record set was created; claims without one sort last.
    pub created: Option<Timestamp>,
}

impl NameClaim {
    /// The claim a record set makes, or `None` if its name is not a valid DNS name.
    pub fn of(record_set: &MultiValueRecordSet) -> Option<Self> {
        Some(Self {
            name: normalize_fqdn(&record_set.spec.name)?,
            namespace: record_set.metadata.namespace.clone().unwrap_or_default(),
            object: record_set.metadata.name.clone().unwrap_or_default(),
            created: record_set.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
    }

    /// Older claims win; equal timestamps (one-second resolution) fall back to the
    /// namespace and object names so that every reader picks the same winner.
    fn precedence(&self) -> (bool, Option<Timestamp>, &str, &str) {
        (self.created.is_none(), self.created, &self.namespace, &self.object)
    }
}

/// The owning namespace of every claimed name.
pub fn name_owners<'a>(claims: impl IntoIterator<Item = &'a NameClaim>) -> BTreeMap<String, &'a NameClaim> {
    let mut owners: BTreeMap<String, &NameClaim> = BTreeMap::new();
    for claim in claims {
        owners
            .entry(claim.name.clone())
            .and_modify(|owner| {
                if claim.precedence() < owner.precedence() {
                    *owner = claim;
                }
            })
            .or_insert(claim);
    }
    owners
}

/// Whether `claim` may be served: its namespace owns its name.
pub fn is_owner(owners: &BTreeMap<String, &NameClaim>, claim: &NameClaim) -> bool {
    owners
        .get(&claim.name)
        .is_some_and(|owner| owner.namespace == claim.namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(name: &str, namespace: &str, object: &str, created_secs: Option<i64>) -> NameClaim {
        NameClaim {
            name: name.into(),
            namespace: namespace.into(),
            object: object.into(),
            created: created_secs.map(|s| Timestamp::from_second(s).expect("valid")),
        }
    }

    #[test]
    fn oldest_namespace_owns_the_name() {
        let claims = [
            claim("web.example.", "young", "a", Some(200)),
            claim("web.example.", "old", "b", Some(100)),
            claim("web.example.", "young", "c", Some(50)), // same namespace, even older
            claim("db.example.", "young", "d", Some(300)),
        ];
        let owners = name_owners(&claims);
        assert_eq!(
            owners["web.example."].namespace, "young",
            "the oldest record set decides"
        );
        assert_eq!(owners["db.example."].namespace, "young");
        assert!(is_owner(&owners, &claims[0]) && !is_owner(&owners, &claims[1]));
    }

    #[test]
    fn deleting_the_owner_hands_the_name_over() {
        let old = claim("web.example.", "old", "a", Some(100));
        let young = claim("web.example.", "young", "a", Some(200));
        assert!(!is_owner(&name_owners([&old, &young]), &young));
        assert!(is_owner(&name_owners([&young]), &young));
    }

    #[test]
    fn ties_and_missing_timestamps_are_deterministic() {
        let a = claim("web.example.", "ns-a", "x", Some(100));
        let b = claim("web.example.", "ns-b", "x", Some(100));
        let unknown = claim("web.example.", "ns-0", "x", None);
        for order in [[&a, &b, &unknown], [&unknown, &b, &a]] {
            assert_eq!(name_owners(order)["web.example."].namespace, "ns-a");
        }
    }
}
