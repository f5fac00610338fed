//! The user's path on a real node (`hack/node.sh`): kubelet, kube-proxy, containerd, runc
//! and the CNI bridge on this machine, joined to a control plane of their own.
//!
//! One test, in phases that build on each other:
//! 1. the host's state is recorded, then `hack/node.sh up` starts the plane and the node;
//! 2. `helm install` of `charts/mvdns`, overriding only the images (built here from the
//!    static binaries) and `pullPolicy: Never`; both Deployments must become Ready through
//!    their own probes, on the real node; `helm test --logs` passes; the leader's pod,
//!    deleted, hands the Lease to the other;
//! 3. a Deployment of backend pods (busybox `httpd` with an HTTP readiness probe) and a
//!    record set over them; the mvdns Service's ClusterIP answers the pods' IPs over UDP and
//!    TCP through kube-proxy, and a client pod resolves the name with glibc's `getent` and
//!    busybox `nslookup` through its own /etc/resolv.conf;
//!    then `helm upgrade` enables the chart's CoreDNS stub-domain block, and a pod with the
//!    default dnsPolicy resolves the name through the node's CoreDNS (the kubelet's
//!    clusterDNS), which still answers the cluster's Service names;
//! 4. backends' probes are broken one at a time: the IP leaves that pod's answers, then
//!    comes back when the probe passes again (20 flips; p50 and worst printed beside the
//!    EndpointSlice's);
//! 5. mvdns scaled to zero: the cluster's Service names still resolve through CoreDNS;
//! 6. the sidecar shape: the chart's patch puts mvdns-server into the CoreDNS pod, the zone
//!    is forwarded to 127.0.0.1, and with the mvdns Deployment still at zero the name
//!    resolves again; no lookup of a Service name fails during CoreDNS's rollout;
//! 7. `hack/node.sh down`, and the host's state must be what it was before `up`.
//!
//! The node needs root and Debian's containerd, runc and CNI plugins; `hack/node.sh
//! preflight` says why it cannot start, and this test then fails with that reason.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use hickory_proto::op::Message;
use hickory_proto::rr::RecordType;
use mvdns_tests::dns::{Ask, answer_data, tcp, udp_from};
use mvdns_tests::{TestEnv, workspace_root};
use serde_json::Value;

const ZONE: &str = "mv.test.";
const NAME: &str = "web.mv.test";
const NAMESPACE: &str = "shop";
const BACKENDS: usize = 3;
/// kube-system/kube-dns, the node's CoreDNS (hack/node.sh).
const CLUSTER_DNS: &str = "10.96.0.10";
const LIMIT: Duration = Duration::from_secs(30);

/// Probe flips in phase 4 (MVDNS_NODE_FLIPS, default 20: the issue's p50 and worst).
fn flips() -> usize {
    std::env::var("MVDNS_NODE_FLIPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}

/// Times from breaking (mending) a probe until the EndpointSlice and the client changed.
#[derive(Default)]
struct Flips {
    slice_out: Vec<Duration>,
    client_out: Vec<Duration>,
    slice_back: Vec<Duration>,
    client_back: Vec<Duration>,
}

impl Flips {
    fn report(&self) -> String {
        let line = |what: &str, times: &[Duration]| {
            let mut sorted = times.to_vec();
            sorted.sort();
            let p50 = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
            let worst = sorted.last().copied().unwrap_or_default();
            format!(
                "  {what:<44} p50 {:>6.0} ms, worst {:>6.0} ms",
                p50.as_secs_f64() * 1e3,
                worst.as_secs_f64() * 1e3
            )
        };
        [
            format!(
                "{} probe flips (the client polls with kubectl exec getent, about 0.2 s a call):",
                self.slice_out.len()
            ),
            line("probe broken -> EndpointSlice not ready", &self.slice_out),
            line("probe broken -> client's answers without it", &self.client_out),
            line("probe mended -> EndpointSlice ready", &self.slice_back),
            line("probe mended -> client's answers with it", &self.client_back),
        ]
        .join("\n")
    }
}

fn node_dir() -> PathBuf {
    let root = std::fs::canonicalize(workspace_root()).unwrap_or_else(|_| workspace_root());
    std::env::var_os("MVDNS_NODE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/node"))
}

/// The static release binaries the images are made of (`hack/build-static.sh`, which
/// hack/test.sh runs first: cargo must not be run again from inside `cargo test`).
fn static_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("MVDNS_STATIC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace_root().join("target"), PathBuf::from);
            target.join("x86_64-unknown-linux-gnu/release")
        });
    for binary in ["mvdns-operator", "mvdns-server"] {
        ensure!(
            dir.join(binary).exists(),
            "{} is missing: run hack/build-static.sh first",
            dir.join(binary).display()
        );
    }
    Ok(dir)
}

