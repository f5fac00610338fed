//! The DNS server against the real control plane: the operator (under the chart's
//! operator ServiceAccount) turns pods into status, the DNS server (under the chart's
//! read-only DNS ServiceAccount) serves it, and real clients ask over UDP and TCP.
//!
//! The tests take turns (`SERIAL`): each runs a cluster-wide operator, and one of them
//! stops the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use mvdns_api::MultiValueRecordSet;
use mvdns_tests::dns::*;
use mvdns_tests::endpoints::{Behaviour, Endpoint};
use mvdns_tests::operator::*;
use mvdns_tests::*;
use serde_json::json;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LIMIT: Duration = Duration::from_secs(30);

/// [`spread_pods`] with a named container port, for SRV.
fn pods(prefix: &str, count: usize, app: &str) -> Vec<PodSpec> {
    spread_pods(prefix, count, app)
        .into_iter()
        .map(|pod| pod.port("http", 8080))
        .collect()
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn answers_are_random_subsets_of_the_healthy_values() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-pick").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let many = pod_ips(&create_ready_pods(&pod_api, &pods("many", 64, "many")).await?);
    let few = create_ready_pods(&pod_api, &pods("few", 20, "few")).await?;
    let web = format!("web.{}.example.internal.", ns.name);
    let small = format!("small.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": web, "type": "A", "podSelector": {"matchLabels": {"app": "many"}}}),
    )
    .await?;
    apply_record_set(
        &env,
        &ns.name,
        "small",
        json!({"name": small, "type": "A", "podSelector": {"matchLabels": {"app": "few"}}}),
    )
    .await?;

    // 64 healthy values: 8 distinct per answer, all of them healthy pod IPs.
    let ask = Ask::new(&web, RecordType::A);
    wait_answer(dns.address, &ask, LIMIT, |m| m.answers.len() == 8).await?;
    let queries = 2000;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..queries {
        let response = udp(dns.address, &ask).await?;
        let picked = answer_data(&response);
        assert_eq!(
            picked.iter().collect::<BTreeSet<_>>().len(),
            8,
            "8 distinct values: {picked:?}"
        );
        for value in picked {
            assert!(many.contains(&value), "{value} is not a healthy pod IP");
            *counts.entry(value).or_default() += 1;
        }
    }
    // Uniformity: Pearson's chi-square over the 64 values against 2000*8/64 = 250 each.
    // With 63 degrees of freedom, P(chi2 > 131.7) = 1e-6 for a fair picker (picking
    // without replacement within an answer only lowers the variance), so this test fails
    // falsely about once in a million runs.
    assert_eq!(counts.len(), 64, "every value appears");
    let expected = f64::from(queries * 8) / 64.0;
    let chi2: f64 = counts
        .values()
        .map(|&c| (f64::from(c) - expected).powi(2) / expected)
        .sum();
    assert!(
        chi2 < 131.7,
        "chi-square {chi2:.1} says the picks are not uniform: {counts:?}"
    );
    println!("64 values, {queries} answers: chi-square {chi2:.1} (63 df, limit 131.7)");

    // 5 healthy of 20: exactly those 5, over UDP, TCP and dig.
    let healthy: BTreeSet<String> = pod_ips(&few[..5]);
    for pod in &few[5..] {
        set_pod_ready(&pod_api, pod.metadata.name.as_deref().unwrap_or_default(), false).await?;
    }
    let ask = Ask::new(&small, RecordType::A);
    let want: Vec<String> = healthy.iter().cloned().collect();
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m) == want).await?;
    for _ in 0..20 {
        assert_eq!(answer_data(&udp(dns.address, &ask).await?), want);
        assert_eq!(answer_data(&tcp(dns.address, &ask).await?), want);
    }
    for transport in ["+notcp", "+tcp"] {
        let out = dig(dns.address, &[transport, "+short", &small, "A"]).await?;
        let mut dug: Vec<String> = out.lines().map(String::from).collect();
        dug.sort();
        assert_eq!(dug, want, "dig {transport}");
    }

    dns.stop().await;
    operator.stop().await;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn rcodes_record_types_and_sizes() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-kinds").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal.", "other.test."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let down = create_ready_pods(&pod_api, &pods("down", 3, "down")).await?;
    for pod in &down {
        set_pod_ready(&pod_api, pod.metadata.name.as_deref().unwrap_or_default(), false).await?;
    }
    let up = create_ready_pods(&pod_api, &pods("up", 2, "up")).await?;
    let zone = format!("{}.example.internal.", ns.name);
    let name = |label: &str| format!("{label}.{zone}");
    let long = format!("{}.{}.{}", "a".repeat(63), "b".repeat(63), name("long"));
    let sets = [
        (
            "open",
            json!({"name": name("open"), "type": "A", "podSelector": {"matchLabels": {"app": "down"}}}),
        ),
        (
            "closed",
            json!({"name": name("closed"), "type": "A", "whenAllUnhealthy": "ReturnNone", "podSelector": {"matchLabels": {"app": "down"}}}),
        ),
        (
            "alias",
            json!({"name": name("alias"), "type": "CNAME", "values": [{"value": "a.example.com."}, {"value": "b.example.com."}]}),
        ),
        (
            "srv",
            json!({"name": name("_http._tcp.svc"), "type": "SRV", "port": "http", "podSelector": {"matchLabels": {"app": "up"}}}),
        ),
        (
            "mail",
            json!({"name": name("mail"), "type": "MX", "values": [{"value": "10 mx1.example.com."}, {"value": "20 mx2.example.com."}]}),
        ),
        (
            "deleg",
            json!({"name": name("deleg"), "type": "NS", "values": [{"value": "ns1.example.com."}]}),
        ),
        (
            "text",
            json!({"name": name("text"), "type": "TXT", "values": (0..8).map(|i| json!({"value": format!("{i}{}", "x".repeat(199))})).collect::<Vec<_>>()}),
        ),
        (
            "long",
            json!({"name": long, "type": "AAAA", "values": (1..=8).map(|i| json!({"value": format!("2001:db8::{i}")})).collect::<Vec<_>>()}),
        ),
    ];
    for (object, spec) in sets {
        apply_record_set(&env, &ns.name, object, spec).await?;
    }
    let record_sets: Api<MultiValueRecordSet> = ns.api();
    for object in ["open", "closed", "alias", "srv", "mail", "deleg", "text", "long"] {
        wait_status(&record_sets, object, LIMIT, |s| s.total_count > 0).await?;
    }
    let a = |n: &str| Ask::new(n, RecordType::A);

    // Wait until the last record set is served, then check every case at once.
    wait_answer(dns.address, &Ask::new(&long, RecordType::AAAA), LIMIT, |m| {
        m.answers.len() == 8
    })
    .await?;

    // Outside every zone: REFUSED, never a resolver.
    let refused = udp(dns.address, &a("example.com.")).await?;
    assert_eq!(
        (refused.metadata.response_code, refused.metadata.authoritative),
        (ResponseCode::Refused, false)
    );
    // Unknown name: NXDOMAIN with the SOA (negative TTL 30 s); other type: NODATA + SOA.
    for (ask, rcode) in [
        (a(&name("nothing")), ResponseCode::NXDomain),
        (Ask::new(&name("open"), RecordType::TXT), ResponseCode::NoError),
    ] {
        for response in [udp(dns.address, &ask).await?, tcp(dns.address, &ask).await?] {
            assert_eq!(response.metadata.response_code, rcode, "{}", ask.name);
            assert!(response.answers.is_empty() && response.metadata.authoritative);
            assert_eq!(response.authorities[0].record_type(), RecordType::SOA);
            assert_eq!(response.authorities[0].ttl, 30);
        }
    }
    let other_zone = udp(dns.address, &Ask::new("other.test.", RecordType::SOA)).await?;
    assert_eq!(
        other_zone.answers[0].record_type(),
        RecordType::SOA,
        "second zone has its apex"
    );
    let ns_records = udp(dns.address, &Ask::new("example.internal.", RecordType::NS)).await?;
    assert_eq!(answer_data(&ns_records), ["ns.example.internal."]);
    // ANY is answered minimally (RFC 8482): one RRset.
    let any = udp(dns.address, &Ask::new(&name("mail"), RecordType::ANY)).await?;
    assert!(any.answers.iter().all(|r| r.record_type() == RecordType::MX) && !any.answers.is_empty());

    // All unhealthy: fail-open gives the unhealthy values, ReturnNone gives NODATA.
    let open = udp(dns.address, &a(&name("open"))).await?;
    assert_eq!(answer_data(&open), pod_ips(&down).into_iter().collect::<Vec<_>>());
    let closed = udp(dns.address, &a(&name("closed"))).await?;
    assert_eq!(
        (closed.metadata.response_code, closed.answers.len()),
        (ResponseCode::NoError, 0)
    );

    // CNAME: one target per answer, also for an A query; both targets over time.
    let mut targets = BTreeSet::new();
    for _ in 0..40 {
        let alias = udp(dns.address, &a(&name("alias"))).await?;
        assert_eq!(alias.answers.len(), 1);
        assert_eq!(alias.answers[0].record_type(), RecordType::CNAME);
        targets.insert(alias.answers[0].data.to_string());
    }
    assert_eq!(targets.len(), 2);

    // SRV to pods: named port resolved, targets with their addresses in additional.
    let srv = udp(dns.address, &Ask::new(&name("_http._tcp.svc"), RecordType::SRV)).await?;
    assert_eq!(srv.answers.len(), 2);
    let glue: BTreeSet<String> = srv.additionals.iter().map(|r| r.data.to_string()).collect();
    assert_eq!(glue, pod_ips(&up));
    for record in &srv.answers {
        let text = record.data.to_string();
        assert!(text.starts_with("0 1 8080 "), "{text}");
        let target = text.rsplit(' ').next().unwrap_or_default().to_owned();
        let address = udp(dns.address, &a(&target)).await?;
        assert_eq!(address.answers.len(), 1, "the SRV target {target} resolves");
    }
    let mx = udp(dns.address, &Ask::new(&name("mail"), RecordType::MX)).await?;
    assert_eq!(answer_data(&mx), ["10 mx1.example.com.", "20 mx2.example.com."]);
    let deleg = udp(dns.address, &Ask::new(&name("deleg"), RecordType::NS)).await?;
    assert_eq!(answer_data(&deleg), ["ns1.example.com."]);

    // Sizes: 8 TXT of 200 bytes do not fit 512 bytes (no EDNS) nor 1232 (EDNS): TC set,
    // and TCP carries all 8.
    let text = Ask::new(&name("text"), RecordType::TXT);
    let plain = udp(dns.address, &text.clone().without_edns()).await?;
    assert!(plain.metadata.truncation && plain.answers.len() < 8);
    let edns = udp(dns.address, &text).await?;
    assert!(edns.metadata.truncation, "1.6 kB does not fit 1232 bytes");
    assert_eq!(
        edns.edns.as_ref().map(|e| e.max_payload()),
        Some(1232),
        "OPT echoed with our size"
    );
    assert_eq!(tcp(dns.address, &text).await?.answers.len(), 8);
    let dug = dig(dns.address, &["+ignore", "+noedns", "+short", &name("text"), "TXT"]).await?;
    assert!(dug.lines().count() < 8, "dig sees a truncated UDP answer");
    let dug = dig(dns.address, &["+short", &name("text"), "TXT"]).await?;
    assert_eq!(dug.lines().count(), 8, "dig retries over TCP after TC");
    // 8 AAAA under a 200-byte name, no EDNS: compression makes them fit in 512 bytes.
    let long_answer = udp(dns.address, &Ask::new(&long, RecordType::AAAA).without_edns()).await?;
    assert!(!long_answer.metadata.truncation);
    assert_eq!(long_answer.answers.len(), 8);

    // Case: names match whatever the case, and the question comes back as asked.
    let mixed = format!("OpEn.{}", zone.to_uppercase());
    let echoed = udp(dns.address, &a(&mixed)).await?;
    assert_eq!(echoed.queries[0].name().to_string(), mixed);
    assert_eq!(echoed.answers.len(), 3);
    assert!(echoed.answers.iter().all(|r| r.name.to_string() == mixed));

    dns.stop().await;
    operator.stop().await;
    Ok(())
}

