//! `MultiValueRecordSet` (`mvdns.io/v1alpha1`): the user's contract with mvdns.
//!
//! The doc comment on every field becomes its `kubectl explain` text, so they are
//! written for users. Validation happens at admission: bounds and enums in the
//! OpenAPI schema, cross-field and per-type value rules in CEL (see [`crate::rules`]).
//! The same value rules exist in Rust ([`crate::value`]) for the operator and the DNS
//! server, which never trust that an object passed admission.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::rules;

/// A DNS name answered with up to eight healthy values picked at random per query
/// (Route 53 multivalue answer routing). Values come from ready pods
/// (`podSelector`) and from static endpoints (`values`), each optionally health-checked.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mvdns.io",
    version = "v1alpha1",
    kind = "MultiValueRecordSet",
    plural = "multivaluerecordsets",
    singular = "multivaluerecordset",
    shortname = "mvrs",
    category = "mvdns",
    namespaced,
    status = "MultiValueRecordSetStatus",
    derive = "PartialEq",
    doc = "A DNS name answered with up to eight randomly picked healthy values (Route 53 multivalue answer routing).",
    printcolumn = r#"{"name":"DNS Name","type":"string","jsonPath":".spec.name"}"#,
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","jsonPath":".status.healthyCount"}"#,
    printcolumn = r#"{"name":"Total","type":"integer","jsonPath":".status.totalCount"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Tiers","type":"string","jsonPath":".status.priorities","priority":1,"description":"The failover tiers answered now, best first"}"#,
    printcolumn = r#"{"name":"Panic","type":"boolean","jsonPath":".status.panic","priority":1,"description":"Health is ignored: fewer than minHealthyPercent of the values are healthy"}"#,
    printcolumn = r#"{"name":"Slices","type":"integer","jsonPath":".status.slices","priority":1,"description":"The values are served from this many MultiValueRecordSlices"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = rules::value_source_given(),
    validation = rules::pod_selector_only_for_address_types(),
    validation = rules::srv_pods_need_port(),
    validation = rules::service_ref_only_for_address_types(),
    validation = rules::srv_service_needs_port(),
    validation = rules::service_port_only_for_srv(),
    validation = rules::port_only_for_srv(),
    validation = rules::values_are_ipv4_for_a(),
    validation = rules::values_are_ipv6_for_aaaa(),
    validation = rules::values_are_hostnames_for_cname_and_ns(),
    validation = rules::values_are_mx(),
    validation = rules::values_are_srv(),
    validation = rules::values_are_txt(),
    validation = rules::cname_has_one_value_source(),
)]
pub struct MultiValueRecordSetSpec {
    /// Fully qualified DNS name this record set answers, e.g. `web.shop.example.internal.`
    /// (the trailing dot is optional; case does not matter). It must fall inside a zone
    /// the mvdns DNS server is configured to serve. Several record sets in one namespace
    /// may share a name and type; their values are served together.
    #[schemars(length(min = 1, max = 254))]
    #[x_kube(validation = rules::name_is_fqdn())]
    pub name: String,

    /// DNS record type: A, AAAA, SRV, MX, TXT, CNAME or NS.
    #[serde(rename = "type")]
    pub record_type: RecordType,

    /// Time to live of each answer, in seconds (0 to 86400). Keep it short: clients
    /// cache answers this long, so it bounds how long a failed endpoint stays in use.
    #[serde(default = "default_ttl")]
    #[schemars(range(min = 0, max = 86400))]
    pub ttl: u32,

    /// Most values in one answer, 1 to 8 (Route 53 answers with up to eight).
    /// With more healthy values than this, each query gets a uniformly random subset.
    #[serde(default = "default_max_answers")]
    #[schemars(range(min = 1, max = 8))]
    pub max_answers: u8,

    /// What to answer when no value is healthy. `ReturnUnhealthy` (the default, Route 53's
    /// fail-open) answers with unhealthy values, on the theory that a health check is more
    /// likely wrong than every endpoint; `ReturnNone` answers with no records (NODATA).
    #[serde(default)]
    pub when_all_unhealthy: WhenAllUnhealthy,

    /// How values are picked per query. `None` (default): uniformly at random.
    /// `PreferSameZone`: healthy values in the client's topology zone first, then others.
    #[serde(default)]
    pub topology: Topology,

    /// The failover tier of this record set's values, 0-255 (default 0, the best); a
    /// static value may set its own (`values[].priority`). Answers come from the best tier
    /// with at least `minHealthy` healthy values; better tiers with fewer are answered
    /// first and this one fills the rest (Route 53's failover, health-aware and per
    /// query). Record sets of one namespace that share a name form its tiers, e.g. a
    /// primary site's pods at 0 and a standby site's at 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,

    /// Healthy values a tier needs to answer alone, 1-100000 (default 1). With fewer, the
    /// next tier fills the answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub min_healthy: Option<u32>,

