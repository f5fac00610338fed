//! The path an in-cluster pod takes: CoreDNS (built from its Go module,
//! `hack/coredns-build.sh`) with the chart's stub-domain block and the `kubernetes`
//! plugin on the test control plane. A record-set name asked of CoreDNS is forwarded to
//! the mvdns server and answered with the healthy pod IPs; a Service name is answered by
//! the kubernetes plugin of the same CoreDNS.
//!
//! Two things differ from a cluster, and only these: CoreDNS listens on a free loopback
//! port instead of 53 (tests never bind fixed ports, and 53 may be taken), and the
//! stub block's `forward . <mvdns Service IP>` goes to the test DNS server's
//! 127.0.0.1:<port> instead. This control plane has no kube-proxy (and no nodes that
//! route), so a ClusterIP leads nowhere; in a cluster, kube-proxy turns the Service IP on
//! port 53 into a DNS pod's 5353. The rest of the block is used exactly as rendered.
//!
//! CoreDNS reads the API server as a ServiceAccount bound to the rules of kubeadm's
//! `system:coredns` ClusterRole, not as admin.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::Api;
use kube::api::PostParams;
use mvdns_api::MultiValueRecordSet;
use mvdns_tests::dns::*;
use mvdns_tests::operator::*;
use mvdns_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);
const ZONE: &str = "example.internal.";
/// The Service IP the stub block is rendered with, then replaced (see the module docs).
const RENDERED_IP: &str = "127.0.0.1";

/// The CoreDNS binary: `MVDNS_COREDNS` (hack/test.sh sets it), else hack/coredns-build.sh,
/// which builds it on first use (minutes; its progress goes to stderr) and then prints
/// the cached path at once.
async fn coredns_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("MVDNS_COREDNS") {
        return Ok(PathBuf::from(path));
    }
    let output = tokio::process::Command::new(workspace_root().join("hack/coredns-build.sh"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running hack/coredns-build.sh")?;
    ensure!(
        output.status.success(),
        "hack/coredns-build.sh failed (see its output above)"
    );
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// The chart's CoreDNS stub-domain block for `zone`, as the chart renders it.
async fn rendered_stub_block(env: &TestEnv, namespace: &str, zone: &str) -> Result<String> {
    let output = tokio::process::Command::new(env.bin_dir.join("helm"))
        .args(["template", namespace, "--namespace", namespace])
        .args(["--set", "coredns.stubDomain.enabled=true"])
        .args(["--set", &format!("coredns.serviceIP={RENDERED_IP}")])
        .args(["--set", &format!("dns.zones={{{zone}}}")])
        .args(["--show-only", "templates/coredns-stub.yaml"])
        .arg(workspace_root().join("charts/mvdns"))
        .output()
        .await?;
    ensure!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config_map: serde_yaml::Value = serde_yaml::from_slice(&output.stdout)?;
    ensure!(
        config_map["kind"] == "ConfigMap",
        "coredns-stub.yaml renders no ConfigMap"
    );
    let block = config_map["data"]["mvdns.server"]
        .as_str()
        .context("the stub ConfigMap has no data key mvdns.server (the chart's default)")?;
    Ok(block.to_owned())
}

/// The rendered block with the two local substitutions: CoreDNS's port, and the test DNS
/// server's address as the forward target. Fails if the block does not have the lines
/// the substitutions expect, so a chart change cannot silently bypass them.
fn localize_stub_block(block: &str, zone: &str, coredns_port: u16, mvdns: SocketAddr) -> Result<String> {
    let header = format!("{}:53 {{", zone.trim_end_matches('.'));
    let forward = format!("forward . {RENDERED_IP}");
    let lines: Vec<&str> = block.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    ensure!(
        lines == [header.as_str(), forward.as_str(), "}"],
        "unexpected stub block from the chart:\n{block}"
    );
    Ok(block
        .replace(&header, &format!("{}:{coredns_port} {{", zone.trim_end_matches('.')))
        .replace(&forward, &format!("forward . {mvdns}")))
}

/// A free loopback port for both UDP and TCP (CoreDNS binds both).
fn free_port() -> Result<u16> {
    for _ in 0..20 {
        let udp = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = udp.local_addr()?.port();
        if std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP")
}

/// A ServiceAccount `coredns` in `namespace` with the rules of kubeadm's `system:coredns`
/// ClusterRole (bound cluster-wide, as in a cluster). The ClusterRole and its binding are
/// owned by the test namespace, so the garbage collector deletes them with it.
async fn coredns_identity(env: &TestEnv, namespace: &str) -> Result<PathBuf> {
    let client = env.admin_client().await?;
    let ns = Api::<Namespace>::all(client.clone()).get(namespace).await?;
    let owner = json!([{"apiVersion": "v1", "kind": "Namespace", "name": namespace,
                        "uid": ns.metadata.uid.context("namespace without uid")?}]);
    let name = format!("{namespace}-coredns");
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "ownerReferences": owner},
         "rules": [
            {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "ownerReferences": owner},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": namespace}]},
    ]});
    let manifest = env.dir.join(format!("coredns-rbac-{namespace}.json"));
    std::fs::write(&manifest, serde_json::to_vec(&objects)?)?;
    env.kubectl(&["apply", "-f", &manifest.to_string_lossy()]).await?;
    service_account_kubeconfig(env, namespace, "coredns").await
}

