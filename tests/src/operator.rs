//! Running the operator in a test, under the chart's ServiceAccount, and waiting for
//! the status it writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use mvdns_api::{MultiValueRecordSet, MultiValueRecordSetStatus};
use mvdns_operator::health::limits::TenantLimits;
use mvdns_operator::health::policy::ProbePolicy;
use mvdns_operator::leader::LeaseConfig;
use mvdns_operator::{Health, OperatorConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{
    TestEnv, TestNamespace, chart_service_account, client_from_kubeconfig, install_chart_rbac, install_crd,
    service_account_kubeconfig,
};

/// The loopback addresses test endpoints bind (127.0.0.2 to 127.0.0.63): the only ones the
/// tests' operators may probe. 127.0.0.1 is the API server's (and would be the operator's
/// admin port's) and stays refused, as does the rest of 127.0.0.0/8.
pub const TEST_ENDPOINT_BLOCKS: [&str; 5] = [
    "127.0.0.2/31",
    "127.0.0.4/30",
    "127.0.0.8/29",
    "127.0.0.16/28",
    "127.0.0.32/27",
];

/// The probe-target policy of the tests' operators, as the binary builds it with
/// `--probe-allow-cidr` set to [`TEST_ENDPOINT_BLOCKS`] and the API server on 127.0.0.1.
pub fn test_probe_policy() -> ProbePolicy {
    let allow = TEST_ENDPOINT_BLOCKS.map(String::from);
    ProbePolicy::parse(&allow, &[])
        .expect("valid blocks")
        .protect([127, 0, 0, 1].into(), "the API server's address")
}

/// An operator running in this test's runtime under the chart's ServiceAccount.
#[derive(Debug)]
pub struct RunningOperator {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    pub health: Arc<Health>,
}

impl RunningOperator {
    pub async fn start(env: &TestEnv, namespace: &str, identity: &str, lease_seconds: u64) -> Result<Self> {
        Self::start_with(env, namespace, identity, lease_seconds, |_| {}).await
    }

    /// [`Self::start`] with settings of the test's own (`configure` changes the defaults).
    pub async fn start_with(
        env: &TestEnv,
        namespace: &str,
        identity: &str,
        lease_seconds: u64,
        configure: impl FnOnce(&mut OperatorConfig),
    ) -> Result<Self> {
        let account = chart_service_account(namespace, "operator");
        let client = client_from_kubeconfig(&service_account_kubeconfig(env, namespace, &account).await?).await?;
        let mut config = OperatorConfig {
            lease: LeaseConfig {
                namespace: namespace.into(),
                name: "mvdns-operator".into(),
                identity: identity.into(),
                lease_duration: Duration::from_secs(lease_seconds),
                renew_period: Duration::from_secs(1),
            },
            coalesce: Duration::from_millis(100),
            probe_concurrency: 64,
            publish: mvdns_api::zones::PublishRules::default(),
            probe_policy: test_probe_policy(),
            tenant_limits: TenantLimits::default(),
            namespaces: Vec::new(),
            max_status_values: mvdns_operator::slices::DEFAULT_MAX_STATUS_VALUES,
        };
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let health = Arc::new(Health::default());
        let task = tokio::spawn(mvdns_operator::run(client, config, health.clone(), shutdown.clone()));
        Ok(Self { shutdown, task, health })
    }

    /// Graceful stop: the lease is released.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }

    /// Like a killed process: no release, the lease must expire.
    pub fn kill(self) {
        self.task.abort();
    }
}

#[allow(missing_debug_implementations)] // TestNamespace holds a kube Client
pub struct Fixture {
    pub env: TestEnv,
    pub ns: TestNamespace,
}

pub async fn fixture(prefix: &str) -> Result<Fixture> {
    let env = TestEnv::get()?;
    let client = env.admin_client().await?;
    install_crd(&client).await?;
    let ns = TestNamespace::new(&env, &client, prefix).await?;
    install_chart_rbac(&env, &ns.name).await?;
    Ok(Fixture { env, ns })
}

pub async fn apply_record_set(env: &TestEnv, namespace: &str, name: &str, spec: Value) -> Result<()> {
    let gvk = GroupVersionKind::gvk("mvdns.io", "v1alpha1", "MultiValueRecordSet");
    let api: Api<DynamicObject> =
        Api::namespaced_with(env.admin_client().await?, namespace, &ApiResource::from_gvk(&gvk));
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
        "metadata": {"name": name}, "spec": spec,
    }))?;
    api.create(&PostParams::default(), &object).await?;
    Ok(())
}

/// Polls the record set's status (every 50 ms, at most `limit`) until `done` holds.
pub async fn wait_status(
    api: &Api<MultiValueRecordSet>,
    name: &str,
    limit: Duration,
    done: impl Fn(&MultiValueRecordSetStatus) -> bool,
) -> Result<MultiValueRecordSetStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let status = api.get(name).await?.status.unwrap_or_default();
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("status of {name} did not reach the expected state within {limit:?}; last: {status:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the namespace's Events (every 100 ms, at most `limit`) until one has `reason`;
/// gives its note. Events are published right after the status write they announce.
pub async fn wait_event(events: &Api<Event>, reason: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let list = events.list(&Default::default()).await?.items;
        if let Some(event) = list.iter().find(|e| e.reason.as_deref() == Some(reason)) {
            return Ok(event.note.clone().unwrap_or_default());
        }
        if Instant::now() > deadline {
            let reasons: Vec<_> = list.iter().filter_map(|e| e.reason.as_deref()).collect();
            bail!("no {reason} Event within {limit:?}; the Events: {reasons:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn condition(status: &MultiValueRecordSetStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// The message of the condition `type_` ("" when there is none).
pub fn condition_message(status: &MultiValueRecordSetStatus, type_: &str) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

pub fn healthy_values(status: &MultiValueRecordSetStatus) -> Vec<String> {
    status
        .values
        .iter()
        .filter(|v| v.healthy)
        .map(|v| v.value.clone())
        .collect()
}

pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}