#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn another_namespace_cannot_take_over_a_name_even_by_writing_status() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-owner").await?;
    let admin = env.admin_client().await?;
    let thief = TestNamespace::new(&env, &admin, "dns-thief").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let name = format!("shop.{}.example.internal.", ns.name);
    let spec = |ip: &str| json!({"name": name, "type": "A", "values": [{"value": ip}]});
    apply_record_set(&env, &ns.name, "shop", spec("192.0.2.10")).await?;
    let ask = Ask::new(&name, RecordType::A);
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m) == ["192.0.2.10"]).await?;

    // Timestamps have one-second resolution: make the thief's claim clearly younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply_record_set(&env, &thief.name, "shop", spec("198.51.100.66")).await?;
    let stolen: Api<MultiValueRecordSet> = thief.api();
    wait_status(&stolen, "shop", LIMIT, |s| condition(s, "Conflict") == "True").await?;
    // Even a status written by hand that claims the value is not served.
    let forged = json!({"status": {"values": [{"value": "198.51.100.66", "healthy": true, "source": "0"}], "healthyCount": 1, "totalCount": 1}});
    Api::<MultiValueRecordSet>::namespaced(admin, &thief.name)
        .patch_status("shop", &PatchParams::default(), &Patch::Merge(&forged))
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..20 {
        assert_eq!(answer_data(&udp(dns.address, &ask).await?), ["192.0.2.10"]);
    }

    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// The API server crashes for 60 s while a client keeps asking, and etcd's history is
