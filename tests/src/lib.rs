//! Helpers for tests against the real control plane that `hack/testenv.sh up` starts.
//!
//! One control plane is shared by every test; each test gets its own namespace
//! ([`TestNamespace`]), deleted when it goes out of scope. Clients are made per test
//! because a kube `Client` is tied to the tokio runtime it was created in, and every
//! `#[tokio::test]` has its own.

pub mod bench;
pub mod dns;
pub mod endpoints;
pub mod operator;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Config, CustomResourceExt};
use mvdns_api::MultiValueRecordSet;
use serde::Deserialize;
use serde_json::json;

/// Annotation the KWOK test stages watch (hack/kwok-test-stages.yaml).
pub const TEST_READY_ANNOTATION: &str = "mvdns.io/test-ready";
/// Field manager for everything the tests apply.
const MANAGER: &str = "mvdns-tests";

/// The running control plane: its directory, binaries and admin identity.
#[derive(Clone, Debug)]
pub struct TestEnv {
    pub dir: PathBuf,
    pub bin_dir: PathBuf,
}

impl TestEnv {
    /// Finds the control plane started by `hack/testenv.sh up`, or fails with how to start it.
    pub fn get() -> Result<Self> {
        let dir = std::env::var_os("MVDNS_TESTENV_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target/testenv"));
        let missing = || {
            format!(
                "no control plane at {}: run the tests with hack/test.sh, or start one with `hack/testenv.sh up`",
                dir.display()
            )
        };
        let bin_dir = std::fs::read_to_string(dir.join("bin-dir")).with_context(missing)?;
        if !dir.join("admin.kubeconfig").exists() {
            bail!(missing());
        }
        Ok(Self {
            bin_dir: PathBuf::from(bin_dir.trim()),
            dir,
        })
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A client with cluster-admin rights, for test set-up and assertions.
    pub async fn admin_client(&self) -> Result<Client> {
        client_from_kubeconfig(&self.admin_kubeconfig()).await
    }

    /// Runs kubectl (built with the control plane) as admin and returns its stdout.
    pub async fn kubectl(&self, args: &[&str]) -> Result<String> {
        let (success, stdout, stderr) = self.kubectl_status(args).await?;
        if !success {
            bail!("kubectl {args:?} failed: {stderr}");
        }
        Ok(stdout)
    }

    /// Runs kubectl as admin; returns whether it succeeded, its stdout and its stderr.
    pub async fn kubectl_status(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let out = tokio::process::Command::new(self.bin_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args)
            .output()
            .await?;
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        Ok((out.status.success(), text(out.stdout), text(out.stderr)))
    }

    /// Runs `hack/testenv.sh COMMAND` on this control plane (`apiserver-stop`,
    /// `apiserver-start`, `etcd-compact`).
    pub async fn testenv_command(&self, command: &str) -> Result<()> {
        let status = tokio::process::Command::new(workspace_root().join("hack/testenv.sh"))
            .arg(command)
            .env("MVDNS_TESTENV_DIR", &self.dir)
            .status()
            .await?;
        if !status.success() {
            bail!("hack/testenv.sh {command} failed");
        }
        Ok(())
    }
}

pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Installs (server-side applies) the generated CRDs and waits until they are served.
pub async fn install_crd(client: &Client) -> Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (file, name) in [
        (mvdns_api::CRD_FILE, MultiValueRecordSet::crd_name()),
        (mvdns_api::SLICE_CRD_FILE, mvdns_api::MultiValueRecordSlice::crd_name()),
    ] {
        let yaml = std::fs::read_to_string(workspace_root().join(file))?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml)?;
        crds.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&crd))
            .await?;
        tokio::time::timeout(
            Duration::from_secs(30),
            await_condition(crds.clone(), name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established within 30s"))??;
    }
    Ok(())
}

/// A namespace of one test's own, deleted (in the background) when dropped.
#[allow(missing_debug_implementations)] // kube::Client is not Debug
pub struct TestNamespace {
    pub name: String,
    client: Client,
    kubeconfig: PathBuf,
}

