//! Where a record set may publish: inside the zones the DNS servers serve, and, for a
//! zone restricted to some namespaces, only from those. Both binaries apply the same
//! rules: the operator reports a refusal in the record set's status, the DNS server
//! does not serve the name (so a status written by hand cannot get around it).

use std::collections::BTreeSet;

use crate::value::normalize_host;

/// Why a name may not be published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The name is under none of the served zones.
    OutsideZones { zones: Vec<String> },
    /// The innermost restricted zone containing the name does not list the namespace.
    NamespaceNotAllowed { zone: String, namespaces: Vec<String> },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutsideZones { zones } => write!(
                f,
                "spec.name is outside the zones the DNS servers serve ({}); nothing answers it",
                zones.join(", ")
            ),
            Self::NamespaceNotAllowed { zone, namespaces } => write!(
                f,
                "spec.name is in zone {zone}, where only namespaces {} may publish",
                namespaces.join(", ")
            ),
        }
    }
}

/// A zone whose names only some namespaces may publish.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Restriction {
    zone: String,
    namespaces: BTreeSet<String>,
}

/// The served zones and the namespace restrictions on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishRules {
    /// Normalized apexes; empty means "not configured": every name is allowed.
    zones: Vec<String>,
    /// The most specific zone first.
    restrictions: Vec<Restriction>,
}

/// Whether `name` (normalized, with the trailing dot) is `zone` or below it.
fn is_in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.strip_suffix(zone).is_some_and(|head| head.ends_with('.'))
}

fn labels(name: &str) -> usize {
    name.trim_end_matches('.').split('.').count()
}

/// The namespaces of a comma-separated list (`shop, payments`), blanks left out: the
/// right-hand side of `--restrict-zone` and of the operator's `--probe-restrict-cidr`.
pub fn namespace_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

impl PublishRules {
    /// `zones`: the served apexes (empty: names are not checked against zones).
    /// `restrictions`: entries `ZONE=NAMESPACE[,NAMESPACE...]`.
    pub fn parse(zones: &[String], restrictions: &[String]) -> Result<Self, String> {
        let zone = |text: &str| normalize_host(text.trim()).ok_or_else(|| format!("{text:?} is not a zone name"));
        let zones = zones.iter().map(|z| zone(z)).collect::<Result<Vec<_>, _>>()?;
        let mut parsed = Vec::new();
        for entry in restrictions.iter().filter(|e| !e.trim().is_empty()) {
            let (name, namespaces) = entry
                .split_once('=')
                .ok_or_else(|| format!("{entry:?}: expected ZONE=NAMESPACE[,NAMESPACE...]"))?;
            let name = zone(name)?;
            if !zones.is_empty() && !zones.iter().any(|z| is_in_zone(&name, z)) {
                return Err(format!("{entry:?}: {name} is not in a served zone"));
            }
            let namespaces: BTreeSet<String> = namespace_list(namespaces).into_iter().collect();
            if namespaces.is_empty() {
                return Err(format!("{entry:?}: no namespace listed"));
            }
            parsed.push(Restriction { zone: name, namespaces });
        }
        parsed.sort_by_key(|r| std::cmp::Reverse(labels(&r.zone)));
        Ok(Self {
            zones,
            restrictions: parsed,
        })
    }

    /// Whether a record set in `namespace` may publish `name` (normalized).
    pub fn check(&self, name: &str, namespace: &str) -> Result<(), Refusal> {
        if !self.zones.is_empty() && !self.zones.iter().any(|z| is_in_zone(name, z)) {
            return Err(Refusal::OutsideZones {
                zones: self.zones.clone(),
            });
        }
        match self.restrictions.iter().find(|r| is_in_zone(name, &r.zone)) {
            Some(r) if !r.namespaces.contains(namespace) => Err(Refusal::NamespaceNotAllowed {
                zone: r.zone.clone(),
                namespaces: r.namespaces.iter().cloned().collect(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(zones: &[&str], restrictions: &[&str]) -> PublishRules {
        let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        PublishRules::parse(&owned(zones), &owned(restrictions)).expect("valid rules")
    }

    #[test]
    fn names_outside_the_zones_are_refused() {
        let rules = rules(&["example.internal."], &[]);
        assert_eq!(rules.check("web.example.internal.", "a"), Ok(()));
        assert_eq!(rules.check("example.internal.", "a"), Ok(()));
        let refused = rules.check("web.otherexample.internal.", "a");
        assert!(matches!(refused, Err(Refusal::OutsideZones { .. })), "{refused:?}");
        assert!(rules.check("evil.com.", "a").is_err());
        assert_eq!(
            PublishRules::default().check("evil.com.", "a"),
            Ok(()),
            "no zones configured"
        );
    }

    #[test]
    fn the_innermost_restricted_zone_decides() {
        let rules = rules(
            &["Example.Internal"],
            &[
                "pay.example.internal.=payments,payments-canary",
                "open.pay.example.internal=everyone",
            ],
        );
        assert_eq!(rules.check("api.pay.example.internal.", "payments"), Ok(()));
        assert_eq!(rules.check("pay.example.internal.", "payments-canary"), Ok(()));
        assert_eq!(
            rules.check("api.pay.example.internal.", "shop"),
            Err(Refusal::NamespaceNotAllowed {
                zone: "pay.example.internal.".into(),
                namespaces: vec!["payments".into(), "payments-canary".into()],
            })
        );
        assert_eq!(rules.check("x.open.pay.example.internal.", "everyone"), Ok(()));
        assert!(rules.check("x.open.pay.example.internal.", "payments").is_err());
        assert_eq!(
            rules.check("web.example.internal.", "shop"),
            Ok(()),
            "unrestricted part"
        );
        assert_eq!(rules.check("xpay.example.internal.", "shop"), Ok(()), "label boundary");
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let error = |r: &str| {
            PublishRules::parse(&["example.internal.".into()], &[r.into()]).expect_err("a bad rule is refused")
        };
        assert!(error("pay.example.internal.").contains("ZONE=NAMESPACE"));
        assert!(error("pay.example.internal.=").contains("no namespace"));
        assert!(error("pay.other.test.=a").contains("not in a served zone"));
        assert!(error("bad..zone=a").contains("not a zone name"));
    }
}