/// compacted meanwhile so that every watch's resourceVersion has expired when it comes
/// back: every answer stays correct (no SERVFAIL, no NXDOMAIN, no empty answer); the DNS
/// server re-lists without dropping what it serves; a health-check result that changed
/// during the outage, and a change made after it, are served once it returns.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn keeps_answering_while_the_api_server_is_down() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-outage").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 4).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let web = create_ready_pods(&pod_api, &pods("web", 4, "web")).await?;
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;
    let stays = Endpoint::start("127.0.0.21", Behaviour::Respond(200, "ok".into()), false).await?;
    let mut fails = Endpoint::start("127.0.0.22", Behaviour::Respond(200, "ok".into()), false).await?;
    let checked_name = format!("checked.{}.example.internal.", ns.name);
    let check = |endpoint: &Endpoint| json!({"value": endpoint.ip(), "healthCheck": {"type": "TCP", "port": endpoint.port(), "intervalSeconds": 5, "failureThreshold": 1}});
    apply_record_set(
        &env,
        &ns.name,
        "checked",
        json!({"name": checked_name, "type": "A", "values": [check(&stays), check(&fails)]}),
    )
    .await?;
    let ask = Ask::new(&name, RecordType::A);
    let checked = Ask::new(&checked_name, RecordType::A);
    let all: Vec<String> = pod_ips(&web).into_iter().collect();
    let both = vec![stays.ip(), fails.ip()];
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m) == all).await?;
    wait_answer(dns.address, &checked, LIMIT, |m| answer_data(m) == both).await?;
    let lists_before = dns.shared.metrics.watch_lists.get();

    env.testenv_command("apiserver-stop").await?;
    env.testenv_command("etcd-compact").await?;
    let outage = Duration::from_secs(60);
    let started = Instant::now();
    let (mut answered, mut wrong, mut failed) = (0u32, Vec::new(), false);
    while started.elapsed() < outage {
        if !failed && started.elapsed() > Duration::from_secs(5) {
            fails.set(Behaviour::Down).await?; // the operator sees it; the API server does not
            failed = true;
        }
        for response in [udp(dns.address, &ask).await?, tcp(dns.address, &ask).await?] {
            answered += 1;
            if response.metadata.response_code != ResponseCode::NoError || answer_data(&response) != all {
                wrong.push(format!("{response}"));
            }
        }
        let response = udp(dns.address, &checked).await?;
        answered += 1;
        let values = answer_data(&response);
        if response.metadata.response_code != ResponseCode::NoError
            || values.is_empty()
            || !values.iter().all(|v| both.contains(v))
        {
            wrong.push(format!("{response}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.testenv_command("apiserver-start").await?;
    let returned = Instant::now();
    println!(
        "answered {answered} queries during the 60 s outage, {} wrong",
        wrong.len()
    );
    assert!(
        wrong.is_empty(),
        "{} of {answered} answers wrong, first: {}",
        wrong.len(),
        wrong[0]
    );
    assert!(answered > 300);

    // The health-check result that changed while the API server was away is served.
    let only_stays = vec![stays.ip()];
    wait_answer(dns.address, &checked, LIMIT, |m| answer_data(m) == only_stays).await?;
    println!(
        "a health check that failed during the outage is out of the answers {:?} after the API server returned",
        returned.elapsed()
    );
    // Leave the control plane as we found it: the controller-manager serves new
    // namespaces again (it reconnects with backoff) before the next test starts.
    drop(TestNamespace::new(&env, &env.admin_client().await?, "dns-after-outage").await?);

    // After the API server returns, a change is served again.
    let changed = Instant::now();
    set_pod_ready(&pod_api, "web-0", false).await?;
    let record_sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&record_sets, "web", LIMIT, |s| s.healthy_count == 3).await?;
    let in_status = changed.elapsed();
    let three: Vec<String> = pod_ips(&web[1..]).into_iter().collect();
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m) == three).await?;
    println!(
        "a pod flipped after the outage: in status after {in_status:?}, in DNS answers after {:?}",
        changed.elapsed()
    );
    // The resumed watch found its resourceVersion compacted away and listed again.
    let lists_after = dns.shared.metrics.watch_lists.get();
    println!(
        "record-set lists by the DNS server: {lists_before} before the outage, {lists_after} after; watch errors {}",
        dns.shared.metrics.watch_errors.get()
    );
    assert!(
        lists_after > lists_before,
        "the DNS server re-listed after its resourceVersion expired"
    );

    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// Watch interruptions, three times over: the API server stopped, etcd compacted (so the
/// DNS server's resourceVersion has expired and it must list again), the API server
/// started. The DNS server (its own process, so its memory is its own) answers every
/// query correctly throughout, re-lists each time, and its memory after the third round
/// is what it was after the first: re-lists do not leak.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn watch_interruptions_recover_without_an_outage_or_a_leak() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-relist").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 4).await?;
    let listen = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, mvdns_tests::process::free_port()?));
    let dns = mvdns_tests::process::Process::dns(&env, &ns.name, "dns", &["example.internal."], listen).await?;
    dns.wait_ready(LIMIT).await?;
    // 20 record sets of 50 static values: 1,000 values to list again every round.
    const SETS: usize = 20;
    let mut asks = Vec::new();
    for set in 0..SETS {
        let values: Vec<_> = (0..50).map(|v| json!({"value": format!("10.{set}.0.{v}")})).collect();
        let name = format!("s{set}.{}.example.internal.", ns.name);
        apply_record_set(
            &env,
            &ns.name,
            &format!("s{set}"),
            json!({"name": name, "type": "A", "values": values}),
        )
        .await?;
        asks.push((Ask::new(&name, RecordType::A), format!("10.{set}.0.")));
    }
    for (ask, prefix) in &asks {
        wait_answer(listen, ask, LIMIT, |m| {
            answer_data(m).iter().filter(|v| v.starts_with(prefix.as_str())).count() == 8
        })
        .await?;
    }

    let (mut answered, mut wrong) = (0u32, Vec::new());
    let mut ask_all = async || -> Result<()> {
        for (ask, prefix) in &asks {
            let response = udp(listen, ask).await?;
            answered += 1;
            let values = answer_data(&response);
            if response.metadata.response_code != ResponseCode::NoError
                || values.len() != 8
                || !values.iter().all(|v| v.starts_with(prefix.as_str()))
            {
                wrong.push(format!("{response}"));
            }
        }
        Ok(())
    };
    let mut rss_after_round = Vec::new();
    for round in 1..=3 {
        let lists_before = metric_value(&dns.metrics().await?, "mvdns_dns_watch_lists_total");
        env.testenv_command("apiserver-stop").await?;
        env.testenv_command("etcd-compact").await?;
        let down = Instant::now();
        while down.elapsed() < Duration::from_secs(3) {
            ask_all().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        env.testenv_command("apiserver-start").await?;
        // Until the DNS server has listed again (its watch retries at most 4 s apart).
        let back = Instant::now();
        while metric_value(&dns.metrics().await?, "mvdns_dns_watch_lists_total") <= lists_before {
            if back.elapsed() > LIMIT {
                bail!("round {round}: the DNS server did not list again within {LIMIT:?}");
            }
            ask_all().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let relisted = back.elapsed();
        // Let the allocator settle after the list before sampling memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        ask_all().await?;
        let rss = dns.rss_kib()?;
        rss_after_round.push(rss);
        println!(
            "round {round}: listed again {relisted:?} after the API server returned; DNS RSS {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
    println!("{answered} queries over three interruptions, {} wrong", wrong.len());
    assert!(
        wrong.is_empty(),
        "{} of {answered} answers wrong, first: {}",
        wrong.len(),
        wrong[0]
    );
    // Memory after the third re-list within 2 MiB of the first (1,000 values are about
    // 0.5 MiB of index; a leak of the old store per list would add that each round).
    let (first, last) = (rss_after_round[0], rss_after_round[2]);
    assert!(
        last <= first + 2048,
        "DNS memory grew from {first} KiB to {last} KiB over two more re-lists"
    );

    // Leave the control plane as we found it (see keeps_answering_while_the_api_server_is_down).
    drop(TestNamespace::new(&env, &env.admin_client().await?, "dns-after-relist").await?);
    dns.stop().await?;
    operator.stop().await;
    Ok(())
}

/// A DNS replica starting (or restarting) while clients ask: before its first full sync
/// it answers SERVFAIL (a resolver tries another server), never NXDOMAIN for a name that
/// exists, and `synced` (what `/readyz` reports) turns true only with the data in place.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn a_starting_replica_never_denies_an_existing_name() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-start").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "values": [{"value": "192.0.2.7"}]}),
    )
    .await?;
    let record_sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&record_sets, "web", LIMIT, |s| s.healthy_count == 1).await?;
    let ask = Ask::new(&name, RecordType::A);
    for _ in 0..3 {
        let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
        let mut codes = BTreeMap::new();
        loop {
            let synced_before = dns.shared.synced.load(std::sync::atomic::Ordering::Acquire);
            let response = udp(dns.address, &ask).await?;
            let code = response.metadata.response_code;
            *codes.entry(code.to_string()).or_insert(0u32) += 1;
            match code {
                ResponseCode::ServFail => assert!(!synced_before, "SERVFAIL after the first sync"),
                ResponseCode::NoError => {
                    assert_eq!(answer_data(&response), ["192.0.2.7"]);
                    break;
                }
                other => panic!("a starting replica answered {other} for an existing name"),
            }
        }
        println!("answers while starting: {codes:?}");
        dns.stop().await;
    }
    operator.stop().await;
    Ok(())
}

