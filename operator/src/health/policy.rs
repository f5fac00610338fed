//! Which addresses a health check may connect to: a pure decision, made for every address
//! before a packet is sent to it.
//!
//! Anyone who may create a record set in their namespace can ask for a health check, and
//! the probe runs from the operator's place in the network. Without a policy that is a
//! port scanner and a data oracle aimed at the cluster's insides: the operator's own admin
//! port, the API server, a cloud's instance metadata (169.254.169.254), pods that a
//! NetworkPolicy shuts off from that user. So, in this order:
//!
//! 1. an address in a `deny` CIDR is refused;
//! 2. the API server's and this operator's own addresses are refused;
//! 3. an address of a special class (loopback, link-local, unspecified, multicast,
//!    broadcast) is refused unless an `allow` CIDR names it, that is, contains it and
//!    lies inside the class (`127.0.0.2/32` allows that loopback address; `0.0.0.0/0`
//!    allows no special address: a wide allow is about the general population);
//! 4. with any `allow` CIDR given, an address in none of them is refused;
//! 5. anything else may be probed.
//!
//! On top of that, per namespace ([`ProbePolicy::check_for`]), in the spirit of
//! `--restrict-zone`: a block named by `--probe-restrict-cidr BLOCK[:PORTS]=NAMESPACES` may be
//! probed only by those namespaces, and, when ports are given, only on those ports. Such a
//! rule only ever refuses: it cannot open what the rules above refuse. An address in several
//! rules' blocks must pass all of them.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are judged as the IPv4 address they
//! carry, so the mapped form is no way around a rule.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// An address block, `ADDRESS/PREFIX` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The block; the address's bits below the prefix are cleared.
    pub fn new(address: IpAddr, prefix: u8) -> Option<Self> {
        let address = canonical(address);
        let width = bit_width(address);
        (prefix <= width).then(|| Self {
            network: masked(address, prefix),
            prefix,
        })
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        bit_width(address) == bit_width(self.network) && masked(address, self.prefix) == self.network
    }

    /// Whether every address of `self` is in `outer`.
    pub fn is_within(&self, outer: &Cidr) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.network)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an address block (e.g. 10.0.0.0/8, 127.0.0.2/32, fd00::/8)");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let address: IpAddr = address.parse().map_err(|_| bad())?;
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => bit_width(canonical(address)),
        };
        Cidr::new(address, prefix).ok_or_else(bad)
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address carries; any other address as is.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

fn bit_width(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// An address class refused by default, and the block it covers.
fn special_class(address: IpAddr) -> Option<(&'static str, Cidr)> {
    const CLASSES: [(&str, &str); 10] = [
        ("loopback", "127.0.0.0/8"),
        ("loopback", "::1/128"),
        ("link-local (cloud instance metadata lives here)", "169.254.0.0/16"),
        ("link-local", "fe80::/10"),
        ("unspecified (\"this network\")", "0.0.0.0/8"),
        ("unspecified", "::/128"),
        ("multicast", "224.0.0.0/4"),
        ("multicast", "ff00::/8"),
        ("broadcast", "255.255.255.255/32"),
        ("reserved", "240.0.0.0/4"),
    ];
    CLASSES.iter().find_map(|(class, block)| {
        let block: Cidr = block.parse().ok()?;
        block.contains(address).then_some((*class, block))
    })
}

/// Why an address may not be probed; the text names the rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A block only some namespaces may probe, perhaps only on some ports
/// (`--probe-restrict-cidr BLOCK[:PORT[,PORT...]]=NAMESPACE[,NAMESPACE...]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRule {
    block: Cidr,
    /// Inclusive port ranges; empty means any port.
    ports: Vec<(u16, u16)>,
    namespaces: Vec<String>,
    /// The rule as written, to name it in a refusal.
    text: String,
}

impl FromStr for NamespaceRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "{text:?}: {why} (the form is BLOCK[:PORTS]=NAMESPACES, e.g. 10.20.0.0/16=payments or 10.20.0.0/16:443,8000-8099=payments,shop)"
            )
        };
        let (target, namespaces) = text.split_once('=').ok_or_else(|| bad("no '='"))?;
        // The block ends at its prefix, so IPv6 colons are never taken for the port separator.
        let slash = target.find('/').ok_or_else(|| bad("the block needs a prefix length"))?;
        let (block, ports) = match target[slash..].find(':') {
            Some(colon) => (&target[..slash + colon], Some(&target[slash + colon + 1..])),
            None => (target, None),
        };
        let block: Cidr = block.parse().map_err(|e: String| bad(&e))?;
        let ports = match ports {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|range| {
                    parse_port_range(range)
                        .ok_or_else(|| bad(&format!("{range:?} is not a port or a range of ports (1-65535)")))
                })
                .collect::<Result<_, _>>()?,
        };
        let namespaces = mvdns_api::zones::namespace_list(namespaces);
        if namespaces.is_empty() {
            return Err(bad("no namespace"));
        }
        Ok(Self {
            block,
            ports,
            namespaces,
            text: text.to_owned(),
        })
    }
}

fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let (low, high) = text.trim().split_once('-').unwrap_or((text.trim(), text.trim()));
    let (low, high): (u16, u16) = (low.trim().parse().ok()?, high.trim().parse().ok()?);
    (low >= 1 && low <= high).then_some((low, high))
}

impl NamespaceRule {
    /// Whether `namespace` may probe `target` under this rule (a target outside the
    /// block is not this rule's business).
    fn check(&self, target: SocketAddr, namespace: &str) -> Result<(), Refusal> {
        let address = canonical(target.ip());
        if !self.block.contains(address) {
            return Ok(());
        }
        if !self.namespaces.iter().any(|n| n == namespace) {
            return Err(Refusal(format!(
                "{address} may be probed only from namespaces {} (--probe-restrict-cidr {}), not from {namespace}",
                self.namespaces.join(","),
                self.text
            )));
        }
        let port = target.port();
        if !self.ports.is_empty() && !self.ports.iter().any(|(low, high)| (*low..=*high).contains(&port)) {
            return Err(Refusal(format!(
                "{address} may be probed only on the ports of --probe-restrict-cidr {}, not on {port}",
                self.text
            )));
        }
        Ok(())
    }
}

/// The probe-target policy of one operator (`--probe-allow-cidr`, `--probe-deny-cidr`,
/// `--probe-restrict-cidr`, and the addresses it protects on its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbePolicy {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    /// Addresses no check may reach whatever the lists say, with what they are.
    protected: Vec<(IpAddr, String)>,
    namespace_rules: Vec<NamespaceRule>,
}

