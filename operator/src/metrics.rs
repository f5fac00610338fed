//! Prometheus metrics of the operator, served on the admin port.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Error;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RecordSetLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub outcome: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub probe_duration: Histogram,
    pub probe_results: Family<ProbeLabels, Counter>,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_duration: Histogram,
    pub status_writes: Counter,
    /// Probes that waited for their namespace's rate (`health::limits`).
    pub probes_delayed: Counter,
    pub healthy_values: Family<RecordSetLabels, Gauge>,
    pub leader: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mvdns_operator");
        let metrics = Self {
            probe_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 15)),
            probe_results: Family::default(),
            reconciles: Counter::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            status_writes: Counter::default(),
            probes_delayed: Counter::default(),
            healthy_values: Family::default(),
            leader: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("reconciles", "Reconciles run", metrics.reconciles.clone());
        registry.register(
            "probe_duration_seconds",
            "Health-check probe latency",
            metrics.probe_duration.clone(),
        );
        registry.register(
            "probe_results",
            "Health-check probe results, by outcome (healthy, unhealthy; refused: the probe-target policy refused it, nothing was sent)",
            metrics.probe_results.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles failed, by kind",
            metrics.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register("status_writes", "Status updates written", metrics.status_writes.clone());
        registry.register(
            "probes_delayed",
            "Health-check probes that waited for their namespace's probe rate (--probe-rate-per-namespace)",
            metrics.probes_delayed.clone(),
        );
        registry.register(
            "healthy_values",
            "Healthy values per record set",
            metrics.healthy_values.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            metrics.leader.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    pub fn set_healthy_values(&self, namespace: &str, name: &str, healthy: u32) {
        let labels = RecordSetLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.healthy_values.get_or_create(&labels).set(i64::from(healthy));
    }

    /// A deleted record set's series go with it (else every record set ever seen
    /// would stay on the admin port).
    pub fn forget_record_set(&self, namespace: &str, name: &str) {
        let labels = RecordSetLabels {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.healthy_values.remove(&labels);
    }

    pub fn count_error(&self, error: &Error) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                kind: error.kind().into(),
            })
            .inc();
    }

    pub fn observe_probe(&self, outcome: &crate::health::probe::ProbeOutcome) {
        if outcome.refused.is_some() {
            return self.observe_refusal();
        }
        self.probe_duration.observe(outcome.latency.as_secs_f64());
        let label = if outcome.healthy { "healthy" } else { "unhealthy" };
        self.probe_results
            .get_or_create(&ProbeLabels { outcome: label.into() })
            .inc();
    }

    /// A check the probe-target policy refused: nothing was sent (outcome "refused").
    pub fn observe_refusal(&self) {
        self.probe_results
            .get_or_create(&ProbeLabels {
                outcome: "refused".into(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        mvdns_runtime::admin::encode(&self.registry)
    }
}
