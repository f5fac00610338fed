//! The MultiValueRecordSet API against the real kube-apiserver: the CRD installs, valid
//! objects are accepted with their defaults, invalid ones are refused at admission with
//! a message that names the field and says what is allowed.

use anyhow::Result;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use mvdns_api::{MultiValueRecordSet, RecordType, Topology, WhenAllUnhealthy};
use mvdns_tests::{TestEnv, TestNamespace, install_crd};
use serde_json::{Value, json};

async fn setup(prefix: &str) -> Result<(TestEnv, TestNamespace)> {
    let env = TestEnv::get()?;
    let client = env.admin_client().await?;
    install_crd(&client).await?;
    let ns = TestNamespace::new(&env, &client, prefix).await?;
    Ok((env, ns))
}

/// Raw objects, so that tests can send what the Rust types would not let them build.
fn raw_api(ns: &TestNamespace, client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("mvdns.io", "v1alpha1", "MultiValueRecordSet");
    Api::namespaced_with(client, &ns.name, &ApiResource::from_gvk(&gvk))
}

fn record_set(name: &str, spec: Value) -> Result<DynamicObject> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "mvdns.io/v1alpha1", "kind": "MultiValueRecordSet",
        "metadata": {"name": name}, "spec": spec,
    }))?)
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn valid_record_set_is_accepted_with_defaults() -> Result<()> {
    let (env, ns) = setup("api-valid").await?;
    let raw = raw_api(&ns, env.admin_client().await?);

    let full = json!({
        "name": "web.shop.example.internal.", "type": "A", "ttl": 10, "maxAnswers": 4,
        "whenAllUnhealthy": "ReturnNone", "topology": "PreferSameZone",
        "podSelector": {"matchLabels": {"app": "web"}},
        "values": [
            {"value": "127.0.0.10", "setIdentifier": "dc1-a", "zone": "eu-1a",
             "healthCheck": {"type": "HTTP", "port": 80, "path": "/healthz", "searchString": "ok",
                             "intervalSeconds": 10, "failureThreshold": 2}},
            {"value": "127.0.0.11", "healthCheck": {"type": "TCP", "port": 443}},
        ],
    });
    raw.create(&PostParams::default(), &record_set("web", full)?).await?;
    let tiered = json!({
        "name": "api.shop.example.internal.", "type": "SRV", "priority": 1, "minHealthy": 3, "minHealthyPercent": 40,
        "serviceRef": {"name": "api", "port": "grpc-web"},
        "values": [{"value": "0 1 443 backup.example.com.", "priority": 2, "weight": 5, "drain": true}],
    });
    raw.create(&PostParams::default(), &record_set("api", tiered)?).await?;
    let minimal =
        json!({"name": "mail.shop.example.internal", "type": "MX", "values": [{"value": "10 mx1.example.com."}]});
    raw.create(&PostParams::default(), &record_set("mail", minimal)?)
        .await?;

    let typed: Api<MultiValueRecordSet> = ns.api();
    let web = typed.get("web").await?.spec;
    assert_eq!((web.record_type, web.ttl, web.max_answers), (RecordType::A, 10, 4));
    assert_eq!(
        (web.when_all_unhealthy, web.topology),
        (WhenAllUnhealthy::ReturnNone, Topology::PreferSameZone)
    );
    assert_eq!(web.values.len(), 2);
    let check = web.values[0].health_check.as_ref().expect("health check kept");
    assert_eq!(
        (check.path.as_deref(), check.interval_seconds, check.failure_threshold),
        (Some("/healthz"), 10, 2)
    );
    // Defaults filled in by the API server from the schema.
    let tcp = web.values[1].health_check.as_ref().expect("health check kept");
    assert_eq!(
        (tcp.interval_seconds, tcp.failure_threshold, tcp.verify_certificate),
        (30, 3, false)
    );

    let api = typed.get("api").await?.spec;
    assert_eq!(
        (api.priority, api.min_healthy, api.min_healthy_percent),
        (Some(1), Some(3), Some(40))
    );
    assert_eq!(api.service_ref.as_ref().map(|s| s.name.as_str()), Some("api"));
    assert_eq!((api.values[0].priority, api.values[0].weight), (Some(2), Some(5)));

    let mail = typed.get("mail").await?.spec;
    assert_eq!((mail.ttl, mail.max_answers), (30, 8));
    assert_eq!(
        (mail.when_all_unhealthy, mail.topology),
        (WhenAllUnhealthy::ReturnUnhealthy, Topology::None)
    );
    Ok(())
}