/// Weights and drain from pod annotations, through the operator's status to the DNS
/// server's answers: one answer per query (`maxAnswers: 1`) so each answer is a first
/// pick, whose shares the weights promise.
#[tokio::test]
#[ignore = "cluster test: needs the control plane; hack/test.sh runs it"]
async fn weighted_answers_follow_the_weights_and_a_drained_pod_leaves() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-weights").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let ready = create_ready_pods(&pod_api, &spread_pods("web", 3, "web")).await?;
    let ip = |i: usize| pod_ip(&ready[i]).unwrap_or_default().to_owned();
    let annotate = |name: String, annotations: serde_json::Value| {
        let pod_api = pod_api.clone();
        async move {
            let patch = json!({"metadata": {"annotations": annotations}});
            pod_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            anyhow::Ok(())
        }
    };
    // web-0 weighs 1 (the default), web-1 weighs 3, web-2 weighs 0.
    annotate("web-1".into(), json!({"mvdns.io/weight": "3"})).await?;
    annotate("web-2".into(), json!({"mvdns.io/weight": "0"})).await?;
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "maxAnswers": 1, "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    let status = wait_status(&sets, "web", LIMIT, |s| {
        s.healthy_count == 3 && s.values.iter().filter(|v| v.weight.is_some()).count() == 2
    })
    .await?;
    let weight_of = |ip: &str| status.values.iter().find(|v| v.value == ip).and_then(|v| v.weight);
    assert_eq!(
        (weight_of(&ip(0)), weight_of(&ip(1)), weight_of(&ip(2))),
        (None, Some(3), Some(0))
    );

    let ask = Ask::new(&name, RecordType::A);
    // The DNS replica loads a status within milliseconds of its write; a second is ample.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queries = 2_000u32;
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..queries {
        for value in answer_data(&udp(dns.address, &ask).await?) {
            *counts.entry(value).or_default() += 1;
        }
    }
    assert_eq!(
        counts.get(&ip(2)),
        None,
        "weight 0 is never answered while others are healthy"
    );
    // Pearson's chi-square over the two shares, 1 and 3 of 4: one degree of freedom, and
    // P(chi2 > 10.83) = 0.001, so a correct server fails this one run in a thousand.
    let expected = [(ip(0), 0.25), (ip(1), 0.75)];
    let chi2: f64 = expected
        .iter()
        .map(|(value, share)| {
            let want = f64::from(queries) * share;
            (f64::from(counts.get(value).copied().unwrap_or(0)) - want).powi(2) / want
        })
        .sum();
    println!("weights 1:3 over {queries} answers: {counts:?}, chi-square {chi2:.2} (1 df, limit 10.83)");
    assert!(
        chi2 < 10.83,
        "chi-square {chi2:.2}: {counts:?} does not follow the weights 1:3"
    );

    // Draining web-1 takes it out of the answers (it stays in status); undraining brings
    // it back.
    annotate("web-1".into(), json!({"mvdns.io/drain": "true"})).await?;
    let drained = wait_status(&sets, "web", LIMIT, |s| s.values.iter().any(|v| v.drained)).await?;
    assert_eq!(drained.total_count, 3, "a drained value stays in status");
    // web-0 answers a quarter of the time before the drain too: wait for a run of 50.
    let deadline = Instant::now() + LIMIT;
    let mut run = 0;
    while run < 50 {
        if answer_data(&udp(dns.address, &ask).await?) == [ip(0)] {
            run += 1;
        } else {
            run = 0;
        }
        if Instant::now() > deadline {
            bail!("the drained web-1 is still answered after {LIMIT:?}");
        }
    }
    for _ in 0..100 {
        assert_eq!(
            answer_data(&udp(dns.address, &ask).await?),
            [ip(0)],
            "only web-0 (web-2 weighs 0)"
        );
    }
    annotate("web-1".into(), json!({"mvdns.io/drain": null})).await?;
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m) == [ip(1)]).await?;
    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// Failover tiers: the pods (tier 0) answer while at least `minHealthy` of them are ready;