/// CoreDNS as a child process, killed when dropped.
struct CoreDns {
    address: SocketAddr,
    child: tokio::process::Child,
    log: PathBuf,
}

impl CoreDns {
    async fn start(binary: &PathBuf, corefile: &str, port: u16, log: PathBuf) -> Result<Self> {
        let conf = log.with_extension("Corefile");
        std::fs::write(&conf, corefile)?;
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .arg("-conf")
            .arg(&conf)
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            address: (Ipv4Addr::LOCALHOST, port).into(),
            child,
            log,
        })
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks over UDP until `done` holds (every 100 ms, at most `limit`); unlike
    /// `wait_answer` it tolerates no answer at all (CoreDNS still starting) and a dead
    /// CoreDNS ends the wait with its log.
    async fn wait(&mut self, ask: &Ask, limit: Duration, done: impl Fn(&Message) -> bool) -> Result<Message> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("coredns exited ({status}):\n{}", self.log_text());
            }
            let last = udp(self.address, ask).await;
            if let Ok(response) = &last
                && done(response)
            {
                return last;
            }
            if Instant::now() > deadline {
                let last = last.map_or_else(|e| e.to_string(), |m| m.to_string());
                bail!(
                    "CoreDNS: {} {} not as expected within {limit:?}; last: {last}\ncoredns log:\n{}",
                    ask.name,
                    ask.record_type,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) -> Result<()> {
        self.child.start_kill()?;
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .context("coredns did not exit within 10s of SIGKILL")??;
        Ok(())
    }
}