/// (case, spec, field the error must name, phrase saying what is allowed)
fn invalid_cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let pods = json!({"matchLabels": {"app": "web"}});
    let name = "x.example.internal.";
    vec![
        (
            "bad IPv4 for A",
            json!({"name": name, "type": "A", "values": [{"value": "300.1.1.1"}]}),
            "spec.values",
            "IPv4 addresses",
        ),
        (
            "IPv4 for AAAA",
            json!({"name": name, "type": "AAAA", "values": [{"value": "192.0.2.1"}]}),
            "spec.values",
            "IPv6 addresses",
        ),
        (
            "ttl too large",
            json!({"name": name, "type": "A", "ttl": 86401, "podSelector": pods}),
            "spec.ttl",
            "less than or equal to 86400",
        ),
        (
            "ttl negative",
            json!({"name": name, "type": "A", "ttl": -1, "podSelector": pods}),
            "spec.ttl",
            "greater than or equal to 0",
        ),
        (
            "maxAnswers 0",
            json!({"name": name, "type": "A", "maxAnswers": 0, "podSelector": pods}),
            "spec.maxAnswers",
            "greater than or equal to 1",
        ),
        (
            "maxAnswers 9",
            json!({"name": name, "type": "A", "maxAnswers": 9, "podSelector": pods}),
            "spec.maxAnswers",
            "less than or equal to 8",
        ),
        (
            "no value source at all",
            json!({"name": name, "type": "A", "priority": 1}),
            "spec",
            "serviceRef",
        ),
        (
            "serviceRef for MX",
            json!({"name": name, "type": "MX", "serviceRef": {"name": "web"}}),
            "spec.serviceRef",
            "only for types A, AAAA and SRV",
        ),
        (
            "SRV from a Service without port",
            json!({"name": name, "type": "SRV", "serviceRef": {"name": "web"}}),
            "spec.serviceRef.port",
            "serviceRef.port is required for SRV",
        ),
        (
            "serviceRef.port for A",
            json!({"name": name, "type": "A", "serviceRef": {"name": "web", "port": 80}}),
            "spec.serviceRef.port",
            "only for type SRV",
        ),
        (
            "priority above 255",
            json!({"name": name, "type": "A", "priority": 256, "podSelector": pods}),
            "spec.priority",
            "less than or equal to 255",
        ),
        (
            "minHealthy 0",
            json!({"name": name, "type": "A", "minHealthy": 0, "podSelector": pods}),
            "spec.minHealthy",
            "greater than or equal to 1",
        ),
        (
            "minHealthyPercent above 100",
            json!({"name": name, "type": "A", "minHealthyPercent": 101, "podSelector": pods}),
            "spec.minHealthyPercent",
            "less than or equal to 100",
        ),
        (
            "SRV from pods without port",
            json!({"name": name, "type": "SRV", "podSelector": pods}),
            "spec.port",
            "port is required for SRV",
        ),
        (
            "neither podSelector nor values",
            json!({"name": name, "type": "A"}),
            "spec",
            "needs podSelector",
        ),
        (
            "duplicate setIdentifier",
            json!({"name": name, "type": "A", "values": [
            {"value": "192.0.2.1", "setIdentifier": "a"}, {"value": "192.0.2.2", "setIdentifier": "a"}]}),
            "spec.values",
            "setIdentifier must be unique",
        ),
        (
            "bad host name for CNAME",
            json!({"name": name, "type": "CNAME", "values": [{"value": "bad..host"}]}),
            "spec.values",
            "host names",
        ),
        (
            "unknown type",
            json!({"name": name, "type": "SPF", "values": [{"value": "v=spf1"}]}),
            "spec.type",
            "supported values",
        ),
        (
            "bad record name",
            json!({"name": "not a name", "type": "A", "podSelector": pods}),
            "spec.name",
            "fully qualified DNS name",
        ),
        (
            "podSelector for MX",
            json!({"name": name, "type": "MX", "podSelector": pods}),
            "spec.podSelector",
            "only for types A, AAAA and SRV",
        ),
        (
            "MX without preference",
            json!({"name": name, "type": "MX", "values": [{"value": "mail.example."}]}),
            "spec.values",
            "PREFERENCE HOST",
        ),
        (
            "SRV port out of range",
            json!({"name": name, "type": "SRV", "values": [{"value": "1 1 70000 a.example."}]}),
            "spec.values",
            "PRIORITY WEIGHT PORT HOST",
        ),
        (
            "port on an A record",
            json!({"name": name, "type": "A", "port": 80, "podSelector": pods}),
            "spec.port",
            "only for type SRV",
        ),
        (
            "bad port name",
            json!({"name": name, "type": "SRV", "port": "Not_A_Port", "podSelector": pods}),
            "spec.port",
            "container port name",
        ),
        (
            "duplicate value",
            json!({"name": name, "type": "A", "values": [{"value": "192.0.2.1"}, {"value": "192.0.2.1"}]}),
            "spec.values",
            "only once",
        ),
        (
            "TCP check with a path",
            json!({"name": name, "type": "A", "values": [
            {"value": "127.0.0.1", "healthCheck": {"type": "TCP", "port": 80, "path": "/"}}]}),
            "spec.values[0].healthCheck",
            "only to HTTP and HTTPS",
        ),
        (
            "check interval too short",
            json!({"name": name, "type": "A", "values": [
            {"value": "127.0.0.1", "healthCheck": {"type": "HTTP", "port": 80, "intervalSeconds": 4}}]}),
            "spec.values[0].healthCheck.intervalSeconds",
            "greater than or equal to 5",
        ),
        (
            "health check port 0",
            json!({"name": name, "type": "A", "values": [
            {"value": "127.0.0.1", "healthCheck": {"type": "TCP", "port": 0}}]}),
            "spec.values[0].healthCheck.port",
            "greater than or equal to 1",
        ),
    ]
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn invalid_record_sets_are_refused_naming_the_field() -> Result<()> {
    let (env, ns) = setup("api-invalid").await?;
    let raw = raw_api(&ns, env.admin_client().await?);
    let mut failures = Vec::new();
    for (i, (case, spec, field, allowed)) in invalid_cases().into_iter().enumerate() {
        let result = raw
            .create(&PostParams::default(), &record_set(&format!("bad-{i}"), spec)?)
            .await;
        match result {
            Err(kube::Error::Api(status)) if status.code == 422 => {
                let message = status.message.to_lowercase();
                let names_field = message.contains(&format!("{}:", field.to_lowercase()))
                    || message.contains(&format!("{} ", field.to_lowercase()));
                if !names_field || !message.contains(&allowed.to_lowercase()) {
                    failures.push(format!(
                        "{case}: expected {field:?} and {allowed:?} in: {}",
                        status.message
                    ));
                }
            }
            other => failures.push(format!("{case}: expected 422 Invalid, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the invalid cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn kubectl_shows_columns_and_field_docs() -> Result<()> {
    let (env, ns) = setup("api-kubectl").await?;
    let raw = raw_api(&ns, env.admin_client().await?);
    let spec = json!({"name": "web.example.internal.", "type": "AAAA", "values": [{"value": "2001:db8::1"}]});
    raw.create(&PostParams::default(), &record_set("web", spec)?).await?;

    let table = env.kubectl(&["get", "mvrs", "-n", &ns.name]).await?;
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "DNS", "NAME", "TYPE", "HEALTHY", "TOTAL", "READY", "AGE"],
        "{table}"
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.starts_with("web") && row.contains("web.example.internal.") && row.contains("AAAA"),
        "{table}"
    );

    let explain = env.kubectl(&["explain", "mvrs.spec.values"]).await?;
    assert!(explain.contains("Static values, one per endpoint"), "{explain}");
    assert!(
        explain.contains("healthCheck") && explain.contains("setIdentifier"),
        "{explain}"
    );
    let explain = env.kubectl(&["explain", "mvrs.spec.maxAnswers"]).await?;
    assert!(explain.contains("Most values in one answer, 1 to 8"), "{explain}");
    for (field, phrase) in [
        ("mvrs.spec.priority", "The failover tier"),
        ("mvrs.spec.minHealthyPercent", "The panic threshold"),
        ("mvrs.spec.serviceRef", "A Service whose endpoints become values"),
        ("mvrs.status.priorities", "The failover tiers"),
        ("mvrs.status.slices", "MultiValueRecordSlice"),
    ] {
        let explain = env.kubectl(&["explain", field]).await?;
        assert!(explain.contains(phrase), "{field}: {explain}");
    }
    let wide = env.kubectl(&["get", "mvrs", "-n", &ns.name, "-o", "wide"]).await?;
    let header: Vec<&str> = wide.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "DNS", "NAME", "TYPE", "HEALTHY", "TOTAL", "READY", "TIERS", "PANIC", "SLICES", "AGE"
        ],
        "{wide}"
    );
    Ok(())
}