/// with fewer, the ready ones come first and the standby values (tier 1) fill the answer;
/// with none, the standby values answer alone; and the pods take over again when they
/// are back. Status shows the tiers answered, and a move between tiers is an Event.
#[tokio::test]
#[ignore = "cluster test: needs the test control plane (hack/test.sh runs it)"]
async fn a_tier_fails_over_and_back_as_its_pods_readiness_flips() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-tiers").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let ready = create_ready_pods(&pod_api, &spread_pods("web", 3, "web")).await?;
    let pods: BTreeSet<String> = pod_ips(&ready);
    let standby: BTreeSet<String> = ["127.0.1.1", "127.0.1.2"].map(String::from).into();
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "minHealthy": 2, "podSelector": {"matchLabels": {"app": "web"}},
               "values": [{"value": "127.0.1.1", "priority": 1}, {"value": "127.0.1.2", "priority": 1}]}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&sets, "web", LIMIT, |s| s.priorities == [0] && s.healthy_count == 5).await?;
    let ask = Ask::new(&name, RecordType::A);
    let as_set = |m: &hickory_proto::op::Message| answer_data(m).into_iter().collect::<BTreeSet<_>>();
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == pods).await?;

    // Two of three pods unready: one left in tier 0, fewer than minHealthy 2.
    set_pod_ready(&pod_api, "web-1", false).await?;
    set_pod_ready(&pod_api, "web-2", false).await?;
    let survivor = pod_ip(&ready[0]).unwrap_or_default().to_owned();
    wait_status(&sets, "web", LIMIT, |s| s.priorities == [0, 1]).await?;
    let mut spilled: BTreeSet<String> = standby.clone();
    spilled.insert(survivor.clone());
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == spilled).await?;
    for _ in 0..20 {
        let answer = answer_data(&udp(dns.address, &ask).await?);
        assert_eq!(answer[0], survivor, "the thin tier first: {answer:?}");
    }

    // The last pod unready: tier 1 alone, and the move announced.
    set_pod_ready(&pod_api, "web-0", false).await?;
    wait_status(&sets, "web", LIMIT, |s| s.priorities == [1]).await?;
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == standby).await?;
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    let note = wait_event(&events, "TierChanged", LIMIT).await?;
    assert!(note.starts_with("answers come from priority"), "{note}");

    // Back: all pods ready, tier 0 alone again.
    for pod in ["web-0", "web-1", "web-2"] {
        set_pod_ready(&pod_api, pod, true).await?;
    }
    wait_status(&sets, "web", LIMIT, |s| s.priorities == [0]).await?;
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == pods).await?;
    println!("tiers: 3 pods -> 1 pod + 2 standby -> 2 standby -> 3 pods, as readiness flipped");
    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// The panic threshold: with 3 of 10 pods ready and `minHealthyPercent: 50`, health is
