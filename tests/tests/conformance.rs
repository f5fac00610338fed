//! The zone as a zone checker sees it: Debian's zonemaster-cli, run undelegated against
//! two DNS servers (under the chart's DNS ServiceAccount) that the operator feeds
//! from the control plane, each on a loopback address of its own at port 53 (neither
//! tool can ask another port).
//!
//! Nothing leaves the machine: zonemaster sends from 127.0.0.1 (`--sourceaddr` and the
//! profile), and Linux refuses any destination off the loopback from that source; its
//! root hints name the first server under test.
//!
//! dnsviz is not run (yet): for an undelegated zone its probe needs `-N`, which starts a
//! local BIND `named` to serve the parent, and without it dnsviz looks the zone up
//! through the system resolver, which is off the machine.
//!
//! The record data is loopback addresses only; nothing connects to them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_proto::rr::RecordType;
use mvdns_server::zone::ZoneSettings;
use mvdns_tests::dns::*;
use mvdns_tests::operator::*;
use serde_json::{Value, json};

const ZONE: &str = "conformance.internal.";
/// The two name servers, as a zone needs at least two (zonemaster's DELEGATION01).
const SERVERS: [(&str, Ipv4Addr); 2] = [
    ("ns1.conformance.internal.", Ipv4Addr::new(127, 0, 0, 153)),
    ("ns2.conformance.internal.", Ipv4Addr::new(127, 0, 0, 154)),
];
/// Where the tools send from: a loopback source, so the kernel cannot route a query
/// anywhere else.
const SOURCE: &str = "127.0.0.1";
const LIMIT: Duration = Duration::from_secs(30);

/// Messages at WARNING or above that a correct mvdns zone on loopback still gets, each
/// with the reason it is not a fault of the server. Anything else fails the test.
const EXPLAINED_ZONEMASTER: &[(&str, &str)] = &[
    (
        "NAMESERVER_IP_PRIVATE_NETWORK",
        "the servers are on 127.0.0.0/8 by design: the test may not send anywhere else",
    ),
    (
        "NAMESERVER_IP_WITHOUT_REVERSE",
        "no PTR for the servers' addresses: nothing serves 0.0.127.in-addr.arpa here (reverse zones are a later step of the authoritative work)",
    ),
];
/// zonemaster's modules that report at INFO on every run, each of which must have said
/// something: the run covered them. (CONNECTIVITY says nothing at INFO when all is well;
/// its failures are warnings and errors, which the test does see.)
const ZONEMASTER_MODULES: [&str; 8] = [
    "ADDRESS",
    "BASIC",
    "CONSISTENCY",
    "DELEGATION",
    "DNSSEC",
    "NAMESERVER",
    "SYNTAX",
    "ZONE",
];
#[tokio::test]
#[ignore = "cluster test: needs the control plane, port 53 on loopback and zonemaster-cli; hack/test.sh runs it"]
async fn zonemaster_finds_nothing_unexplained() -> Result<()> {
    let Fixture { env, ns } = fixture("conformance").await?;
    let operator = RunningOperator::start(&env, &ns.name, "op", 15).await?;
    let settings = ZoneSettings {
        apexes: vec![ZONE.into()],
        nameservers: SERVERS.iter().map(|(name, _)| (*name).to_owned()).collect(),
        // Only this test's namespace publishes in the zone.
        restricted: vec![format!("{ZONE}={}", ns.name)],
        ..ZoneSettings::default()
    };
    let mut servers = Vec::new();
    for (_, address) in SERVERS {
        let dns = RunningDns::start_with(&env, &ns.name, &settings, SocketAddr::from((address, 53)))
            .await
            .with_context(|| format!("cannot serve on {address}:53 (port 53 needs root)"))?;
        dns.wait_synced().await?;
        servers.push(dns);
    }
    for (index, (name, address)) in SERVERS.iter().enumerate() {
        let spec = json!({"name": name, "type": "A", "values": [{"value": address.to_string()}]});
        apply_record_set(&env, &ns.name, &format!("ns{}", index + 1), spec).await?;
    }
    let www = format!("www.{ZONE}");
    let values: Vec<Value> = (1..=3).map(|i| json!({"value": format!("127.0.10.{i}")})).collect();
    apply_record_set(
        &env,
        &ns.name,
        "www",
        json!({"name": www, "type": "A", "values": values}),
    )
    .await?;
    for dns in &servers {
        wait_answer(dns.address, &Ask::new(&www, RecordType::A), LIMIT, |m| {
            m.answers.len() == 3
        })
        .await?;
        for (name, _) in SERVERS {
            wait_answer(dns.address, &Ask::new(name, RecordType::A), LIMIT, |m| {
                m.answers.len() == 1
            })
            .await?;
        }
    }

    // zonemaster's input files, removed at the end.
    let work = std::env::temp_dir().join(format!("mvdns-{}", ns.name));
    std::fs::create_dir_all(&work)?;
    let zonemaster = run_zonemaster(&work).await;
    let _ = std::fs::remove_dir_all(&work);
    for dns in servers {
        dns.stop().await;
    }
    operator.stop().await;
    let messages = zonemaster?;

    let modules: Vec<&str> = messages.iter().map(|m| m.module.as_str()).collect();
    for module in ZONEMASTER_MODULES {
        assert!(
            modules.contains(&module),
            "zonemaster reported nothing from {module}: {messages:#?}"
        );
    }
    let serious: Vec<&Message> = messages.iter().filter(|m| m.is_warning_or_worse()).collect();
    let unexplained: Vec<&&Message> = serious
        .iter()
        .filter(|m| !EXPLAINED_ZONEMASTER.iter().any(|(tag, _)| m.tag == *tag))
        .collect();
    for message in &serious {
        let reason = EXPLAINED_ZONEMASTER
            .iter()
            .find(|(tag, _)| message.tag == *tag)
            .map(|(_, why)| *why);
        println!(
            "zonemaster: {} {}/{} {} {}: {}",
            message.level,
            message.module,
            message.testcase,
            message.tag,
            message.args,
            reason.unwrap_or("UNEXPLAINED")
        );
    }
    println!(
        "zonemaster: {} messages, {} at WARNING or above, {} unexplained",
        messages.len(),
        serious.len(),
        unexplained.len()
    );
    if !unexplained.is_empty() {
        bail!("zonemaster warns: {unexplained:#?}");
    }
    Ok(())
}