impl TestNamespace {
    pub async fn new(env: &TestEnv, client: &Client, prefix: &str) -> Result<Self> {
        let name = format!("{prefix}-{:08x}", rand::random::<u32>());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"mvdns.io/test": "true"}}
        }))?;
        namespaces.create(&PostParams::default(), &ns).await?;
        // Pods cannot be created before the controller-manager adds the namespace's
        // default ServiceAccount, which happens shortly after the namespace appears.
        let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), &name);
        let has_default = |sa: Option<&k8s_openapi::api::core::v1::ServiceAccount>| sa.is_some();
        // 90 s: after a test restarts the API server, the controller-manager reconnects
        // with backoff and takes a while to serve new namespaces again.
        tokio::time::timeout(
            Duration::from_secs(90),
            await_condition(accounts, "default", has_default),
        )
        .await
        .with_context(|| format!("namespace {name} got no default ServiceAccount within 90s"))??;
        Ok(Self {
            name,
            client: client.clone(),
            kubeconfig: env.admin_kubeconfig(),
        })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Fire the (server-side asynchronous) deletion from a thread with its own runtime
        // and its own client: the test's client is bound to the test's runtime, which is
        // blocked in this Drop. Bounded, so a dead API server cannot hang the test.
        let (kubeconfig, name) = (self.kubeconfig.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async {
                let delete = async {
                    let namespaces: Api<Namespace> = Api::all(client_from_kubeconfig(&kubeconfig).await?);
                    namespaces.delete(&name, &DeleteParams::background()).await?;
                    anyhow::Ok(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), delete).await;
            });
        })
        .join();
    }
}

/// A simulated pod on a KWOK node: KWOK marks it Running and Ready and gives it IPs.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub node: String,
    pub ports: Vec<(String, u16)>,
    pub annotations: BTreeMap<String, String>,
}

impl PodSpec {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            labels: BTreeMap::new(),
            node: "kwok-node-0".into(),
            ports: Vec::new(),
            annotations: BTreeMap::new(),
        }
    }
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }
    pub fn on_node(mut self, node: &str) -> Self {
        self.node = node.into();
        self
    }
    pub fn port(mut self, name: &str, port: u16) -> Self {
        self.ports.push((name.into(), port));
        self
    }

    pub fn to_pod(&self) -> Result<Pod> {
        let ports: Vec<_> = self
            .ports
            .iter()
            .map(|(n, p)| json!({"name": n, "containerPort": p}))
            .collect();
        Ok(serde_json::from_value(json!({
            "metadata": {"name": self.name, "labels": self.labels, "annotations": self.annotations},
            "spec": {
                // Bound directly to a fake node: KWOK needs no scheduler for these.
                "nodeName": self.node,
                "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "app", "image": "registry.invalid/app:1", "ports": ports}],
            }
        }))?)
    }
}

/// Creates the pods and waits until KWOK reports all of them Ready with an IP.
pub async fn create_ready_pods(pods: &Api<Pod>, specs: &[PodSpec]) -> Result<Vec<Pod>> {
    for spec in specs {
        pods.create(&PostParams::default(), &spec.to_pod()?).await?;
    }
    let mut ready = Vec::with_capacity(specs.len());
    for spec in specs {
        ready.push(wait_pod(pods, &spec.name, true).await?);
    }
    Ok(ready)
}

/// Flips a pod's readiness the way a kubelet would report it (KWOK test stage).
pub async fn set_pod_ready(pods: &Api<Pod>, name: &str, ready: bool) -> Result<Pod> {
    let value = if ready { "true" } else { "false" };
    let patch = json!({"metadata": {"annotations": {TEST_READY_ANNOTATION: value}}});
    pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    wait_pod(pods, name, ready).await
}

/// Waits (at most 60 s) until the pod's Ready condition is `ready` and it has an IP.
pub async fn wait_pod(pods: &Api<Pod>, name: &str, ready: bool) -> Result<Pod> {
    let condition = move |pod: Option<&Pod>| pod.is_some_and(|p| is_pod_ready(p) == ready && pod_ip(p).is_some());
    let found = tokio::time::timeout(Duration::from_secs(60), await_condition(pods.clone(), name, condition))
        .await
        .with_context(|| format!("pod {name} did not become ready={ready} within 60s"))??;
    found.context("pod vanished")
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.pod_ip.as_deref()
}