/// Runs `hack/node.sh ARGS` and returns its stdout; its log goes to the test's stderr.
fn node_sh(args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(workspace_root().join("hack/node.sh"))
        .args(args)
        .env("MVDNS_NODE_DIR", node_dir())
        .env("MVDNS_STATIC_DIR", static_dir()?)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    ensure!(out.status.success(), "hack/node.sh {args:?} failed ({})", out.status);
    Ok(String::from_utf8(out.stdout)?)
}

/// Brings the node down when the test ends, passed or not: the machine is left as found.
struct NodeUp;

impl Drop for NodeUp {
    fn drop(&mut self) {
        if let Err(error) = node_sh(&["down"]) {
            eprintln!("hack/node.sh down: {error:#}");
        }
    }
}

/// The lines of one snapshot that differ from another, each marked - (gone) or + (new).
fn snapshot_diff(before: &str, after: &str) -> Vec<String> {
    let before: BTreeSet<&str> = before.lines().collect();
    let after: BTreeSet<&str> = after.lines().collect();
    let gone = before.difference(&after).map(|line| format!("- {line}"));
    let new = after.difference(&before).map(|line| format!("+ {line}"));
    gone.chain(new).collect()
}

/// One UDP query from the host to a Service IP. The source is the kernel's choice (the
/// bridge's address): from 127.0.0.1 the packet to the Service CIDR would be a martian.
async fn udp(server: SocketAddr, ask: &Ask) -> Result<Message> {
    udp_from(IpAddr::V4(Ipv4Addr::UNSPECIFIED), server, ask).await
}

async fn kubectl(env: &TestEnv, args: &[&str]) -> Result<String> {
    env.kubectl(args).await
}

async fn helm(env: &TestEnv, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(env.bin_dir.join("helm"))
        .arg("--kubeconfig")
        .arg(env.admin_kubeconfig())
        .args(args)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "helm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// `helm upgrade --reuse-values` of the release with `sets` (`key=value`) added, waiting.
async fn helm_upgrade(env: &TestEnv, sets: &[&str]) -> Result<String> {
    let chart = workspace_root().join("charts/mvdns");
    let mut args = vec![
        "upgrade",
        "mvdns",
        chart.to_str().context("chart path")?,
        "-n",
        "mvdns-system",
        "--reuse-values",
    ];
    for set in sets {
        args.extend_from_slice(&["--set", set]);
    }
    args.extend_from_slice(&["--wait", "--timeout", "120s"]);
    helm(env, &args).await
}

/// `kubectl exec` in the client pod; returns whether it succeeded and its stdout.
async fn exec(env: &TestEnv, pod: &str, command: &[&str]) -> Result<(bool, String)> {
    let mut args = vec!["-n", NAMESPACE, "exec", pod, "--"];
    args.extend_from_slice(command);
    let (success, stdout, _) = env.kubectl_status(&args).await?;
    Ok((success, stdout))
}

/// The IPv4 addresses `getent ahosts NAME` prints (one line per address and socket type).
fn getent_addresses(output: &str) -> BTreeSet<String> {
    output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|address| address.parse::<Ipv4Addr>().is_ok())
        .map(str::to_owned)
        .collect()
}

