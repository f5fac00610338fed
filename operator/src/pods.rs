//! Pods as the operator stores them: only the fields a value is computed from, decoded
//! straight from the API server's JSON (everything else, `managedFields` included, is
//! skipped while parsing and never allocated).
//!
//! Why not `k8s_openapi::api::core::v1::Pod` with fields stripped: its structs are large
//! even when empty (a `Pod` is 2.4 KB and each `Container` 2.3 KB inline), so 10,000
//! stripped pods still held about 50 MB, and the operator missed its 100 MB budget at
//! 10,000 watched pods (BENCHMARKS.md). The field names mirror k8s-openapi's, so the
//! decisions in [`crate::values`] read the same either way, and the JSON is the same.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::{NamespaceResourceScope, Resource};
use serde::{Deserialize, Deserializer};

/// A pod: its name, namespace, labels and deletion time, its node and container ports,
/// its conditions and IPs.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Pod {
    #[serde(default, deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    pub spec: Option<PodSpec>,
    pub status: Option<PodStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct Container {
    pub ports: Option<Vec<ContainerPort>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<String>,
    pub container_port: i32,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub conditions: Option<Vec<PodCondition>>,
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podIPs")]
    pub pod_ips: Option<Vec<PodIp>>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct PodIp {
    pub ip: String,
}

/// The metadata a pod is stored with. `resourceVersion` stays: the watcher resumes
/// from it.
fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Slim {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        annotations: Option<BTreeMap<String, String>>,
        deletion_timestamp: Option<Time>,
    }
    let slim = Slim::deserialize(deserializer)?;
    // Only the annotations a value reads; the others (often large: last-applied
    // configurations) are dropped here.
    let annotations: BTreeMap<String, String> = slim
        .annotations
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| VALUE_ANNOTATIONS.contains(&key.as_str()))
        .collect();
    Ok(ObjectMeta {
        name: slim.name,
        namespace: slim.namespace,
        uid: slim.uid,
        resource_version: slim.resource_version,
        labels: slim.labels,
        annotations: (!annotations.is_empty()).then_some(annotations),
        deletion_timestamp: slim.deletion_timestamp,
        ..ObjectMeta::default()
    })
}

/// A pod's weight in the answers of the record sets that select it (0-255, default 1).
pub const WEIGHT_ANNOTATION: &str = "mvdns.io/weight";
/// `"true"` takes the pod's values out of answers while they stay in status.
pub const DRAIN_ANNOTATION: &str = "mvdns.io/drain";
const VALUE_ANNOTATIONS: [&str; 2] = [WEIGHT_ANNOTATION, DRAIN_ANNOTATION];

fn null_as_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

impl Pod {
    /// Whether `other` is this pod with nothing changed that a value is computed from:
    /// only its resourceVersion differs (its annotations, say, or container statuses
    /// changed, which this type does not keep). Like the EndpointSlice controller, the
    /// operator does not react to such updates.
    pub fn same_for_values(&self, other: &Pod) -> bool {
        let (a, b) = (&self.metadata, &other.metadata);
        a.name == b.name
            && a.namespace == b.namespace
            && a.uid == b.uid
            && a.labels == b.labels
            && a.annotations == b.annotations
            && a.deletion_timestamp == b.deletion_timestamp
            && self.spec == other.spec
            && self.status == other.status
    }
}

impl Resource for Pod {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind((): &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group((): &()) -> Cow<'_, str> {
        "".into()
    }
    fn version((): &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural((): &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_a_change_of_what_values_read_counts() {
        let pod = |version: &str, ready: &str, annotation: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1", "resourceVersion": version,
                             "labels": {"app": "web"}, "annotations": {"note": annotation}},
                "spec": {"nodeName": "node-a", "containers": [{"name": "c"}]},
                "status": {"podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": ready}]},
            }))
            .expect("pod")
        };
        let stored = pod("1", "True", "a");
        assert!(
            stored.same_for_values(&pod("2", "True", "b")),
            "annotation and version only"
        );
        assert!(!stored.same_for_values(&pod("2", "False", "a")), "readiness");
        let mut relabelled = pod("2", "True", "a");
        relabelled.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        assert!(!stored.same_for_values(&relabelled), "labels");
        let mut moved = pod("2", "True", "a");
        moved.status.as_mut().expect("status").pod_ip = Some("10.0.0.2".into());
        assert!(!stored.same_for_values(&moved), "address");
    }

    #[test]
    fn a_pod_from_the_api_server_keeps_what_values_need_and_nothing_else() {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"},
                         "annotations": {"big": "x".repeat(4096)}, "uid": "u-1", "resourceVersion": "7",
                         "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsV1": {"f:status": {}}}]},
            "spec": {"nodeName": "node-a", "tolerations": [{"key": "k", "operator": "Exists"}],
                     "containers": [{"name": "app", "image": "registry.invalid/app:1",
                                     "env": [{"name": "A", "value": "1"}],
                                     "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.5",
                       "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": null}],
                       "containerStatuses": [{"name": "app", "image": "i", "imageID": "", "ready": true, "restartCount": 0}]},
        }))
        .expect("pod");
        assert_eq!(
            pod.metadata,
            ObjectMeta {
                name: Some("web-0".into()),
                namespace: Some("shop".into()),
                uid: Some("u-1".into()),
                resource_version: Some("7".into()),
                labels: Some([("app".to_owned(), "web".to_owned())].into()),
                ..ObjectMeta::default()
            }
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(
            spec.containers[0].ports.as_deref(),
            Some(
                &[ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080
                }][..]
            )
        );
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(status.pod_ips.as_ref().map(Vec::len), Some(2));
        assert_eq!(status.conditions.as_ref().map(|c| c[0].status.as_str()), Some("True"));
        // A pod with nulls and without spec or status (as some clients send them).
        let bare: Pod =
            serde_json::from_value(json!({"metadata": {"name": "x"}, "spec": {"containers": null}})).expect("bare pod");
        assert!(bare.spec.is_some_and(|s| s.containers.is_empty()) && bare.status.is_none());
    }

    #[test]
    fn the_stored_pod_is_a_fraction_of_k8s_openapis() {
        let ours = std::mem::size_of::<Pod>() + std::mem::size_of::<Container>();
        let theirs = std::mem::size_of::<k8s_openapi::api::core::v1::Pod>()
            + std::mem::size_of::<k8s_openapi::api::core::v1::Container>();
        assert!(ours * 5 < theirs, "{ours} bytes against {theirs}");
    }
}
