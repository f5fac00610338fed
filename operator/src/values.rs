//! Which values a record set has and whether each is healthy: pure functions of the
//! record set and the pods it selects.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::pods::{DRAIN_ANNOTATION, Pod, WEIGHT_ANNOTATION};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mvdns_api::selection::DEFAULT_PRIORITY;
use mvdns_api::value::{RecordData, parse_value};
use mvdns_api::{MultiValueRecordSetSpec, RecordType, StaticValue, ValueStatus, pod_source};

use crate::health::state::{CheckState, WantedCheck};

/// The values of one record set and the problems found while computing them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ComputedValues {
    /// Sorted by value, then source: the order of `status.values`.
    pub values: Vec<ValueStatus>,
    /// Problems that make the spec unservable as written (the `InvalidSpec` condition).
    pub problems: Vec<String>,
    /// Static values left out because the probe-target policy refuses their health check's
    /// address, each with the rule (the `ProbeRefused` condition).
    pub refused: Vec<String>,
}

/// A pod counts as healthy when its Ready condition is True: the EndpointSlice
/// condition `serving`. (Having an address of the record's family is checked by
/// [`pod_addresses`].) A terminating pod may still be healthy; see [`pod_is_terminating`].
pub fn pod_is_healthy(pod: &Pod) -> bool {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A pod being deleted. Its value, while the pod is still ready, is served only when
/// nothing else is healthy (as a drained value is): clients move off it as soon as
/// there is anywhere else to go, but a rollout that replaces every pod at once never
/// leaves the name without an answer (EndpointSlices keep such endpoints as `serving`
/// for the same reason).
pub fn pod_is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's addresses that fit the record type: IPv4 for A, IPv6 for AAAA (a
/// dual-stack pod gives both records), the primary address for SRV targets.
pub fn pod_addresses(pod: &Pod, record_type: RecordType) -> Vec<IpAddr> {
    let Some(status) = pod.status.as_ref() else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = match status.pod_ips.as_deref() {
        Some(list) if !list.is_empty() => list.iter().filter_map(|p| p.ip.parse().ok()).collect(),
        _ => status.pod_ip.iter().filter_map(|ip| ip.parse().ok()).collect(),
    };
    match record_type {
        RecordType::A => ips.retain(IpAddr::is_ipv4),
        RecordType::AAAA => ips.retain(IpAddr::is_ipv6),
        RecordType::SRV => ips.truncate(1),
        _ => ips.clear(),
    }
    ips
}

/// The pod's port for an SRV record: a number as is, a name looked up in its containers.
pub fn pod_port(pod: &Pod, port: &IntOrString) -> Option<u16> {
    match port {
        IntOrString::Int(number) => u16::try_from(*number).ok().filter(|p| *p > 0),
        IntOrString::String(name) => {
            let containers = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or_default();
            containers
                .iter()
                .flat_map(|c| c.ports.as_deref().unwrap_or_default())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

/// Values from the selected pods. `pods` must already be filtered by the selector;
/// `zone_of_node` gives a node's topology zone (its `topology.kubernetes.io/zone` label).
pub fn values_from_pods<'a>(
    spec: &MultiValueRecordSetSpec,
    pods: impl IntoIterator<Item = &'a Pod>,
    zone_of_node: impl Fn(&str) -> Option<String>,
) -> ComputedValues {
    let mut computed = ComputedValues::default();
    let mut pods_without_port = 0usize;
    let mut pod_count = 0usize;
    for pod in pods {
        pod_count += 1;
        let port = match (&spec.port, spec.record_type) {
            (Some(port), RecordType::SRV) => match pod_port(pod, port) {
                Some(p) => Some(p),
                None => {
                    pods_without_port += 1;
                    continue;
                }
            },
            _ => None,
        };
        let healthy = pod_is_healthy(pod);
        let source = pod_source(pod.metadata.name.as_deref().unwrap_or_default());
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        let zone = node.and_then(&zone_of_node);
        let (weight, weight_problem) = pod_weight(pod);
        computed.problems.extend(weight_problem);
        let drained = pod_is_drained(pod);
        let terminating = healthy && pod_is_terminating(pod);
        for ip in pod_addresses(pod, spec.record_type) {
            computed.values.push(ValueStatus {
                value: ip.to_string(),
                healthy,
                source: source.clone(),
                port,
                zone: zone.clone(),
                check: None,
                weight,
                drained,
                priority: spec.priority.filter(|p| *p != DEFAULT_PRIORITY),
                terminating,
            });
        }
    }
    if pods_without_port > 0 {
        let port = match &spec.port {
            Some(IntOrString::String(name)) => format!("named port {name:?}"),
            Some(IntOrString::Int(n)) => format!("port {n}"),
            None => "port".into(),
        };
        computed.problems.push(format!(
            "{pods_without_port} of {pod_count} selected pods have no {port} (spec.port); they are not served"
        ));
    }
    computed
}

/// Values from the EndpointSlices of `spec.serviceRef`'s Service (`slices` already
/// filtered to it). An endpoint is healthy while `ready` (unset counts as ready, as the
/// API says); a terminating endpoint still `serving` is healthy but `terminating`, so it
/// is answered only when nothing else is. A and AAAA read the slices of their address
/// family; SRV reads both, with the port `serviceRef.port` names in each slice.
pub fn values_from_slices<'a>(
    spec: &MultiValueRecordSetSpec,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    zone_of_node: impl Fn(&str) -> Option<String>,
) -> ComputedValues {
    let mut computed = ComputedValues::default();
    let Some(service) = &spec.service_ref else {
        return computed;
    };
    let mut slices_without_port = Vec::new();
    for slice in slices {
        let family_fits = match spec.record_type {
            RecordType::A => slice.address_type == "IPv4",
            RecordType::AAAA => slice.address_type == "IPv6",
            RecordType::SRV => slice.address_type != "FQDN",
            _ => false,
        };
        if !family_fits {
            continue;
        }
        let port = match (&service.port, spec.record_type) {
            (Some(port), RecordType::SRV) => match slice_port(slice, port) {
                Some(p) => Some(p),
                None => {
                    slices_without_port.push(slice.metadata.name.clone().unwrap_or_default());
                    continue;
                }
            },
            _ => None,
        };
        for endpoint in slice.endpoints.iter().flatten() {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let healthy = ready || (terminating && serving);
            let source = endpoint_source(slice, endpoint);
            let zone = endpoint
                .zone
                .clone()
                .or_else(|| endpoint.node_name.as_deref().and_then(&zone_of_node));
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else { continue };
                computed.values.push(ValueStatus {
                    value: ip.to_string(),
                    healthy,
                    source: source.clone(),
                    port,
                    zone: zone.clone(),
                    priority: spec.priority.filter(|p| *p != DEFAULT_PRIORITY),
                    terminating: healthy && !ready,
                    ..ValueStatus::default()
                });
            }
        }
    }
    if !slices_without_port.is_empty() {
        computed.problems.push(format!(
            "EndpointSlices {} of service {} have no port {} (spec.serviceRef.port); their endpoints are not served",
            slices_without_port.join(", "),
            service.name,
            port_text(service.port.as_ref())
        ));
    }
    computed
}

/// The port of a slice that `port` names: a Service port name, or a number.
fn slice_port(slice: &EndpointSlice, port: &IntOrString) -> Option<u16> {
    let ports = slice.ports.as_deref().unwrap_or_default();
    let found = match port {
        IntOrString::Int(number) => ports.iter().find(|p| p.port == Some(*number)),
        IntOrString::String(name) => ports.iter().find(|p| p.name.as_deref() == Some(name.as_str())),
    };
    found
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
}

/// An endpoint's `source`: its pod (`pod/<name>`) when it has one, else its slice.
fn endpoint_source(slice: &EndpointSlice, endpoint: &Endpoint) -> String {
    match &endpoint.target_ref {
        Some(target) if target.kind.as_deref() == Some("Pod") => pod_source(target.name.as_deref().unwrap_or_default()),
        _ => format!("endpointslice/{}", slice.metadata.name.as_deref().unwrap_or_default()),
    }
}

fn port_text(port: Option<&IntOrString>) -> String {
    match port {
        Some(IntOrString::String(name)) => format!("named {name:?}"),
        Some(IntOrString::Int(n)) => n.to_string(),
        None => String::new(),
    }
}

/// A pod's weight from its `mvdns.io/weight` annotation (`None`: the default, 1), and the
/// problem when the annotation is not a weight (the pod then weighs 1).
///
/// Why an annotation and not a weight per selector: the pod template of a Deployment sets
/// it for all of its pods, so a canary Deployment beside the main one gets its own weight
/// without a second record set, and a pod on a bigger node can weigh more than its peers.
pub fn pod_weight(pod: &Pod) -> (Option<u8>, Option<String>) {
    let Some(text) = pod_annotation(pod, WEIGHT_ANNOTATION) else {
        return (None, None);
    };
    match text.trim().parse::<u8>() {
        Ok(weight) => (Some(weight).filter(|w| *w != 1), None),
        Err(_) => {
            let pod = pod.metadata.name.as_deref().unwrap_or_default();
            let problem =
                format!("pod/{pod}: annotation {WEIGHT_ANNOTATION}={text:?} is not a weight (0-255); it weighs 1");
            (None, Some(problem))
        }
    }
}

/// Whether a pod is drained (`mvdns.io/drain: "true"`).
pub fn pod_is_drained(pod: &Pod) -> bool {
    pod_annotation(pod, DRAIN_ANNOTATION).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

fn pod_annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The `source` of a static value: its set identifier, else its index.
pub fn static_source(index: usize, item: &StaticValue) -> String {
    match &item.set_identifier {
        Some(id) => format!("static/{id}"),
        None => format!("static/{index}"),
    }
}

/// The health checks `spec.values` asks for, one per value that parses.
pub fn wanted_checks(spec: &MultiValueRecordSetSpec) -> Vec<WantedCheck> {
    let items = spec.values.iter().enumerate();
    let checked = items.filter_map(|(index, item)| Some((index, item, item.health_check.clone()?)));
    checked
        .filter_map(|(index, item, check)| {
            let data = parse_value(spec.record_type, &item.value).ok()?;
            Some(WantedCheck {
                source: static_source(index, item),
                value: probe_target(&data)?,
                check,
            })
        })
        .collect()
}

/// What a health check connects to: the address, or the host name of CNAME, NS, MX
/// and SRV values. TXT values have no endpoint.
fn probe_target(data: &RecordData) -> Option<String> {
    match data {
        RecordData::A(ip) => Some(ip.to_string()),
        RecordData::Aaaa(ip) => Some(ip.to_string()),
        RecordData::Cname(host) | RecordData::Ns(host) => Some(host.clone()),
        RecordData::Mx { exchange, .. } => Some(exchange.clone()),
        RecordData::Srv { target, .. } => Some(target.clone()),
        RecordData::Txt(_) => None,
    }
}

/// Values from `spec.values`, with the state of their health checks (by source).
/// Admission already checked the formats; a value that still does not parse (written
/// before a rule existed) is reported and skipped. A value with a check counts as
/// healthy until the check's first result, which is Route 53's rule for new checks.
/// A value whose check the probe-target policy refuses is not served at all, not even
/// under `ReturnUnhealthy`: its health is unknown, and serving it would let a record set
/// point clients at an address the operator was not allowed to look at.
pub fn values_from_static(spec: &MultiValueRecordSetSpec, checks: &HashMap<String, CheckState>) -> ComputedValues {
    let mut computed = ComputedValues::default();
    for (index, item) in spec.values.iter().enumerate() {
        let source = static_source(index, item);
        match parse_value(spec.record_type, &item.value) {
            Ok(data) => {
                let state = item
                    .health_check
                    .as_ref()
                    .map(|_| checks.get(&source).cloned().unwrap_or_default());
                if let Some(rule) = state.as_ref().and_then(|s| s.refused.as_ref()) {
                    computed
                        .refused
                        .push(format!("spec.values[{index}] ({}): {rule}", item.value));
                    continue;
                }
                computed.values.push(ValueStatus {
                    value: canonical_value(&data, &item.value),
                    healthy: state.as_ref().is_none_or(|s| s.healthy),
                    check: state.as_ref().map(CheckState::status),
                    source,
                    port: None,
                    zone: item.zone.clone(),
                    weight: item.weight.filter(|w| *w != 1),
                    drained: item.drain,
                    priority: item.priority.or(spec.priority).filter(|p| *p != DEFAULT_PRIORITY),
                    terminating: false,
                });
            }
            Err(error) => computed.problems.push(format!("spec.values[{index}]: {error}")),
        }
    }
    computed
}

/// The canonical text of a value, so that `2001:DB8::1` and `2001:db8::1` are one value.
fn canonical_value(data: &RecordData, original: &str) -> String {
    match data {
        RecordData::A(ip) => ip.to_string(),
        RecordData::Aaaa(ip) => ip.to_string(),
        RecordData::Cname(host) | RecordData::Ns(host) => host.clone(),
        RecordData::Mx { preference, exchange } => format!("{preference} {exchange}"),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("{priority} {weight} {port} {target}"),
        RecordData::Txt(_) => original.to_owned(),
    }
}

/// Pod and static values together: sorted, and one entry per distinct value (with
/// port), healthy if any of its sources is. A DNS RRset cannot hold one record twice.
pub fn merge_values(parts: impl IntoIterator<Item = ComputedValues>) -> ComputedValues {
    let mut merged = ComputedValues::default();
    for part in parts {
        merged.values.extend(part.values);
        merged.problems.extend(part.problems);
        merged.refused.extend(part.refused);
    }
    // For equal values the best source sorts last and is kept (with its weight): healthy
    // before unhealthy, then not drained (nor terminating), then the better tier.
    let rank = |v: &ValueStatus| {
        let facts = v.facts();
        (v.healthy, !facts.drained, std::cmp::Reverse(facts.priority))
    };
    merged
        .values
        .sort_unstable_by(|a, b| (&a.value, a.port, rank(a), &a.source).cmp(&(&b.value, b.port, rank(b), &b.source)));
    // Sorted, equal values are neighbours: keep the last of each run (no set of copies:
    // this runs over every value of a big name on every flip).
    let mut deduped: Vec<ValueStatus> = Vec::with_capacity(merged.values.len());
    for value in merged.values.into_iter().rev() {
        if deduped
            .last()
            .is_none_or(|kept| (&kept.value, kept.port) != (&value.value, value.port))
        {
            deduped.push(value);
        }
    }
    deduped.reverse();
    merged.values = deduped;
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ready: bool, ips: &[&str]) -> Pod {
        let ips: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIPs": ips, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        }))
        .expect("valid pod")
    }

    fn spec(record_type: &str, extra: serde_json::Value) -> MultiValueRecordSetSpec {
        let mut base = json!({"name": "web.example.internal.", "type": record_type});
        base.as_object_mut()
            .expect("object")
            .extend(extra.as_object().cloned().unwrap_or_default());
        serde_json::from_value(base).expect("valid spec")
    }

    fn annotated(name: &str, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"},
                         "annotations": annotations},
            "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("valid pod")
    }

    #[test]
    fn weights_and_drain_come_from_the_annotations_and_the_spec() {
        let spec_a = spec("A", json!({"podSelector": {}}));
        let canary = annotated(
            "canary",
            json!({"mvdns.io/weight": "5", "kubectl.kubernetes.io/last-applied-configuration": "{}"}),
        );
        assert_eq!(
            canary.metadata.annotations.as_ref().map(|a| a.len()),
            Some(1),
            "only the annotations a value reads are kept"
        );
        let computed = values_from_pods(&spec_a, [&canary], |_| None);
        assert_eq!(
            (computed.values[0].weight, computed.values[0].drained),
            (Some(5), false)
        );
        let one = values_from_pods(&spec_a, [&annotated("one", json!({"mvdns.io/weight": "1"}))], |_| None);
        assert_eq!(one.values[0].weight, None, "weight 1 is the default and not written");
        let drained = values_from_pods(&spec_a, [&annotated("d", json!({"mvdns.io/drain": "true"}))], |_| None);
        assert!(drained.values[0].drained);
        let bad = values_from_pods(
            &spec_a,
            [&annotated("bad", json!({"mvdns.io/weight": "heavy"}))],
            |_| None,
        );
        assert_eq!(bad.values[0].weight, None);
        assert!(
            bad.problems[0].contains("mvdns.io/weight=\"heavy\" is not a weight (0-255)"),
            "{:?}",
            bad.problems
        );

        let statics = spec(
            "A",
            json!({"values": [{"value": "10.1.0.1", "weight": 0}, {"value": "10.1.0.2", "drain": true}, {"value": "10.1.0.3"}]}),
        );
        let computed = values_from_static(&statics, &HashMap::new());
        let got: Vec<(Option<u8>, bool)> = computed.values.iter().map(|v| (v.weight, v.drained)).collect();
        assert_eq!(got, [(Some(0), false), (None, true), (None, false)]);
        // The same value drained from one source and not from another: not drained.
        let merged = merge_values([
            values_from_static(
                &spec("A", json!({"values": [{"value": "10.0.0.9", "drain": true}]})),
                &HashMap::new(),
            ),
            values_from_pods(&spec_a, [&annotated("p", json!({}))], |_| None),
        ]);
        assert_eq!(merged.values.len(), 1);
        assert!(!merged.values[0].drained, "{:?}", merged.values);
    }

    #[test]
    fn readiness_and_termination_decide_health() {
        assert!(pod_is_healthy(&pod("a", true, &["10.0.0.1"])));
        assert!(!pod_is_healthy(&pod("b", false, &["10.0.0.2"])));
        let mut terminating = pod("c", true, &["10.0.0.3"]);
        terminating.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
        assert!(pod_is_healthy(&terminating), "still ready: still serving");
        assert!(pod_is_terminating(&terminating));
        let computed = values_from_pods(&spec("A", json!({"podSelector": {}})), [&terminating], |_| None);
        assert!(computed.values[0].terminating && computed.values[0].facts().drained);
    }

    #[test]
    fn a_services_endpoints_are_values_by_their_conditions() {
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "web-abc", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "zone": "a",
                 "targetRef": {"kind": "Pod", "name": "web-0"}},
                {"addresses": ["10.0.0.2"], "conditions": {"ready": false, "serving": false}, "nodeName": "n1"},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.0.0.4"]},
            ],
        }))
        .expect("valid slice");
        let a = spec("A", json!({"serviceRef": {"name": "web"}}));
        let computed = values_from_slices(&a, [&slice], |node| (node == "n1").then(|| "b".to_owned()));
        let got: Vec<(&str, bool, bool, Option<&str>, &str)> = computed
            .values
            .iter()
            .map(|v| {
                (
                    v.value.as_str(),
                    v.healthy,
                    v.terminating,
                    v.zone.as_deref(),
                    v.source.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1", true, false, Some("a"), "pod/web-0"),
                ("10.0.0.2", false, false, Some("b"), "endpointslice/web-abc"),
                ("10.0.0.3", true, true, None, "endpointslice/web-abc"),
                ("10.0.0.4", true, false, None, "endpointslice/web-abc"),
            ],
            "unset conditions are ready; a serving terminating endpoint is a last resort"
        );
        assert!(
            values_from_slices(&spec("AAAA", json!({"serviceRef": {"name": "web"}})), [&slice], |_| {
                None
            })
            .values
            .is_empty()
        );
        let srv = spec("SRV", json!({"serviceRef": {"name": "web", "port": "http"}}));
        assert_eq!(values_from_slices(&srv, [&slice], |_| None).values[0].port, Some(8080));
        let missing = spec("SRV", json!({"serviceRef": {"name": "web", "port": "grpc"}}));
        let computed = values_from_slices(&missing, [&slice], |_| None);
        assert!(computed.values.is_empty());
        assert!(
            computed.problems[0].contains("no port named \"grpc\""),
            "{:?}",
            computed.problems
        );
    }

    #[test]
    fn tiers_come_from_the_record_set_and_each_static_value() {
        let tiered = spec(
            "A",
            json!({"podSelector": {}, "priority": 2, "values": [{"value": "10.1.0.1"}, {"value": "10.1.0.2", "priority": 0}, {"value": "10.1.0.3", "priority": 5}]}),
        );
        let statics = values_from_static(&tiered, &HashMap::new());
        let got: Vec<Option<u8>> = statics.values.iter().map(|v| v.priority).collect();
        assert_eq!(got, [Some(2), None, Some(5)], "0 is the default and not written");
        let pods = values_from_pods(&tiered, [&pod("a", true, &["10.1.0.3"])], |_| None);
        assert_eq!(pods.values[0].priority, Some(2));
        let merged = merge_values([statics, pods]);
        let shared = merged.values.iter().find(|v| v.value == "10.1.0.3").expect("merged");
        assert_eq!(shared.priority, Some(2), "one value in two tiers: the better tier");
    }

    #[test]
    fn dual_stack_pods_give_one_address_per_family() {
        let dual = pod("a", true, &["10.0.0.1", "fd00::1"]);
        assert_eq!(
            pod_addresses(&dual, RecordType::A),
            vec!["10.0.0.1".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(
            pod_addresses(&dual, RecordType::AAAA),
            vec!["fd00::1".parse::<IpAddr>().expect("ip")]
        );
        assert!(pod_addresses(&pod("b", true, &["10.0.0.2"]), RecordType::AAAA).is_empty());
    }

    #[test]
    fn srv_resolves_named_ports_and_reports_pods_without_them() {
        let spec = spec("SRV", json!({"port": "http", "podSelector": {}}));
        let mut other = pod("b", true, &["10.0.0.2"]);
        other.spec.as_mut().expect("spec").containers[0].ports = None;
        let computed = values_from_pods(&spec, [&pod("a", true, &["10.0.0.1"]), &other], |_| None);
        assert_eq!(computed.values.len(), 1);
        assert_eq!(computed.values[0].port, Some(8080));
        assert_eq!(computed.problems.len(), 1, "{:?}", computed.problems);
        assert!(computed.problems[0].contains("named port \"http\""));
    }

    #[test]
    fn static_values_are_canonical_and_bad_ones_reported() {
        let spec = spec(
            "AAAA",
            json!({"values": [{"value": "2001:DB8::1", "setIdentifier": "x"}, {"value": "not-an-ip"}]}),
        );
        let computed = values_from_static(&spec, &HashMap::new());
        assert_eq!(computed.values.len(), 1);
        assert_eq!(
            (computed.values[0].value.as_str(), computed.values[0].source.as_str()),
            ("2001:db8::1", "static/x")
        );
        assert!(computed.problems[0].starts_with("spec.values[1]"));
    }

    #[test]
    fn a_value_whose_check_is_refused_is_left_out_and_reported() {
        let check = json!({"type": "TCP", "port": 80});
        let spec = spec(
            "A",
            json!({"whenAllUnhealthy": "ReturnUnhealthy", "values": [
                {"value": "169.254.169.254", "healthCheck": check},
                {"value": "10.0.0.2", "healthCheck": check},
            ]}),
        );
        let checks = HashMap::from([(
            "static/0".to_owned(),
            CheckState::refused("169.254.169.254 is link-local: refused by default".into()),
        )]);
        let computed = values_from_static(&spec, &checks);
        let served: Vec<_> = computed.values.iter().map(|v| v.value.as_str()).collect();
        assert_eq!(served, ["10.0.0.2"], "not served, not even as an unhealthy value");
        assert_eq!(
            computed.refused,
            ["spec.values[0] (169.254.169.254): 169.254.169.254 is link-local: refused by default"]
        );
    }

    #[test]
    fn merged_values_are_sorted_and_unique() {
        let spec_a = spec("A", json!({"podSelector": {}, "values": [{"value": "10.0.0.2"}]}));
        let pods = [pod("p1", false, &["10.0.0.2"]), pod("p0", true, &["10.0.0.1"])];
        let merged = merge_values([
            values_from_pods(&spec_a, &pods, |_| None),
            values_from_static(&spec_a, &HashMap::new()),
        ]);
        let summary: Vec<_> = merged.values.iter().map(|v| (v.value.as_str(), v.healthy)).collect();
        assert_eq!(
            summary,
            [("10.0.0.1", true), ("10.0.0.2", true)],
            "the healthy source wins"
        );
    }
}
