//! The zones this server is authoritative for, from its configuration, and the SOA and
//! NS records synthesized at each apex.

use hickory_proto::rr::rdata::{NS, SOA};
use hickory_proto::rr::{LowerName, Name, RData, Record};

use mvdns_api::zones::PublishRules;

use crate::Error;

/// Zone settings as configured (flags / chart values).
#[derive(Clone, Debug)]
pub struct ZoneSettings {
    /// Apex names, e.g. `example.internal.`; several allowed.
    pub apexes: Vec<String>,
    /// SOA MNAME (primary server). Default: the first of `nameservers`, else `ns.<apex>`
    /// per zone.
    pub soa_mname: Option<String>,
    /// SOA RNAME (the responsible mailbox, `hostmaster.example.com.`). Default:
    /// `hostmaster.<apex>` per zone.
    pub soa_rname: Option<String>,
    /// NS host names at every apex. Default: the SOA MNAME.
    pub nameservers: Vec<String>,
    /// SOA MINIMUM, which RFC 2308 makes the TTL of negative answers.
    pub negative_ttl: u32,
    /// TTL of the apex SOA and NS records.
    pub apex_ttl: u32,
    /// Zones only some namespaces may publish in: `ZONE=NAMESPACE[,NAMESPACE...]`.
    pub restricted: Vec<String>,
}

impl Default for ZoneSettings {
    fn default() -> Self {
        Self {
            apexes: Vec::new(),
            soa_mname: None,
            soa_rname: None,
            nameservers: Vec::new(),
            negative_ttl: 30,
            apex_ttl: 300,
            restricted: Vec::new(),
        }
    }
}

/// One served zone with its names parsed.
#[derive(Clone, Debug)]
pub struct Zone {
    pub apex: LowerName,
    pub apex_name: Name,
    pub mname: Name,
    pub rname: Name,
    pub nameservers: Vec<Name>,
    pub negative_ttl: u32,
    pub apex_ttl: u32,
}

/// SOA REFRESH, RETRY and EXPIRE. They only matter to secondaries, which mvdns does not
/// have (every replica reads the API server), but zone checkers hold any zone to the
/// RFC 1912 section 2.2 ranges, and a value outside them is a warning in every report:
/// zonemaster asks for REFRESH of at least 4 hours (ZONE02), RETRY of at least 1 hour
/// and below REFRESH (ZONE03, ZONE04), EXPIRE of at least 7 days and above REFRESH
/// (ZONE05). These are RIPE-203's recommended values, inside all of those ranges.
pub const SOA_REFRESH: i32 = 86_400;
pub const SOA_RETRY: i32 = 7_200;
pub const SOA_EXPIRE: i32 = 3_600_000;

impl Zone {
    /// The apex SOA; `serial` changes whenever the served data may have changed.
    pub fn soa(&self, serial: u32) -> Record {
        let soa = SOA::new(
            self.mname.clone(),
            self.rname.clone(),
            serial,
            SOA_REFRESH,
            SOA_RETRY,
            SOA_EXPIRE,
            self.negative_ttl,
        );
        // RFC 2308 section 3: the SOA in a negative answer carries min(TTL, MINIMUM).
        Record::from_rdata(
            self.apex_name.clone(),
            self.negative_ttl.min(self.apex_ttl),
            RData::SOA(soa),
        )
    }

    pub fn ns_records(&self) -> Vec<Record> {
        self.nameservers
            .iter()
            .map(|ns| Record::from_rdata(self.apex_name.clone(), self.apex_ttl, RData::NS(NS(ns.clone()))))
            .collect()
    }
}

/// Every configured zone, the most specific first so that nested zones resolve to the
/// innermost one.
#[derive(Clone, Debug)]
pub struct Zones {
    zones: Vec<Zone>,
    /// Which namespaces may publish where (the operator applies the same rules).
    pub publish: PublishRules,
}