    /// The panic threshold, 0-100 (default 0: off). When fewer than this percentage of the
    /// values is healthy (summed over the tiers, each tier's healthy share, at most 100;
    /// drained values left out), health is ignored and answers come from all values, so a
    /// broken health signal cannot pile every client onto the few values still marked
    /// healthy (gdnsd's `up_thresh`, Envoy's panic mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub min_healthy_percent: Option<u8>,

    /// Pods whose readiness decides their value's health: a pod with an IP of the
    /// record's family (IPv4 for A, IPv6 for AAAA) is healthy while its Ready condition is
    /// True. A terminating pod that is still ready is answered only when nothing else is
    /// healthy. Only for types A, AAAA and SRV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,

    /// A Service whose endpoints become values, read from its EndpointSlices (label
    /// `kubernetes.io/service-name`) in this namespace: endpoints that are `ready` are
    /// healthy (the EndpointSlice controller marks every endpoint ready when the Service
    /// sets `publishNotReadyAddresses`); a terminating endpoint that is still `serving` is
    /// answered only when nothing else is healthy. Slices managed by hand work the same.
    /// Only for types A, AAAA (by the slice's address type) and SRV.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_ref: Option<ServiceRef>,

    /// SRV records backed by pods only: the container port, by name (e.g. `http`, looked
    /// up in each pod's container ports) or by number (1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::port_is_name_or_number())]
    pub port: Option<IntOrString>,

    /// Static values, one per endpoint, as in Route 53 (at most 128). The format follows
    /// the type: an IPv4 address for A, an IPv6 address for AAAA, a host name for CNAME
    /// and NS, `PREFERENCE HOST` for MX, `PRIORITY WEIGHT PORT HOST` for SRV, and text
    /// (up to 512 characters) for TXT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128))]
    #[x_kube(
        validation = rules::set_identifiers_unique(),
        validation = rules::values_unique(),
    )]
    pub values: Vec<StaticValue>,
}

/// A Service in the record set's namespace, as a source of values.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    /// The Service's name.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// SRV only: the port of each endpoint, by the Service port's name (as in the
    /// EndpointSlice's `ports[].name`) or by number (1-65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = rules::service_port_is_name_or_number())]
    pub port: Option<IntOrString>,
}

/// One static endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StaticValue {
    /// The record data, in the format of the record set's type (see `spec.values`).
    #[schemars(length(min = 1, max = 512))]
    pub value: String,

    /// Optional identifier, unique within the record set, that tells this value apart
    /// in status and Events (Route 53's set identifier). 1-128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub set_identifier: Option<String>,

    /// Optional topology zone of this endpoint (e.g. `eu-1a`), used by
    /// `topology: PreferSameZone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub zone: Option<String>,

    /// Optional active health check run by the operator. Without one the value is always
    /// healthy. A new check counts as healthy until its first result (Route 53's rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,

    /// Relative weight, 0-255 (default 1). Answers pick the first value in proportion to
    /// the weights, and a heavier value is in more answers. Weight 0: answered only when
    /// no value of positive weight is healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 255))]
    pub weight: Option<u8>,

    /// Take the value out of answers while it stays in status (`drained`): answered only
    /// when no value that is not drained is healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drain: bool,

    /// This value's failover tier, 0-255 (default: `spec.priority`, else 0, the best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
}

/// An active probe of one endpoint, Route 53 style.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = rules::http_fields_only_for_http())]
pub struct HealthCheck {
    /// Probe type: `HTTP` or `HTTPS` (a GET that must answer 2xx or 3xx), or `TCP`
    /// (the connection must open).
    #[serde(rename = "type")]
    pub check_type: HealthCheckType,

    /// Port to probe, 1-65535.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// HTTP(S) only: the path to request, starting with `/` (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub path: Option<String>,

    /// HTTP(S) only: the Host header and TLS server name to send (default: the value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,

    /// HTTP(S) only: the check passes only if this string appears in the first 5120
    /// bytes of the response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub search_string: Option<String>,

    /// HTTPS only: verify the server's certificate (default false, as in Route 53,
    /// since endpoints are usually addressed by IP).
    #[serde(default)]
    pub verify_certificate: bool,

    /// Turn the result around: healthy when the probe fails.
    #[serde(default)]
    pub invert: bool,

    /// Seconds between probes, 5-300 (default 30).
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 5, max = 300))]
    pub interval_seconds: u32,

    /// Consecutive results needed to change the value's health, in either direction,
    /// 1-10 (default 3).
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 10))]
    pub failure_threshold: u32,

    /// Seconds to wait for the connection, 1-30 (default 4, as Route 53).
    #[serde(default = "default_connect_timeout_seconds")]
    #[schemars(range(min = 1, max = 30))]
    pub connect_timeout_seconds: u32,

    /// HTTP(S): seconds to wait for the response after connecting, 1-30 (default 2, as
    /// Route 53). A server that accepts and never answers fails within this time.
    #[serde(default = "default_response_timeout_seconds")]
    #[schemars(range(min = 1, max = 30))]
    pub response_timeout_seconds: u32,
}

/// Record types mvdns serves.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(clippy::upper_case_acronyms)]
pub enum RecordType {
    A,
    AAAA,
    SRV,
    MX,
    TXT,
    CNAME,
    NS,
}