fn ips(pods: &[Pod]) -> Vec<String> {
    pod_ips(pods).into_iter().collect()
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn coredns_forwards_the_stub_domain_and_resolves_services() -> Result<()> {
    let started = Instant::now();
    let binary = coredns_binary().await?;
    let Fixture { env, ns } = fixture("coredns").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &[ZONE]).await?;
    dns.wait_synced().await?;

    // Three ready pods behind a record set, and a ClusterIP Service.
    let pod_api: Api<Pod> = ns.api();
    let specs: Vec<PodSpec> = (0..3)
        .map(|i| {
            PodSpec::new(format!("web-{i}"))
                .label("app", "web")
                .on_node(&format!("kwok-node-{i}"))
        })
        .collect();
    let pods = create_ready_pods(&pod_api, &specs).await?;
    let web = format!("web.{}.{ZONE}", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": web, "type": "A", "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"type": "ClusterIP", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
    }))?;
    let service = ns.api::<Service>().create(&PostParams::default(), &service).await?;
    let cluster_ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .context("Service without a ClusterIP")?;

    // The Corefile: the chart's stub block (localized), and the main server block of a
    // cluster's Corefile with the kubernetes plugin on this control plane.
    let port = free_port()?;
    let stub = localize_stub_block(
        &rendered_stub_block(&env, &ns.name, ZONE).await?,
        ZONE,
        port,
        dns.address,
    )?;
    let kubeconfig = coredns_identity(&env, &ns.name).await?;
    let corefile = format!(
        ".:{port} {{
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {} testenv
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
}}
{stub}",
        kubeconfig.display()
    );
    println!("Corefile:\n{corefile}");
    let mut coredns = CoreDns::start(
        &binary,
        &corefile,
        port,
        env.dir.join(format!("coredns-{}.log", ns.name)),
    )
    .await?;

    // 1. The kubernetes plugin: the Service's name gives its ClusterIP (CoreDNS serves
    //    once its informers have synced).
    let service_name = format!("web.{}.svc.cluster.local.", ns.name);
    let first = Instant::now();
    let answer = coredns
        .wait(&Ask::new(&service_name, RecordType::A), LIMIT, |m| {
            !m.answers.is_empty()
        })
        .await?;
    assert_eq!(answer_data(&answer), [cluster_ip.as_str()], "{service_name}");
    assert!(
        answer.metadata.authoritative,
        "the kubernetes plugin is authoritative for cluster.local"
    );
    println!("CoreDNS up, {service_name} -> {cluster_ip} after {:?}", first.elapsed());

    // 2. The stub domain: the record-set name is forwarded to mvdns, which answers with
    //    every healthy pod IP, over UDP and TCP to CoreDNS.
    let ask = Ask::new(&web, RecordType::A);
    let want = ips(&pods);
    let answer = coredns.wait(&ask, LIMIT, |m| answer_data(m) == want).await?;
    assert!(
        answer.metadata.authoritative,
        "the answer is mvdns's authoritative one, passed through"
    );
    assert_eq!(answer_data(&udp(dns.address, &ask).await?), want, "mvdns itself agrees");
    assert_eq!(
        answer_data(&tcp(coredns.address, &ask).await?),
        want,
        "over TCP to CoreDNS"
    );
    // dig, an independent client, through CoreDNS.
    let dug = dig(coredns.address, &["+short", &web, "A"]).await?;
    let mut dug: Vec<String> = dug.lines().map(String::from).collect();
    dug.sort();
    assert_eq!(dug, want, "dig through CoreDNS");
    // A name in the zone that does not exist: mvdns's NXDOMAIN with its SOA, passed through.
    let missing = udp(
        coredns.address,
        &Ask::new(&format!("nothing.{}.{ZONE}", ns.name), RecordType::A),
    )
    .await?;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        missing.authorities.first().map(|r| r.record_type()),
        Some(RecordType::SOA)
    );

    // 3. One pod unready: gone from CoreDNS's answer (the stub block has no cache, so
    //    only the operator and the mvdns watch stand between).
    let flipped = Instant::now();
    let down = pods[0].metadata.name.clone().context("pod without name")?;
    set_pod_ready(&pod_api, &down, false).await?;
    let down_ip = pod_ip(&pods[0]).context("pod without IP")?.to_owned();
    let want: Vec<String> = want.into_iter().filter(|ip| *ip != down_ip).collect();
    coredns.wait(&ask, LIMIT, |m| answer_data(m) == want).await?;
    println!(
        "pod {down} unready: gone from CoreDNS's answer {:?} after the flip",
        flipped.elapsed()
    );
    for _ in 0..20 {
        assert_eq!(answer_data(&udp(coredns.address, &ask).await?), want);
    }
    // Back to ready: back in the answer.
    set_pod_ready(&pod_api, &down, true).await?;
    let all = ips(&pods);
    coredns.wait(&ask, LIMIT, |m| answer_data(m) == all).await?;

    // The record set's status is what was served.
    let record_sets: Api<MultiValueRecordSet> = ns.api();
    let status = wait_status(&record_sets, "web", LIMIT, |s| s.healthy_count == 3).await?;
    assert_eq!(
        healthy_values(&status).into_iter().collect::<BTreeSet<_>>(),
        all.iter().cloned().collect()
    );

    coredns.stop().await?;
    dns.stop().await;
    operator.stop().await;
    println!("CoreDNS e2e done in {:?}", started.elapsed());
    Ok(())
}