impl Zones {
    pub fn new(settings: &ZoneSettings) -> Result<Self, Error> {
        if settings.apexes.is_empty() {
            return Err(Error::Config("at least one zone is required".into()));
        }
        let mut zones = Vec::with_capacity(settings.apexes.len());
        let configured_nameservers: Vec<Name> =
            settings.nameservers.iter().map(|n| fqdn(n)).collect::<Result<_, _>>()?;
        for apex in &settings.apexes {
            let apex_name = fqdn(apex)?;
            // The MNAME names a server that answers for the zone: a configured one when
            // there is one (`ns.<apex>` would not resolve, and zonemaster's ZONE01 and
            // MNAME checks warn), a conventional name otherwise.
            let mname = match (&settings.soa_mname, configured_nameservers.first()) {
                (Some(mname), _) => fqdn(mname)?,
                (None, Some(first)) => first.clone(),
                (None, None) => fqdn(&format!("ns.{apex_name}"))?,
            };
            let rname = match &settings.soa_rname {
                Some(rname) => fqdn(rname)?,
                None => fqdn(&format!("hostmaster.{apex_name}"))?,
            };
            let nameservers = if configured_nameservers.is_empty() {
                vec![mname.clone()]
            } else {
                configured_nameservers.clone()
            };
            zones.push(Zone {
                apex: LowerName::new(&apex_name),
                apex_name,
                mname,
                rname,
                nameservers,
                negative_ttl: settings.negative_ttl,
                apex_ttl: settings.apex_ttl,
            });
        }
        zones.sort_by_key(|z| std::cmp::Reverse(z.apex.num_labels()));
        zones.dedup_by(|a, b| a.apex == b.apex);
        let publish = PublishRules::parse(&settings.apexes, &settings.restricted).map_err(Error::Config)?;
        Ok(Self { zones, publish })
    }

    /// The innermost zone containing `name`, if any.
    pub fn zone_of(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.apex.zone_of(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }
}

/// Parses a configured name as a lower-case FQDN.
fn fqdn(name: &str) -> Result<Name, Error> {
    let with_dot = if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    };
    Name::from_ascii(&with_dot)
        .map(|n| n.to_lowercase())
        .map_err(|e| Error::Config(format!("{name:?} is not a DNS name: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lower(name: &str) -> LowerName {
        LowerName::new(&Name::from_ascii(name).expect("name"))
    }

    #[test]
    fn innermost_zone_wins_and_names_default_per_zone() {
        let zones = Zones::new(&ZoneSettings {
            apexes: vec!["Example.internal".into(), "sub.example.internal.".into()],
            ..ZoneSettings::default()
        })
        .expect("zones");
        let zone = zones.zone_of(&lower("a.SUB.example.internal.")).expect("in zone");
        assert_eq!(zone.apex_name.to_string(), "sub.example.internal.");
        assert_eq!(zone.mname.to_string(), "ns.sub.example.internal.");
        let outer = zones.zone_of(&lower("b.example.internal.")).expect("in zone");
        assert_eq!(outer.rname.to_string(), "hostmaster.example.internal.");
        assert!(zones.zone_of(&lower("example.com.")).is_none());
        assert!(zones.zone_of(&lower("internal.")).is_none());
    }

    #[test]
    fn the_mname_is_the_first_nameserver_unless_set_and_the_timers_pass_zone_checks() {
        let with_servers = |mname: Option<&str>| {
            Zones::new(&ZoneSettings {
                apexes: vec!["example.internal.".into()],
                nameservers: vec!["dns1.example.internal".into(), "dns2.example.internal.".into()],
                soa_mname: mname.map(str::to_owned),
                ..ZoneSettings::default()
            })
            .expect("zones")
        };
        let zones = with_servers(None);
        let zone = zones.iter().next().expect("one zone");
        assert_eq!(zone.mname.to_string(), "dns1.example.internal.");
        assert_eq!(zone.nameservers.len(), 2);
        let zones = with_servers(Some("primary.example.internal."));
        let zone = zones.iter().next().expect("one zone");
        assert_eq!(zone.mname.to_string(), "primary.example.internal.");

        let RData::SOA(soa) = zone.soa(7).data else {
            panic!("an SOA")
        };
        // zonemaster's ZONE02..ZONE05 ranges (RFC 1912 section 2.2).
        assert!(soa.refresh >= 14_400);
        assert!(soa.retry >= 3_600 && soa.retry < soa.refresh);
        assert!(soa.expire >= 604_800 && soa.expire > soa.refresh);
        assert_eq!(soa.serial, 7);
    }

    #[test]
    fn zones_are_required_and_must_be_names() {
        assert!(Zones::new(&ZoneSettings::default()).is_err());
        let bad = ZoneSettings {
            apexes: vec!["a..b".into()],
            ..ZoneSettings::default()
        };
        assert!(Zones::new(&bad).is_err());
    }
}
