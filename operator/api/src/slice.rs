//! `MultiValueRecordSlice` (`mvdns.io/v1alpha1`): a bounded part of a big record set's
//! values, as EndpointSlices are of a Service's endpoints.
//!
//! A record set with more values than one slice holds ([`SLICE_CAPACITY`]) is served
//! from slices that the operator writes and owns: a readiness change rewrites the one
//! slice that holds the value, a few kilobytes, not a status that grows with the name
//! (etcd refuses requests above 1.5 MiB, about 15,000 values in one status). The record
//! set's status then keeps the summary and says how many slices there are
//! ([`crate::MultiValueRecordSetStatus::slices`]); the DNS servers watch the slices.
//!
//! Which slices belong to which record set is one pure rule ([`belongs_to`]) that the
//! operator and the DNS server both apply: same namespace, `spec.recordSet` naming the
//! record set, and an owner reference with the record set's uid. A slice in another
//! namespace, or one left from an earlier object of the same name, is never served.
//! The label [`RECORD_SET_LABEL`] is only for `kubectl get -l` and for listing; record
//! set names longer than a label value (63 characters) go without it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{CustomResource, KubeSchema, Resource};
use serde::{Deserialize, Serialize};

use crate::{MultiValueRecordSet, ValueStatus};

/// Values of one record set, written by the operator; users do not write these.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mvdns.io",
    version = "v1alpha1",
    kind = "MultiValueRecordSlice",
    plural = "multivaluerecordslices",
    singular = "multivaluerecordslice",
    shortname = "mvslice",
    category = "mvdns",
    namespaced,
    derive = "PartialEq",
    doc = "Part of a big MultiValueRecordSet's values (at most 100 each), written by the mvdns operator.",
    printcolumn = r#"{"name":"Record Set","type":"string","jsonPath":".spec.recordSet"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MultiValueRecordSliceSpec {
    /// The `MultiValueRecordSet` (same namespace) these values belong to; the slice also
    /// carries the label `mvdns.io/record-set` with this name and an owner reference to
    /// the record set, so it is deleted with it.
    pub record_set: String,
    /// The values, in the form and order of `status.values` of a small record set. At
    /// most 1000; the operator writes up to 100.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub values: Vec<ValueStatus>,
}

/// The label that names a slice's record set (for list and watch selectors).
pub const RECORD_SET_LABEL: &str = "mvdns.io/record-set";

/// How many values the operator writes into one slice: about 9 KB of JSON for pod
/// values, so one readiness change writes about that much (EndpointSlices hold 100
/// endpoints by default, for the same reason).
pub const SLICE_CAPACITY: usize = 100;

/// Whether `slice` holds values of `record_set`: the same namespace, the record set's
/// name in `spec.recordSet`, and an owner reference with its uid. A slice that fails
/// any of these (forged in another namespace, or left by an earlier object of the same
/// name) is not this record set's. The label is not asked for: a name longer than a
/// label value (63 characters) goes without it.
pub fn belongs_to(slice: &MultiValueRecordSlice, record_set: &MultiValueRecordSet) -> bool {
    let name = record_set.metadata.name.as_deref();
    let (Some(name), Some(uid)) = (name, record_set.metadata.uid.as_deref()) else {
        return false;
    };
    slice.metadata.namespace.is_some()
        && slice.metadata.namespace == record_set.metadata.namespace
        && slice.spec.record_set == name
        && slice
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|owner| owner.uid == uid && owner.kind == MultiValueRecordSet::kind(&()))
}

/// The owner reference a slice of `record_set` carries: the record set is its
/// controller, so the garbage collector deletes the slice with it.
pub fn owner_reference(record_set_name: &str, record_set_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: MultiValueRecordSet::api_version(&()).into_owned(),
        kind: MultiValueRecordSet::kind(&()).into_owned(),
        name: record_set_name.to_owned(),
        uid: record_set_uid.to_owned(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// The name of a record set's slice number `index`: `<record set>-<index>`, the record
/// set's name cut so that the whole stays within the 253 characters of an object name.
pub fn slice_name(record_set_name: &str, index: usize) -> String {
    let suffix = format!("-{index}");
    let room = 253 - suffix.len();
    let mut stem: String = record_set_name.chars().take(room).collect();
    // A name must not end in '-' or '.' before the suffix is added (it could not here,
    // but a cut can leave one).
    while stem.ends_with(['-', '.']) {
        stem.pop();
    }
    format!("{stem}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record_set(namespace: &str, name: &str, uid: &str) -> MultiValueRecordSet {
        serde_json::from_value(json!({
            "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"name": "web.example.", "type": "A", "podSelector": {}},
        }))
        .expect("record set")
    }

    fn slice(namespace: &str, label: &str, spec_name: &str, owner_uid: &str) -> MultiValueRecordSlice {
        let mut slice = MultiValueRecordSlice::new(
            "web-0",
            MultiValueRecordSliceSpec {
                record_set: spec_name.into(),
                values: Vec::new(),
            },
        );
        slice.metadata.namespace = Some(namespace.into());
        slice.metadata.labels = Some([(RECORD_SET_LABEL.to_owned(), label.to_owned())].into());
        slice.metadata.owner_references = Some(vec![owner_reference(spec_name, owner_uid)]);
        slice
    }

    #[test]
    fn a_slice_belongs_only_to_its_own_record_set() {
        let web = record_set("shop", "web", "uid-1");
        assert!(belongs_to(&slice("shop", "web", "web", "uid-1"), &web));
        // Forged in another namespace, with every other mark right.
        assert!(!belongs_to(&slice("other", "web", "web", "uid-1"), &web));
        // Left by an earlier record set of the same name.
        assert!(!belongs_to(&slice("shop", "web", "web", "uid-0"), &web));
        // The spec naming another record set (the label alone does not count).
        assert!(!belongs_to(&slice("shop", "web", "api", "uid-1"), &web));
        assert!(belongs_to(&slice("shop", "api", "web", "uid-1"), &web));
        // No owner at all.
        let mut orphan = slice("shop", "web", "web", "uid-1");
        orphan.metadata.owner_references = None;
        assert!(!belongs_to(&orphan, &web));
    }

    #[test]
    fn slice_names_stay_valid_object_names() {
        assert_eq!(slice_name("web", 0), "web-0");
        let long = "a".repeat(253);
        let name = slice_name(&long, 12);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("a-12"));
        let dashed = format!("{}-b", "a".repeat(250));
        assert!(!slice_name(&dashed, 123).contains("--"));
    }
}
