//! mvdns-operator: turns pod readiness and active health checks into the healthy values
//! of each `MultiValueRecordSet`, written to its status, which is the feed every DNS
//! replica serves from.
//!
//! Layout (watches → index → reconcile → status writer):
//! - pure decisions: [`values`] (which values, and whether healthy), [`status`] (the
//!   status and its Events), [`health::state`] (a check's health), [`health::policy`]
//!   (which addresses may be probed), and the name-ownership rule in
//!   `mvdns_api::ownership`;
//! - [`index`]: what the watches saw, IO-free, answering which record sets an event
//!   touches and what a reconcile reads;
//! - IO: [`controller`] (the watches and the reconcile), [`runner`] (when reconciles
//!   run), [`writer`] (the one status writer), [`health::checker`] and
//!   [`health::probe`] (the probes), [`leader`] (the Lease); the admin port is `mvdns_runtime::admin`'s, serving [`Health`].

pub mod controller;
pub mod health;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod pods;
pub mod runner;
pub mod slices;
pub mod status;
pub mod values;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use mvdns_api::zones::PublishRules;
use tokio_util::sync::CancellationToken;

use crate::health::limits::TenantLimits;
use crate::health::policy::ProbePolicy;
use crate::leader::{LeaderElector, LeaseConfig};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl Error {
    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Self::Kube(kube::Error::Api(status)) if status.code == 403 => "forbidden",
            Self::Kube(kube::Error::Api(_)) => "api",
            Self::Kube(_) => "transport",
            Self::Timeout(_) => "timeout",
        }
    }
}

#[derive(Clone, Debug)]
pub struct OperatorConfig {
    pub lease: LeaseConfig,
    /// Bursts of changes to one record set within this window become one status write.
    pub coalesce: Duration,
    /// Health-check probes in flight at most.
    pub probe_concurrency: usize,
    /// The zones the DNS servers serve and who may publish in them; record sets the
    /// rules refuse get `Ready=False, reason NotServed`. Default: no rules.
    pub publish: PublishRules,
    /// Which addresses health checks may connect to (`health::policy`). Default: anything
    /// but the special classes (loopback, link-local, ...).
    pub probe_policy: ProbePolicy,
    /// How much one namespace's health checks may ask for.
    pub tenant_limits: TenantLimits,
    /// Watch record sets and pods in these namespaces only (`--namespace`); empty: all.
    pub namespaces: Vec<String>,
    /// A record set with more values than this is served from `MultiValueRecordSlice`s
    /// (`--max-status-values`; default [`slices::DEFAULT_MAX_STATUS_VALUES`]).
    pub max_status_values: usize,
}

/// State shared with the admin server.
#[derive(Debug, Default)]
pub struct Health {
    pub metrics: Arc<Metrics>,
    /// The API server answered the last leader-election request (a standby is ready too:
    /// with one replica Ready per Deployment only, `helm install --wait` and a
    /// PodDisruptionBudget would wait for it forever, and a rollout would never finish).
    pub ready: AtomicBool,
}

impl mvdns_runtime::admin::AdminState for Health {
    fn ready(&self) -> Result<(), &'static str> {
        if self.ready.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err("waiting for the API server")
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// Runs the operator until `shutdown` is cancelled: waits to become leader, reconciles
/// while leading, steps down when the lease is lost, and releases it on shutdown.
pub async fn run(client: Client, config: OperatorConfig, health: Arc<Health>, shutdown: CancellationToken) {
    let elector = LeaderElector::new(client.clone(), config.lease.clone());
    let reporter = Reporter {
        controller: "mvdns-operator".into(),
        instance: Some(config.lease.identity.clone()),
    };
    while !shutdown.is_cancelled() {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = elector.acquire(&health.ready) => {}
        }
        health.metrics.leader.set(1);
        tracing::info!(identity = %config.lease.identity, "became leader");
        let stop = shutdown.child_token();
        let recorder = Recorder::new(client.clone(), reporter.clone());
        let controller = controller::run(client.clone(), recorder, health.metrics.clone(), &config, stop.clone());
        tokio::select! {
            _ = controller => {}
            _ = elector.keep_renewing() => {
                tracing::warn!("lost the leader lease; standing by");
                stop.cancel();
            }
        }
        health.metrics.leader.set(0);
    }
    if let Err(error) = elector.release().await {
        tracing::warn!(%error, "could not release the leader lease");
    }
}
