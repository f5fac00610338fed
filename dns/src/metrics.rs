//! Prometheus metrics of the DNS server, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// The label of a query type: the types mvdns serves and the usual others by name, the
/// rest as `other`, so a flood of odd types cannot grow the metric without bound.
fn qtype_label(record_type: RecordType) -> &'static str {
    match record_type {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::SRV => "SRV",
        RecordType::MX => "MX",
        RecordType::TXT => "TXT",
        RecordType::CNAME => "CNAME",
        RecordType::NS => "NS",
        RecordType::SOA => "SOA",
        RecordType::ANY => "ANY",
        RecordType::PTR => "PTR",
        RecordType::HTTPS => "HTTPS",
        RecordType::AXFR => "AXFR",
        RecordType::IXFR => "IXFR",
        _ => "other",
    }
}

/// Static strings: counting a query allocates nothing.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Query type (`A`, `SRV`, ...), `other` for the rest, `none` for requests that did
    /// not decode.
    pub qtype: &'static str,
    pub rcode: &'static str,
    pub transport: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub queries: Family<QueryLabels, Counter>,
    pub query_duration: Histogram,
    pub truncated: Counter,
    pub dropped: Family<ReasonLabels, Counter>,
    pub record_sets_served: Gauge,
    pub values_served: Gauge,
    pub skipped: Family<ReasonLabels, Gauge>,
    pub synced: Gauge,
    pub last_sync_seconds: Gauge,
    pub index_builds: Counter,
    /// Rebuilds that could not take the quick way, by reason (`index::WholeBuild`).
    pub whole_builds: Family<ReasonLabels, Counter>,
    /// Full lists of record sets started: the first, and one after every watch that
    /// could not resume (an expired resourceVersion, 410 Gone).
    pub watch_lists: Counter,
    pub watch_errors: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mvdns_dns");
        let metrics = Self {
            queries: Family::default(),
            // 1 us .. 33 ms: a cached answer takes microseconds.
            query_duration: Histogram::new(exponential_buckets(0.000_001, 2.0, 16)),
            truncated: Counter::default(),
            dropped: Family::default(),
            record_sets_served: Gauge::default(),
            values_served: Gauge::default(),
            skipped: Family::default(),
            synced: Gauge::default(),
            last_sync_seconds: Gauge::default(),
            index_builds: Counter::default(),
            whole_builds: Family::default(),
            watch_lists: Counter::default(),
            watch_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "queries",
            "Queries answered, by type, rcode and transport",
            metrics.queries.clone(),
        );
        registry.register(
            "query_duration_seconds",
            "Time from a decoded request to its encoded response",
            metrics.query_duration.clone(),
        );
        registry.register("truncated", "UDP responses sent with TC set", metrics.truncated.clone());
        registry.register(
            "dropped",
            "Requests not answered, by reason (not a query, too short, TCP connection limit, timeout)",
            metrics.dropped.clone(),
        );
        registry.register(
            "record_sets_served",
            "Record sets in the served index",
            metrics.record_sets_served.clone(),
        );
        registry.register(
            "values_served",
            "Values (healthy or not) in the served index",
            metrics.values_served.clone(),
        );
        registry.register(
            "skipped",
            "Record sets or values not served in the current index, by reason",
            metrics.skipped.clone(),
        );
        registry.register(
            "synced",
            "1 once the first full sync with the API server is done",
            metrics.synced.clone(),
        );
        registry.register(
            "last_sync_timestamp_seconds",
            "Unix time of the last index rebuild from a watch event",
            metrics.last_sync_seconds.clone(),
        );
        registry.register("index_builds", "Index rebuilds", metrics.index_builds.clone());
        registry.register(
            "index_whole_builds",
            "Index rebuilds that built everything again, by reason (no_previous_shape, record_set_added_or_removed, spec_changed, pod_srv_glue, ...); the others only swapped changed RRsets in",
            metrics.whole_builds.clone(),
        );
        registry.register(
            "watch_lists",
            "Full lists of record sets started (the first, then after each watch that could not resume)",
            metrics.watch_lists.clone(),
        );
        registry.register(
            "watch_errors",
            "Failed record-set watch requests (retried with backoff; the last index stays served)",
            metrics.watch_errors.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    pub fn count_query(&self, record_type: RecordType, rcode: ResponseCode, transport: &'static str, took: Duration) {
        self.query_duration.observe(took.as_secs_f64());
        let labels = QueryLabels {
            qtype: qtype_label(record_type),
            rcode: rcode.to_str(),
            transport,
        };
        self.queries.get_or_create(&labels).inc();
    }

    pub fn count_undecoded(&self, rcode: ResponseCode, transport: &'static str, took: Duration) {
        self.query_duration.observe(took.as_secs_f64());
        let labels = QueryLabels {
            qtype: "none",
            rcode: rcode.to_str(),
            transport,
        };
        self.queries.get_or_create(&labels).inc();
    }

    pub fn count_dropped(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabels { reason: reason.into() })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        mvdns_runtime::admin::encode(&self.registry)
    }
}