/// The addresses busybox `nslookup NAME SERVER` prints after the "Name:" line.
fn nslookup_addresses(output: &str) -> BTreeSet<String> {
    output
        .split("Name:")
        .skip(1)
        .flat_map(|answer| answer.lines().filter_map(|line| line.strip_prefix("Address:")))
        .map(|address| address.trim().to_owned())
        .filter(|address| address.parse::<Ipv4Addr>().is_ok())
        .collect()
}

async fn json(env: &TestEnv, args: &[&str]) -> Result<Value> {
    let mut args = args.to_vec();
    args.extend_from_slice(&["-o", "json"]);
    Ok(serde_json::from_str(&kubectl(env, &args).await?)?)
}

/// Pod name -> IP of the Ready backend pods.
async fn ready_backends(env: &TestEnv) -> Result<Vec<(String, String)>> {
    let pods = json(env, &["-n", NAMESPACE, "get", "pods", "-l", "app=web"]).await?;
    let mut ready = Vec::new();
    for pod in pods["items"].as_array().context("no items")? {
        let is_ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if let (true, Some(name), Some(ip)) = (
            is_ready,
            pod["metadata"]["name"].as_str(),
            pod["status"]["podIP"].as_str(),
        ) {
            ready.push((name.to_owned(), ip.to_owned()));
        }
    }
    Ok(ready)
}

