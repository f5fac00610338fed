//! The test control plane itself: RBAC is enforced, and KWOK gives pods readiness and
//! IPs that a test can flip.

use anyhow::Result;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use mvdns_tests::{PodSpec, TestEnv, TestNamespace, create_ready_pods, is_pod_ready, pod_ip, set_pod_ready};

#[tokio::test]
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
