//! The test control plane itself: RBAC is enforced, and KWOK gives pods readiness and
//! IPs that a test can flip.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use mvdns_tests::{
    PodSpec, TestEnv, TestNamespace, create_ready_pods, is_pod_ready, pod_ip, set_pod_ready, workspace_root,
};

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn kwok_pods_become_ready_and_can_be_flipped() -> Result<()> {
    let env = TestEnv::get()?;
    let client = env.admin_client().await?;
    let ns = TestNamespace::new(&env, &client, "testenv-pods").await?;
    let pods: Api<Pod> = ns.api();

    let specs: Vec<_> = (0..3)
        .map(|i| {
            PodSpec::new(format!("web-{i}"))
                .label("app", "web")
                .on_node(&format!("kwok-node-{i}"))
        })
        .collect();
    let ready = create_ready_pods(&pods, &specs).await?;
    let ips: Vec<_> = ready.iter().filter_map(pod_ip).collect();
    assert_eq!(ips.len(), 3);
    for (pod, ip) in ready.iter().zip(&ips) {
        assert!(is_pod_ready(pod));
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "pod IP {ip} is IPv4");
    }

    let unready = set_pod_ready(&pods, "web-1", false).await?;
    assert!(!is_pod_ready(&unready));
    assert!(
        is_pod_ready(&pods.get("web-0").await?),
        "other pods keep their readiness"
    );
    let again = set_pod_ready(&pods, "web-1", true).await?;
    assert!(is_pod_ready(&again));
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn rbac_is_enforced() -> Result<()> {
    let env = TestEnv::get()?;
    // The KWOK identity is bound to cluster-admin; an unbound ServiceAccount gets nothing.
    let (allowed, answer, _) = env
        .kubectl_status(&[
            "auth",
            "can-i",
            "list",
            "pods",
            "--as=system:serviceaccount:default:nobody",
            "-A",
        ])
        .await?;
    assert!(
        !allowed && answer.trim() == "no",
        "RBAC must refuse an unbound identity: {answer}"
    );
    let (allowed, answer, _) = env.kubectl_status(&["auth", "can-i", "list", "pods", "-A"]).await?;
    assert!(allowed && answer.trim() == "yes", "the admin may: {answer}");
    Ok(())
}

/// `hack/test.sh` takes the control plane with `testenv.sh acquire` and gives it back with
/// `testenv.sh release TOKEN` at exit. A plane it did not start (this one is up before the
/// tests run) must get no token, and no release may stop it: the user's or the demo's
/// control plane stays up.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn test_sh_never_stops_a_control_plane_it_did_not_start() -> Result<()> {
    let env = TestEnv::get()?;
    let token = testenv_sh(&env, &["acquire"]).await?;
    assert_eq!(
        token, "",
        "a running plane must not be claimed: acquire printed {token:?}"
    );
    for token in ["", "a-token-of-another-run"] {
        testenv_sh(&env, &["release", token]).await?;
        env.kubectl(&["get", "--raw=/readyz"])
            .await
            .with_context(|| format!("`release {token:?}` stopped a control plane it did not start"))?;
    }

    // And the test command uses exactly that pair: it never calls `down` itself.
    let script = std::fs::read_to_string(workspace_root().join("hack/test.sh"))?;
    let calls: Vec<&str> = script
        .lines()
        .filter(|line| !line.trim_start().starts_with('#') && line.contains("testenv.sh"))
        .collect();
    assert!(
        calls.iter().any(|line| line.contains("testenv.sh\" acquire"))
            && calls
                .iter()
                .any(|line| line.contains("testenv.sh\" release \"$plane\""))
            && !calls.iter().any(|line| line.contains(" down") || line.contains(" up")),
        "hack/test.sh must start and stop its control plane only with acquire/release: {calls:#?}"
    );
    Ok(())
}

/// Runs `hack/testenv.sh ARGS` on this control plane; its stdout, trimmed.
async fn testenv_sh(env: &TestEnv, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(workspace_root().join("hack/testenv.sh"))
        .args(args)
        .env("MVDNS_TESTENV_DIR", &env.dir)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "hack/testenv.sh {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