/// One message of zonemaster-cli's JSON output.
#[derive(Debug)]
struct Message {
    level: String,
    module: String,
    testcase: String,
    tag: String,
    args: Value,
}

impl Message {
    fn is_warning_or_worse(&self) -> bool {
        matches!(self.level.as_str(), "WARNING" | "ERROR" | "CRITICAL")
    }
}

/// zonemaster-cli's messages at INFO and above.
async fn run_zonemaster(work: &Path) -> Result<Vec<Message>> {
    // Root hints naming the first server under test: the recursor zonemaster uses for
    // names outside the zone (the parent, reverse and ASN lookups) asks it, and it
    // refuses.
    let hints = work.join("root.hints");
    let (first_name, first_address) = SERVERS[0];
    std::fs::write(
        &hints,
        format!(". 3600000 IN NS {first_name}\n{first_name} 3600000 IN A {first_address}\n"),
    )?;
    let profile = work.join("profile.json");
    std::fs::write(&profile, serde_json::to_vec(&zonemaster_profile())?)?;
    let mut command = tokio::process::Command::new("zonemaster-cli");
    command
        .args(["--no-ipv6", "--sourceaddr", SOURCE, "--hints"])
        .arg(&hints)
        .arg("--profile")
        .arg(&profile)
        .args(["--json", "--raw", "--level", "INFO", "--no-progress"]);
    for (name, address) in SERVERS {
        command.args(["--ns", &format!("{name}/{address}")]);
    }
    command.arg(ZONE);
    let output = tokio::time::timeout(Duration::from_secs(600), command.output())
        .await
        .context("zonemaster-cli took over 10 minutes")?
        .context("cannot run zonemaster-cli (hack/deps.sh installs it)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let parsed: Value = serde_json::from_str(&stdout).with_context(|| {
        format!(
            "zonemaster-cli printed no JSON: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    let entries = parsed
        .as_array()
        .or_else(|| parsed["results"].as_array())
        .cloned()
        .unwrap_or_default();
    if entries.is_empty() {
        bail!(
            "zonemaster-cli reported nothing: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = |entry: &Value, key: &str| entry[key].as_str().unwrap_or_default().to_owned();
    Ok(entries
        .iter()
        .map(|entry| Message {
            level: text(entry, "level"),
            module: text(entry, "module"),
            testcase: text(entry, "testcase"),
            tag: text(entry, "tag"),
            args: entry["args"].clone(),
        })
        .collect())
}

/// The default profile with the queries bound to the loopback source, and without the
/// one test case that only asks the Internet: CONNECTIVITY03 looks up the AS of each
/// server's address in public ASN zones, and loopback addresses have none.
fn zonemaster_profile() -> Value {
    json!({
        "resolver": {"source": SOURCE},
        "net": {"ipv4": true, "ipv6": false},
        "test_cases": zonemaster_test_cases(),
    })
}

fn zonemaster_test_cases() -> Vec<String> {
    let mut cases: Vec<String> = Vec::new();
    let ranges: [(&str, std::ops::RangeInclusive<u32>); 8] = [
        ("address", 1..=3),
        ("basic", 3..=3),
        ("connectivity", 1..=2),
        ("consistency", 1..=6),
        ("delegation", 1..=7),
        ("nameserver", 1..=13),
        ("syntax", 1..=8),
        ("zone", 1..=10),
    ];
    for (module, numbers) in ranges {
        cases.extend(numbers.map(|n| format!("{module}{n:02}")));
    }
    // DNSSEC: mvdns does not sign (yet); the cases still run and must find an unsigned
    // zone, not an error.
    cases.extend((1..=18).filter(|n| *n != 12).map(|n| format!("dnssec{n:02}")));
    cases
}