/// ignored and answers come from all ten (so the three cannot take every client); once
/// enough are ready again answers follow health. Status and Events say so.
#[tokio::test]
#[ignore = "cluster test: needs the test control plane (hack/test.sh runs it)"]
async fn the_panic_threshold_answers_from_all_values_when_most_are_unhealthy() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-panic").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let ready = create_ready_pods(&pod_api, &spread_pods("web", 10, "web")).await?;
    let all: BTreeSet<String> = pod_ips(&ready);
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "maxAnswers": 8, "minHealthyPercent": 50,
               "podSelector": {"matchLabels": {"app": "web"}}}),
    )
    .await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 10 && !s.panic).await?;
    for i in 3..10 {
        set_pod_ready(&pod_api, &format!("web-{i}"), false).await?;
    }
    let status = wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 3).await?;
    assert!(status.panic, "3 of 10 is below 50%: {status:?}");
    let ask = Ask::new(&name, RecordType::A);
    // In panic every answer carries 8 of the 10, so within 50 answers all ten appear.
    let mut seen = BTreeSet::new();
    wait_answer(dns.address, &ask, LIMIT, |m| answer_data(m).len() == 8).await?;
    for _ in 0..50 {
        let answer = answer_data(&udp(dns.address, &ask).await?);
        assert_eq!(answer.len(), 8, "{answer:?}");
        seen.extend(answer);
    }
    assert_eq!(seen, all, "health ignored: every value answers");
    let events: Api<k8s_openapi::api::events::v1::Event> = ns.api();
    // The pods turn unready one by one, so the status that entered panic may have seen
    // 4 of 10 (below 50% too) before the last flip arrived.
    let note = wait_event(&events, "PanicEntered", LIMIT).await?;
    assert!(
        note.contains(" of 10 values healthy, below minHealthyPercent"),
        "{note}"
    );

    // Two more ready: 5 of 10 is not below 50%, so answers follow health again.
    set_pod_ready(&pod_api, "web-3", true).await?;
    set_pod_ready(&pod_api, "web-4", true).await?;
    wait_status(&sets, "web", LIMIT, |s| s.healthy_count == 5 && !s.panic).await?;
    let healthy: BTreeSet<String> = ready[..5].iter().filter_map(pod_ip).map(String::from).collect();
    wait_answer(dns.address, &ask, LIMIT, |m| {
        answer_data(m).into_iter().collect::<BTreeSet<_>>() == healthy
    })
    .await?;
    wait_event(&events, "PanicEnded", LIMIT).await?;
    dns.stop().await;
    operator.stop().await;
    Ok(())
}