impl RecordType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::AAAA => "AAAA",
            Self::SRV => "SRV",
            Self::MX => "MX",
            Self::TXT => "TXT",
            Self::CNAME => "CNAME",
            Self::NS => "NS",
        }
    }
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Answer when no value is healthy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenAllUnhealthy {
    /// Answer with unhealthy values (Route 53's behaviour).
    #[default]
    ReturnUnhealthy,
    /// Answer NOERROR with no records.
    ReturnNone,
}

/// Value selection policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Topology {
    /// Uniform random selection.
    #[default]
    None,
    /// Prefer values in the client's zone.
    PreferSameZone,
}

/// Probe types.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum HealthCheckType {
    HTTP,
    HTTPS,
    TCP,
}

/// Observed state, written only by the operator. The DNS servers serve `values` from here.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MultiValueRecordSetStatus {
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready` (at least one healthy value is served), `Degraded` (some values are
    /// unhealthy), `Conflict` (another namespace owns the name; not served) and
    /// `InvalidSpec` (the spec cannot be served as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,

    /// Number of healthy values.
    #[serde(default)]
    pub healthy_count: u32,

    /// Number of values, healthy or not.
    #[serde(default)]
    pub total_count: u32,

    /// Every value with its health, in a deterministic order: exactly what DNS serves.
    /// Empty when the values are in slices (`slices`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ValueStatus>,

    /// A name with more values than one slice holds (100) is served from this many
    /// `MultiValueRecordSlice`s (label `mvdns.io/record-set: <name>`, owned by this record
    /// set), and `values` stays empty: a change then rewrites one slice, not a status that
    /// grows with the name. Absent while `values` holds them all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<u32>,

    /// The failover tiers (`priority`) answers come from now, best first; empty when no
    /// value is healthy. Computed from this record set's values alone: when several record
    /// sets share the name, the DNS server applies the same rules to all of them together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priorities: Vec<u8>,

    /// Fewer than `minHealthyPercent` of the values are healthy: health is ignored, and
    /// answers come from every value that is not drained.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub panic: bool,
}

/// One value as served.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct ValueStatus {
    /// The record data (an address for pod-backed values).
    pub value: String,
    /// Whether the value is healthy and so served in normal answers.
    pub healthy: bool,
    /// Where the value comes from: `pod/<name>` or `static/<setIdentifier or index>`.
    pub source: String,
    /// SRV from pods: the resolved port of this pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Topology zone of the value, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Static values with a health check: the check's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckStatus>,
    /// The value's weight when it is not 1 (`spec.values[].weight`, or a pod's
    /// `mvdns.io/weight` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    /// Drained (`spec.values[].drain`, or a pod's `mvdns.io/drain: "true"`): listed, but
    /// answered only when no value that is not drained is healthy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
    /// The value's failover tier when it is not 0 (`spec.priority`, or
    /// `spec.values[].priority`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// A terminating pod that is still ready (its EndpointSlice endpoint is `serving`):
    /// served like a drained value, only when nothing else is healthy, so that a rollout
    /// never drops the answers to zero.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub terminating: bool,
}

impl ValueStatus {
    /// The weight answers use: 1 unless set.
    pub fn effective_weight(&self) -> u8 {
        self.weight.unwrap_or(1)
    }

    /// What the tier and panic rules see of this value (a terminating pod counts as
    /// drained).
    pub fn facts(&self) -> crate::selection::Facts {
        crate::selection::Facts {
            priority: self.priority.unwrap_or(crate::selection::DEFAULT_PRIORITY),
            healthy: self.healthy,
            drained: self.drained || self.terminating,
        }
    }
}

/// The state of a value's active health check.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    /// `Pending` until the first probe result (the value counts as healthy meanwhile,
    /// Route 53's rule), then the result of the latest probe: `Success` or `Failure`.
    pub last_result: CheckResult,
    /// Consecutive probes that gave `lastResult`, as of this status write. Status is
    /// written when a result differs from the one before, not after every probe.
    pub consecutive: u32,
    /// When the value's health last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Why the latest failed probe failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A probe outcome.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CheckResult {
    Pending,
    Success,
    Failure,
}

/// Conditions are an atomic list, not the usual map keyed by type: the operator is the
/// only writer of status and always writes all four, so server-side apply has nothing
/// to merge by key, and tracking each condition's fields separately cost the API server
/// 0.4-0.7 ms more per status write (about a sixth of the write; measured against the
/// real kube-apiserver, see BENCHMARKS.md). The price: a condition that someone else
/// adds to the list is dropped at the operator's next write.
fn conditions_schema(generator: &mut schemars::generate::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema
        .ensure_object()
        .insert("x-kubernetes-list-type".into(), "atomic".into());
    schema
}

fn default_ttl() -> u32 {
    30
}
fn default_max_answers() -> u8 {
    8
}
fn default_interval_seconds() -> u32 {
    30
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_connect_timeout_seconds() -> u32 {
    4
}
fn default_response_timeout_seconds() -> u32 {
    2
}