/// The ready addresses of the backends' EndpointSlice (what kube-proxy would route to).
async fn endpoint_slice_ready(env: &TestEnv) -> Result<BTreeSet<String>> {
    let slices = json(
        env,
        &[
            "-n",
            NAMESPACE,
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )
    .await?;
    let mut ready = BTreeSet::new();
    for slice in slices["items"].as_array().context("no items")? {
        for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
            if endpoint["conditions"]["ready"] == true {
                ready.extend(
                    endpoint["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(str::to_owned),
                );
            }
        }
    }
    Ok(ready)
}

/// The holder of the operator's leader-election Lease (the chart's default name).
async fn lease_holder(env: &TestEnv) -> Result<String> {
    let lease = json(env, &["-n", "mvdns-system", "get", "lease", "mvdns-operator"]).await?;
    Ok(lease["spec"]["holderIdentity"].as_str().unwrap_or_default().to_owned())
}

/// Polls `probe` every 100 ms until it returns true, at most `limit`; returns the time taken.
async fn time_until<F, Fut>(limit: Duration, what: &str, mut probe: F) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let start = Instant::now();
    loop {
        if probe().await? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            bail!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backends, the record sets and the resident client (also the demo's).
const REAL_PODS: &str = "examples/real-pods.yaml";

/// The client: resolv.conf names the mvdns Service alone (CoreDNS as the cluster's DNS comes
/// in a later step), so every lookup goes the pod's libc -> ClusterIP -> kube-proxy -> mvdns.
fn client_yaml(dns_ip: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: shop}}
spec:
  nodeSelector: {{mvdns.io/node: real}}
  securityContext: {{runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534}}
  dnsPolicy: None
  dnsConfig:
    nameservers: [{dns_ip}]
    options: [{{name: ndots, value: "1"}}, {{name: timeout, value: "1"}}, {{name: attempts, value: "2"}}]
  containers:
  - name: client
    image: mvdns.invalid/testbox:dev
    imagePullPolicy: Never
    command: [sleep, "3600"]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn the_chart_on_a_real_node_serves_pods_resolving_through_their_own_resolver() -> Result<()> {
    if let Err(error) = node_sh(&["preflight"]) {
        bail!("the real node cannot start on this machine: {error:#} (hack/node.sh preflight says why above)");
    }
    // 1. The host before, then the node.
    let before = node_sh(&["snapshot"])?;
    let guard = NodeUp;
    node_sh(&["up"])?;
    let env = {
        let dir = node_dir().join("plane");
        let bin_dir = PathBuf::from(std::fs::read_to_string(dir.join("bin-dir"))?.trim());
        TestEnv { dir, bin_dir }
    };
    phases(&env).await?;

    // 7. Down, and the host as it was.
    drop(guard);
    let after = node_sh(&["snapshot"])?;
    let diff = snapshot_diff(&before, &after);
    ensure!(
        diff.is_empty(),
        "hack/node.sh down left the host changed:\n{}",
        diff.join("\n")
    );
    Ok(())
}

async fn phases(env: &TestEnv) -> Result<()> {
    // 2. The chart as users install it.
    let root = workspace_root();
    kubectl(
        env,
        &["apply", "--server-side", "-f", &root.join("crds").to_string_lossy()],
    )
    .await?;
    let installed = Instant::now();
    helm(
        env,
        &[
            "install",
            "mvdns",
            &root.join("charts/mvdns").to_string_lossy(),
            "-n",
            "mvdns-system",
            "--create-namespace",
            "--set",
            "operator.image.repository=ghcr.io/mvdns/mvdns-operator",
            "--set",
            "operator.image.tag=node",
            "--set",
            "operator.image.pullPolicy=Never",
            "--set",
            "dns.image.repository=ghcr.io/mvdns/mvdns-server",
            "--set",
            "dns.image.tag=node",
            "--set",
            "dns.image.pullPolicy=Never",
            "--set",
            &format!("dns.zones={{{ZONE}}}"),
            "--set",
            "tests.image=mvdns.invalid/testbox:dev",
            "--wait",
            "--timeout",
            "180s",
        ],
    )
    .await?;
    eprintln!("helm install: both Deployments Ready in {:?}", installed.elapsed());
    let wide = kubectl(env, &["get", "pods", "-A", "-o", "wide"]).await?;
    eprintln!("kubectl get pods -A -o wide:\n{wide}");
    let pods = json(env, &["-n", "mvdns-system", "get", "pods"]).await?;
    let items = pods["items"].as_array().context("no items")?;
    ensure!(
        items.len() == 4,
        "expected 2 operator and 2 DNS pods, got {}",
        items.len()
    );
    for pod in items {
        ensure!(
            pod["spec"]["nodeName"] == "mvdns-node",
            "{} is not on the real node",
            pod["metadata"]["name"]
        );
        let ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        ensure!(ready, "{} is not Ready", pod["metadata"]["name"]);
    }

    // `helm test`: the chart's own test pod asks the Service over UDP and TCP (its image, a
    // busybox and dig assembled here, is the only override).
    let tested = helm(
        env,
        &["test", "mvdns", "-n", "mvdns-system", "--logs", "--timeout", "120s"],
    )
    .await?;
    ensure!(
        tested.contains("Phase:          Succeeded"),
        "helm test did not succeed:\n{tested}"
    );
    let summary: Vec<&str> = tested
        .lines()
        .filter(|l| l.starts_with("Phase:") || l.starts_with("ok: "))
        .collect();
    eprintln!("helm test mvdns --logs:\n{}", summary.join("\n"));

    // Two operator pods elect a leader; the leader's pod deleted, the other takes over.
    let holder = lease_holder(env).await?;
    let handover = Instant::now();
    kubectl(env, &["-n", "mvdns-system", "delete", "pod", &holder, "--wait=false"]).await?;
    let holder = &holder;
    time_until(
        Duration::from_secs(60),
        "another operator pod holding the lease",
        || async move {
            let successor = lease_holder(env).await?;
            Ok(!successor.is_empty() && successor != *holder)
        },
    )
    .await?;
    let successor = lease_holder(env).await?;
    eprintln!(
        "leader {holder} deleted: {successor} holds the lease after {:?}",
        handover.elapsed()
    );

    // 3. Backends, a record set, a client.
    kubectl(env, &["apply", "-f", &root.join(REAL_PODS).to_string_lossy()]).await?;
    let dns_ip = json(env, &["-n", "mvdns-system", "get", "service", "mvdns"]).await?["spec"]["clusterIP"]
        .as_str()
        .context("the mvdns Service has no ClusterIP")?
        .to_owned();
    let client_file = node_dir().join("client.yaml");
    std::fs::write(&client_file, client_yaml(&dns_ip))?;
    kubectl(env, &["apply", "-f", &client_file.to_string_lossy()]).await?;
    kubectl(
        env,
        &[
            "-n",
            NAMESPACE,
            "wait",
            "--for=condition=Ready",
            "pod/client",
            "--timeout=60s",
        ],
    )
    .await?;
    time_until(Duration::from_secs(60), "all backends Ready", || async {
        Ok(ready_backends(env).await?.len() == BACKENDS)
    })
    .await?;
    let backends = ready_backends(env).await?;
    let all: BTreeSet<String> = backends.iter().map(|(_, ip)| ip.clone()).collect();

    // The ClusterIP from the host, through kube-proxy's nftables DNAT, over UDP and TCP.
    let server = SocketAddr::new(dns_ip.parse()?, 53);
    let ask = Ask::new(&format!("{NAME}."), RecordType::A);
    time_until(
        Duration::from_secs(30),
        "the ClusterIP answering the backends over UDP",
        || async {
            Ok(udp(server, &ask)
                .await
                .map(|m| answer_data(&m).into_iter().collect::<BTreeSet<_>>() == all)
                .unwrap_or(false))
        },
    )
    .await?;
    let over_tcp: BTreeSet<String> = answer_data(&tcp(server, &ask).await?).into_iter().collect();
    ensure!(
        over_tcp == all,
        "over TCP the ClusterIP answered {over_tcp:?}, not {all:?}"
    );

    // The client pod's own resolvers: glibc (getent) and busybox (nslookup).
    let (ok, out) = exec(env, "client", &["getent", "ahosts", NAME]).await?;
    ensure!(
        ok && getent_addresses(&out) == all,
        "getent ahosts {NAME} in the client pod gave {out:?}, expected {all:?}"
    );
    eprintln!("client pod, getent ahosts {NAME} with {BACKENDS} Ready backends:\n{out}");
    let (ok, out) = exec(env, "client", &["getent", "hosts", NAME]).await?;
    ensure!(
        ok && all.iter().any(|ip| out.starts_with(ip.as_str())),
        "getent hosts {NAME} gave {out:?}"
    );
    let (ok, out) = exec(env, "client", &["getent", "ahosts", "alias.mv.test"]).await?;
    ensure!(
        ok && getent_addresses(&out) == all,
        "getent ahosts alias.mv.test (CNAME to {NAME}) gave {out:?}, expected {all:?}"
    );
    eprintln!("client pod, getent ahosts alias.mv.test (a CNAME to {NAME}):\n{out}");
    let (ok, out) = exec(env, "client", &["nslookup", NAME, &dns_ip]).await?;
    ensure!(
        ok && nslookup_addresses(&out) == all,
        "nslookup {NAME} in the client pod gave {out:?}, expected {all:?}"
    );

    // 3b. The cluster DNS, as pods use it: `helm upgrade` turns the chart's stub-domain
    // block on, written to kube-system/coredns-custom, which the node's CoreDNS imports.
    helm_upgrade(
        env,
        &[
            "coredns.stubDomain.enabled=true",
            "coredns.stubDomain.configMap.namespace=kube-system",
            "coredns.stubDomain.configMap.name=coredns-custom",
        ],
    )
    .await?;
    kubectl(
        env,
        &[
            "-n",
            NAMESPACE,
            "wait",
            "--for=condition=Ready",
            "pod/resident",
            "--timeout=60s",
        ],
    )
    .await?;
    let (_, resolv) = exec(env, "resident", &["cat", "/etc/resolv.conf"]).await?;
    ensure!(
        resolv.contains(&format!("nameserver {CLUSTER_DNS}")),
        "the kubelet gave the pod {resolv:?}"
    );
    // The kubelet refreshes the ConfigMap volume within its sync period, CoreDNS's reload
    // within 2 s.
    let through_coredns = time_until(Duration::from_secs(90), "the stub domain in CoreDNS", || async {
        let (_, out) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
        Ok(getent_addresses(&out) == all)
    })
    .await?;
    let (_, out) = exec(env, "resident", &["getent", "ahosts", "alias.mv.test"]).await?;
    ensure!(
        getent_addresses(&out) == all,
        "through CoreDNS, getent ahosts alias.mv.test gave {out:?}"
    );
    let (ok, out) = exec(env, "resident", &["getent", "hosts", "web.shop.svc.cluster.local"]).await?;
    ensure!(
        ok && !out.trim().is_empty(),
        "CoreDNS does not answer the Service name web.shop.svc.cluster.local: {out:?}"
    );
    eprintln!(
        "resident pod (dnsPolicy ClusterFirst, {resolv:?}): {NAME} through CoreDNS's stub domain {through_coredns:?} after the upgrade"
    );
    // SRV through the same path: one record per Ready pod, on the pods' port.
    let (ok, out) = exec(env, "resident", &["nslookup", "-type=SRV", "_http._tcp.web.mv.test"]).await?;
    let srv = out
        .lines()
        .filter(|line| line.contains("service =") && line.contains(" 8080 "))
        .count();
    ensure!(
        ok && srv == BACKENDS,
        "nslookup -type=SRV _http._tcp.web.mv.test gave {out:?}"
    );
    // A CNAME out of the zones (to the cluster's Service name): mvdns answers the CNAME
    // alone; CoreDNS's forward does not chase it, and glibc does not ask again for the
    // target, so the pod gets no address. Asserted as documented (docs/real-node.md): if
    // this ever resolves, the documentation is stale.
    let (ok, out) = exec(env, "resident", &["getent", "ahosts", "svc.mv.test"]).await?;
    ensure!(
        !ok && getent_addresses(&out).is_empty(),
        "getent ahosts svc.mv.test (CNAME out of the zone) gave {out:?}"
    );
    let (_, cname) = exec(env, "resident", &["nslookup", "-type=CNAME", "svc.mv.test"]).await?;
    ensure!(
        cname.contains("web.shop.svc.cluster.local"),
        "nslookup -type=CNAME svc.mv.test gave {cname:?}"
    );
    eprintln!(
        "out-of-zone CNAME svc.mv.test -> web.shop.svc.cluster.local: getent ahosts fails (no address); nslookup shows the CNAME"
    );

    // 4. Backends' probes break, one at a time: out of the answers, then back. The client is
    // the resident pod, through CoreDNS, as an application in the cluster asks.
    let mut times = Flips::default();
    for flip in 0..flips() {
        let (pod, ip) = backends[flip % backends.len()].clone();
        let (ok, _) = exec(env, &pod, &["rm", "/tmp/www/ready"]).await?;
        ensure!(ok, "cannot break {pod}'s probe");
        let slice = time_until(LIMIT, "the EndpointSlice dropping the pod", || async {
            Ok(!endpoint_slice_ready(env).await?.contains(&ip))
        });
        let client = time_until(LIMIT, "the client's answers dropping the pod", || async {
            let (_, out) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
            let addresses = getent_addresses(&out);
            Ok(!addresses.is_empty() && !addresses.contains(&ip))
        });
        let (slice, client) = tokio::try_join!(slice, client)?;
        times.slice_out.push(slice);
        times.client_out.push(client);
        if flip == 0 {
            let (_, out) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
            eprintln!("probe of {pod} ({ip}) broken; the resident pod's getent ahosts {NAME}:\n{out}");
        }

        let (ok, _) = exec(env, &pod, &["sh", "-c", "echo ok > /tmp/www/ready"]).await?;
        ensure!(ok, "cannot mend {pod}'s probe");
        let slice = time_until(LIMIT, "the EndpointSlice taking the pod back", || async {
            Ok(endpoint_slice_ready(env).await?.contains(&ip))
        });
        let client = time_until(LIMIT, "the client's answers taking the pod back", || async {
            let (_, out) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
            Ok(getent_addresses(&out) == all)
        });
        let (slice, client) = tokio::try_join!(slice, client)?;
        times.slice_back.push(slice);
        times.client_back.push(client);
    }
    eprintln!("{}", times.report());

    // 5. mvdns gone: the cluster's own names still resolve through CoreDNS; only the mvdns
    // zone fails.
    kubectl(
        env,
        &["-n", "mvdns-system", "scale", "deployment/mvdns-dns", "--replicas=0"],
    )
    .await?;
    kubectl(
        env,
        &[
            "-n",
            "mvdns-system",
            "wait",
            "--for=delete",
            "pod",
            "-l",
            "app.kubernetes.io/component=dns",
            "--timeout=60s",
        ],
    )
    .await?;
    let (ok, out) = exec(env, "resident", &["getent", "hosts", "web.shop.svc.cluster.local"]).await?;
    ensure!(
        ok && !out.trim().is_empty(),
        "with mvdns gone, the Service name did not resolve: {out:?}"
    );
    let (ok, _) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
    ensure!(!ok, "with mvdns gone, {NAME} still resolved");
    let coredns = json(env, &["-n", "kube-system", "get", "deployment", "coredns"]).await?;
    ensure!(
        coredns["status"]["readyReplicas"] == 1,
        "CoreDNS is not Ready with mvdns gone: {}",
        coredns["status"]
    );
    eprintln!("mvdns scaled to 0: web.shop.svc.cluster.local still resolves, {NAME} does not, CoreDNS Ready");

    // 6. The sidecar shape: mvdns-server in the CoreDNS pod, the zone forwarded to
    // 127.0.0.1. The mvdns Deployment stays at zero, so an answer can only come from the
    // sidecar. The chart renders the block, the RBAC and the patch; the patch is applied
    // with the command the chart documents.
    helm_upgrade(env, &["coredns.sidecar.enabled=true"]).await?;
    let patch = kubectl(
        env,
        &[
            "-n",
            "mvdns-system",
            "get",
            "configmap",
            "mvdns-coredns-sidecar",
            "-o",
            "jsonpath={.data.patch\\.yaml}",
        ],
    )
    .await?;
    ensure!(patch.contains("--listen=127.0.0.1:"), "the rendered patch: {patch}");
    kubectl(
        env,
        &["-n", "kube-system", "patch", "deployment", "coredns", "--patch", &patch],
    )
    .await?;
    // While the new CoreDNS pod (with mvdns beside it) starts and the old one goes, the
    // cluster's own names never stop resolving.
    let rollout = env.kubectl(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/coredns",
        "--timeout=120s",
    ]);
    let watch_names = async {
        let mut asked = 0;
        let mut failed = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (ok, _) = exec(env, "resident", &["getent", "hosts", "web.shop.svc.cluster.local"]).await?;
            asked += 1;
            if !ok {
                failed.push(asked);
            }
            let pods = json(env, &["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"]).await?;
            let items = pods["items"].as_array().map_or(0, Vec::len);
            let rolled = items == 1
                && pods["items"][0]["spec"]["containers"]
                    .as_array()
                    .is_some_and(|c| c.len() == 2)
                && pods["items"][0]["status"]["conditions"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if rolled || Instant::now() > deadline {
                return anyhow::Ok((asked, failed));
            }
        }
    };
    let (rolled, watched) = tokio::join!(rollout, watch_names);
    rolled?;
    let (asked, failed) = watched?;
    ensure!(
        failed.is_empty(),
        "during the CoreDNS rollout, {} of {asked} lookups of a Service name failed",
        failed.len()
    );
    let through_sidecar = time_until(Duration::from_secs(60), "the name through the sidecar", || async {
        let (_, out) = exec(env, "resident", &["getent", "ahosts", NAME]).await?;
        Ok(getent_addresses(&out) == all)
    })
    .await?;
    eprintln!(
        "sidecar: CoreDNS rolled with mvdns beside it, {asked} Service-name lookups during the rollout all answered; {NAME} through 127.0.0.1 {through_sidecar:?} after the rollout (the mvdns Deployment at zero)"
    );
    Ok(())
}