impl ProbePolicy {
    /// The policy from the flags' texts; the error names the bad entry.
    pub fn parse(allow: &[String], deny: &[String]) -> Result<Self, String> {
        let parse_all = |flag: &str, texts: &[String]| {
            texts
                .iter()
                .filter(|t| !t.trim().is_empty())
                .map(|t| t.parse::<Cidr>().map_err(|e| format!("{flag}: {e}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self {
            allow: parse_all("--probe-allow-cidr", allow)?,
            deny: parse_all("--probe-deny-cidr", deny)?,
            protected: Vec::new(),
            namespace_rules: Vec::new(),
        })
    }

    /// Adds the per-namespace rules (`--probe-restrict-cidr`); the error names the bad one.
    pub fn with_namespace_rules(mut self, rules: &[String]) -> Result<Self, String> {
        for text in rules.iter().filter(|t| !t.trim().is_empty()) {
            let rule = text.parse().map_err(|e| format!("--probe-restrict-cidr: {e}"))?;
            self.namespace_rules.push(rule);
        }
        Ok(self)
    }

    /// Whether a check of a record set in `namespace` may connect to `target`: the rules
    /// for everyone ([`Self::check`]), then those for namespaces.
    pub fn check_for(&self, target: SocketAddr, namespace: &str) -> Result<(), Refusal> {
        self.check(target.ip())?;
        self.namespace_rules
            .iter()
            .try_for_each(|rule| rule.check(target, namespace))
    }

    /// Adds an address that no check may reach (`what` says whose it is).
    pub fn protect(mut self, address: IpAddr, what: impl Into<String>) -> Self {
        self.protected.push((canonical(address), what.into()));
        self
    }

    /// Whether a check may connect to `address`; if not, the rule that refuses it.
    pub fn check(&self, address: IpAddr) -> Result<(), Refusal> {
        let address = canonical(address);
        if let Some(block) = self.deny.iter().find(|c| c.contains(address)) {
            return Err(Refusal(format!("{address} is denied by --probe-deny-cidr {block}")));
        }
        if let Some((_, what)) = self.protected.iter().find(|(a, _)| *a == address) {
            return Err(Refusal(format!("{address} is {what}: never probed")));
        }
        if let Some((class, class_block)) = special_class(address) {
            let named = self
                .allow
                .iter()
                .any(|c| c.contains(address) && c.is_within(&class_block));
            if !named {
                return Err(Refusal(format!(
                    "{address} is {class}: refused by default (--probe-allow-cidr can allow it by naming it, e.g. {address}/{})",
                    bit_width(address)
                )));
            }
            return Ok(());
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(address)) {
            return Err(Refusal(format!("{address} is in no --probe-allow-cidr block")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn policy(allow: &[&str], deny: &[&str]) -> ProbePolicy {
        let texts = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        ProbePolicy::parse(&texts(allow), &texts(deny)).expect("valid")
    }

    #[test]
    fn special_addresses_are_refused_by_default() {
        let default = ProbePolicy::default();
        for refused in [
            "127.0.0.1",
            "127.255.0.9",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.251",
            "ff02::1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let refusal = default.check(ip(refused)).expect_err(refused);
            assert!(refusal.0.contains("refused by default"), "{refused}: {refusal}");
        }
        let metadata = default.check(ip("169.254.169.254")).expect_err("metadata");
        assert!(metadata.0.contains("link-local"), "{metadata}");
        for allowed in ["10.1.2.3", "192.168.0.1", "172.16.0.1", "fd00::1"] {
            assert_eq!(default.check(ip(allowed)), Ok(()), "{allowed}");
        }
    }

    #[test]
    fn a_special_address_is_allowed_only_by_a_block_inside_its_class() {
        let demo = policy(&["127.0.0.2/32"], &[]);
        assert_eq!(demo.check(ip("127.0.0.2")), Ok(()));
        assert_eq!(
            demo.check(ip("::ffff:127.0.0.2")),
            Ok(()),
            "the mapped form is the same address"
        );
        assert!(demo.check(ip("127.0.0.3")).is_err());
        assert!(
            demo.check(ip("10.0.0.1")).is_err(),
            "an allow list allows only its blocks"
        );

        let wide = policy(&["0.0.0.0/0", "::/0"], &[]);
        for refused in ["127.0.0.1", "169.254.169.254", "::1", "fe80::1"] {
            assert!(wide.check(ip(refused)).is_err(), "0.0.0.0/0 does not open {refused}");
        }
        assert_eq!(wide.check(ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn deny_and_protected_addresses_win_over_allow() {
        let rules = policy(&["10.0.0.0/8", "127.0.0.0/8"], &["10.96.0.0/12"]);
        let rules = rules.protect(ip("127.0.0.1"), "the API server's address");
        assert_eq!(rules.check(ip("10.1.0.1")), Ok(()));
        let denied = rules.check(ip("10.96.0.1")).expect_err("denied");
        assert!(denied.0.contains("--probe-deny-cidr 10.96.0.0/12"), "{denied}");
        let protected = rules.check(ip("::ffff:127.0.0.1")).expect_err("protected");
        assert!(protected.0.contains("the API server's address"), "{protected}");
        assert_eq!(
            rules.check(ip("127.0.0.9")),
            Ok(()),
            "named by 127.0.0.0/8, inside loopback"
        );
        assert!(
            rules
                .check(ip("192.168.1.1"))
                .expect_err("outside")
                .0
                .contains("no --probe-allow-cidr")
        );
    }

    #[test]
    fn a_restricted_block_is_probed_only_from_its_namespaces_and_ports() {
        let rules = policy(&[], &[])
            .with_namespace_rules(&[
                "10.20.0.0/16=payments,shop".into(),
                "10.20.5.0/24:443,8000-8099=payments".into(),
                "fd00:20::/32:443=payments".into(),
            ])
            .expect("valid");
        let at = |text: &str| -> SocketAddr { text.parse().expect("a socket address") };
        assert_eq!(rules.check_for(at("10.20.1.1:80"), "shop"), Ok(()));
        assert_eq!(rules.check_for(at("10.20.1.1:80"), "payments"), Ok(()));
        let other = rules.check_for(at("10.20.1.1:80"), "web").expect_err("not listed");
        assert!(other.0.contains("only from namespaces payments,shop"), "{other}");
        assert!(other.0.contains("not from web"), "{other}");
        // Inside both blocks: both rules apply.
        assert_eq!(rules.check_for(at("10.20.5.9:8050"), "payments"), Ok(()));
        let port = rules.check_for(at("10.20.5.9:80"), "payments").expect_err("port");
        assert!(port.0.contains("not on 80"), "{port}");
        assert!(
            rules.check_for(at("10.20.5.9:443"), "shop").is_err(),
            "shop is not in the /24 rule"
        );
        // IPv6, and the mapped form of a restricted IPv4 address.
        assert_eq!(rules.check_for(at("[fd00:20::1]:443"), "payments"), Ok(()));
        assert!(rules.check_for(at("[fd00:20::1]:80"), "payments").is_err());
        assert!(rules.check_for(at("[::ffff:10.20.1.1]:80"), "web").is_err());
        // Outside every block: the general rules alone.
        assert_eq!(rules.check_for(at("10.30.0.1:80"), "web"), Ok(()));
        // A rule never opens what the general rules refuse.
        let loopback = policy(&[], &[])
            .with_namespace_rules(&["127.0.0.0/8=web".into()])
            .expect("valid");
        assert!(loopback.check_for(at("127.0.0.1:80"), "web").is_err());
    }

    #[test]
    fn namespace_rules_name_their_errors() {
        for (bad, why) in [
            ("10.0.0.0/8", "no '='"),
            ("10.0.0.1=web", "needs a prefix length"),
            ("10.0.0.0/8=", "no namespace"),
            ("10.0.0.0/8:0=web", "not a port"),
            ("10.0.0.0/8:90-80=web", "not a port"),
            ("10.0.0.0/40=web", "not an address block"),
        ] {
            let error = ProbePolicy::default()
                .with_namespace_rules(&[bad.into()])
                .expect_err(bad);
            assert!(
                error.starts_with("--probe-restrict-cidr: ") && error.contains(why),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn blocks_parse_and_name_their_errors() {
        assert_eq!(
            "10.1.2.3/8".parse::<Cidr>().map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            "fd00::1".parse::<Cidr>().map(|c| c.to_string()),
            Ok("fd00::1/128".into())
        );
        assert_eq!(
            "::ffff:10.0.0.0/104".parse::<Cidr>().map(|c| c.to_string()),
            Err("\"::ffff:10.0.0.0/104\" is not an address block (e.g. 10.0.0.0/8, 127.0.0.2/32, fd00::/8)".into()),
            "a mapped address is IPv4: its prefix is at most 32"
        );
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0/8", "x", "10.0.0.0/-1"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let error = ProbePolicy::parse(&["10.0.0.0/8".into(), "nope".into()], &[]).expect_err("bad entry");
        assert!(error.starts_with("--probe-allow-cidr: \"nope\""), "{error}");
    }

    /// The containment rule against a plain bit comparison, over many blocks and addresses
    /// (IPv4, IPv6 and IPv4-mapped IPv6): a small property test with a fixed seed.
    #[test]
    fn containment_agrees_with_a_bitwise_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let v4 = next() % 3 != 0;
            let (block, address, prefix, width) = if v4 {
                let base = next() as u32;
                let other = if next() % 2 == 0 {
                    base ^ (1 << (next() % 32))
                } else {
                    next() as u32
                };
                let prefix = (next() % 33) as u8;
                (
                    IpAddr::V4(Ipv4Addr::from(base)),
                    IpAddr::V4(Ipv4Addr::from(other)),
                    prefix,
                    32,
                )
            } else {
                let base = (u128::from(next()) << 64) | u128::from(next());
                let other = if next() % 2 == 0 {
                    base ^ (1 << (next() % 128))
                } else {
                    base.rotate_left(1)
                };
                let prefix = (next() % 129) as u8;
                (
                    IpAddr::V6(Ipv6Addr::from(base)),
                    IpAddr::V6(Ipv6Addr::from(other)),
                    prefix,
                    128,
                )
            };
            let cidr = Cidr::new(block, prefix).expect("prefix within width");
            let model = match (block, address) {
                (IpAddr::V4(b), IpAddr::V4(a)) => {
                    let shift = 32 - u32::from(prefix);
                    u32::from(b).checked_shr(shift).unwrap_or(0) == u32::from(a).checked_shr(shift).unwrap_or(0)
                }
                (IpAddr::V6(b), IpAddr::V6(a)) => {
                    let shift = 128 - u32::from(prefix);
                    u128::from(b).checked_shr(shift).unwrap_or(0) == u128::from(a).checked_shr(shift).unwrap_or(0)
                }
                _ => unreachable!(),
            };
            // Random IPv6 addresses are almost never IPv4-mapped; where one is, the model
            // does not apply (the address is judged as IPv4).
            if width == 128 && (canonical(block).is_ipv4() || canonical(address).is_ipv4()) {
                continue;
            }
            assert_eq!(cidr.contains(address), model, "{cidr} contains {address}?");
            if v4 {
                let mapped = IpAddr::V6(match address {
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                    IpAddr::V6(a) => a,
                });
                assert_eq!(cidr.contains(mapped), model, "{cidr} contains {mapped} (mapped)?");
            }
        }
    }
}