/// The IPs of these pods, sorted.
pub fn pod_ips(pods: &[Pod]) -> std::collections::BTreeSet<String> {
    pods.iter().filter_map(pod_ip).map(String::from).collect()
}

/// `count` pods `<prefix>-<i>` labelled `app`, spread over the three KWOK nodes (so over
/// the zones `zone-a`, `zone-b`, `zone-c`).
pub fn spread_pods(prefix: &str, count: usize, app: &str) -> Vec<PodSpec> {
    (0..count)
        .map(|i| {
            PodSpec::new(format!("{prefix}-{i}"))
                .label("app", app)
                .on_node(&format!("kwok-node-{}", i % 3))
        })
        .collect()
}

/// The chart's ServiceAccounts and RBAC, installed for one test: rendered with helm
/// (release = namespace name, so cluster-scoped names do not collide) and applied.
pub async fn install_chart_rbac(env: &TestEnv, namespace: &str) -> Result<()> {
    install_chart_rbac_with(env, namespace, &[]).await
}

/// [`install_chart_rbac`] with chart values of the test's own (`--set rbac.scope=namespaces`).
pub async fn install_chart_rbac_with(env: &TestEnv, namespace: &str, helm_args: &[&str]) -> Result<()> {
    let rendered = tokio::process::Command::new(env.bin_dir.join("helm"))
        .args(["template", namespace, "--namespace", namespace])
        .args(helm_args)
        // Only the ServiceAccounts and RBAC: the binaries run as test processes.
        .args([
            "--show-only",
            "templates/rbac-operator.yaml",
            "--show-only",
            "templates/rbac-dns.yaml",
        ])
        .arg(workspace_root().join("charts/mvdns"))
        .output()
        .await?;
    if !rendered.status.success() {
        bail!("helm template failed: {}", String::from_utf8_lossy(&rendered.stderr));
    }
    // Cluster-scoped objects get the test namespace as owner, so the garbage collector
    // removes them with it instead of leaving ClusterRoles behind after every run.
    let ns = Api::<Namespace>::all(env.admin_client().await?).get(namespace).await?;
    let owner = json!([{"apiVersion": "v1", "kind": "Namespace", "name": namespace,
                        "uid": ns.metadata.uid.context("namespace without uid")?}]);
    let mut items = Vec::new();
    for document in serde_yaml::Deserializer::from_slice(&rendered.stdout) {
        let mut object = serde_json::Value::deserialize(document)?;
        if object.is_null() {
            continue;
        }
        if matches!(object["kind"].as_str(), Some("ClusterRole" | "ClusterRoleBinding")) {
            object["metadata"]["ownerReferences"] = owner.clone();
        }
        items.push(object);
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    let manifest = env.dir.join(format!("chart-{namespace}.json"));
    std::fs::write(&manifest, serde_json::to_vec(&list)?)?;
    env.kubectl(&["apply", "-f", &manifest.to_string_lossy()]).await?;
    Ok(())
}

/// The chart's name for a component's ServiceAccount in a release named like its namespace.
pub fn chart_service_account(namespace: &str, component: &str) -> String {
    format!("{namespace}-{component}")
}

/// A kubeconfig file (and a client) that authenticates as a ServiceAccount with a real,
/// API-server-issued token: the binaries run with exactly the rights the chart grants.
pub async fn service_account_kubeconfig(env: &TestEnv, namespace: &str, service_account: &str) -> Result<PathBuf> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let accounts: Api<ServiceAccount> = Api::namespaced(env.admin_client().await?, namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let issued = accounts
        .create_token_request(service_account, &PostParams::default(), &request)
        .await?;
    let token = issued.status.context("token request without status")?.token;
    let admin = std::fs::read_to_string(env.admin_kubeconfig())?;
    let mut kubeconfig: serde_yaml::Value = serde_yaml::from_str(&admin)?;
    kubeconfig["users"][0]["user"] = serde_yaml::to_value(BTreeMap::from([("token", token)]))?;
    let path = env.dir.join(format!("{namespace}-{service_account}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)?;
    Ok(path)
}