/// `serviceRef`: a headless Service's endpoints (EndpointSlices written by the real
/// EndpointSlice controller) are served and follow its pods' readiness; a slice written by
/// hand for another Service is served the same way, and follows its edits.
#[tokio::test]
#[ignore = "cluster test: needs the test control plane (hack/test.sh runs it)"]
async fn a_services_endpoints_are_served_and_follow_its_endpoint_slices() -> Result<()> {
    let _turn = SERIAL.lock().await;
    let Fixture { env, ns } = fixture("dns-service").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let dns = RunningDns::start(&env, &ns.name, &["example.internal."]).await?;
    dns.wait_synced().await?;
    let pod_api: Api<Pod> = ns.api();
    let ready = create_ready_pods(&pod_api, &spread_pods("svc", 3, "svc")).await?;
    let services: Api<k8s_openapi::api::core::v1::Service> = ns.api();
    let service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "svc"}, "ports": [{"name": "http", "port": 80}]},
    }))?;
    services.create(&Default::default(), &service).await?;
    let name = format!("web.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "web",
        json!({"name": name, "type": "A", "serviceRef": {"name": "web"}}),
    )
    .await?;
    let ask = Ask::new(&name, RecordType::A);
    let as_set = |m: &hickory_proto::op::Message| answer_data(m).into_iter().collect::<BTreeSet<_>>();
    let all = pod_ips(&ready);
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == all).await?;
    let sets: Api<MultiValueRecordSet> = ns.api();
    let status = sets.get("web").await?.status.unwrap_or_default();
    assert!(
        status.values.iter().all(|v| v.source.starts_with("pod/svc-")),
        "{status:?}"
    );
    // The EndpointSlice controller marks the unready pod's endpoint not ready.
    set_pod_ready(&pod_api, "svc-2", false).await?;
    let two: BTreeSet<String> = ready[..2].iter().filter_map(pod_ip).map(String::from).collect();
    wait_answer(dns.address, &ask, LIMIT, |m| as_set(m) == two).await?;

    // A slice managed by hand, for a Service without a selector. (Endpoints may not be
    // loopback addresses, so these come from the test pod range, 10.244.0.0/16, above
    // the blocks of the KWOK nodes; they are answer data only and never contacted.)
    let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> = ns.api();
    let manual = |ready_second: bool| {
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "manual-1", "labels": {"kubernetes.io/service-name": "manual"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.250.1"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.250.2"], "conditions": {"ready": ready_second}}],
        })
    };
    let apply = PatchParams::apply("mvdns-tests").force();
    slices.patch("manual-1", &apply, &Patch::Apply(manual(false))).await?;
    let manual_name = format!("manual.{}.example.internal.", ns.name);
    apply_record_set(
        &env,
        &ns.name,
        "manual",
        json!({"name": manual_name, "type": "A", "serviceRef": {"name": "manual"}}),
    )
    .await?;
    let manual_ask = Ask::new(&manual_name, RecordType::A);
    wait_answer(dns.address, &manual_ask, LIMIT, |m| answer_data(m) == ["10.244.250.1"]).await?;
    slices.patch("manual-1", &apply, &Patch::Apply(manual(true))).await?;
    let both: BTreeSet<String> = ["10.244.250.1", "10.244.250.2"].map(String::from).into();
    wait_answer(dns.address, &manual_ask, LIMIT, |m| as_set(m) == both).await?;
    slices.delete("manual-1", &Default::default()).await?;
    wait_status(&sets, "manual", LIMIT, |s| s.total_count == 0).await?;
    dns.stop().await;
    operator.stop().await;
    Ok(())
}
