//! Parsing of record values and DNS names, the Rust twin of the CEL rules in
//! [`crate::rules`]. The operator and the DNS server use it on every value they read:
//! an object written before a rule existed, or a status written by hand, must give a
//! clear error and never a panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::RecordType;

/// The data of one record, parsed for its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// Target host, normalised to lower case with a trailing dot.
    Cname(String),
    Ns(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    Txt(String),
}

/// Why a value does not fit its record type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{value:?} is not an IPv4 address (type A wants e.g. 192.0.2.10)")]
    NotIpv4 { value: String },
    #[error("{value:?} is not an IPv6 address (type AAAA wants e.g. 2001:db8::10)")]
    NotIpv6 { value: String },
    #[error("{value:?} is not a host name (labels of letters, digits, '-' or '_', 1-63 characters each)")]
    NotHost { value: String },
    #[error("{value:?} is not 'PREFERENCE HOST' (type MX wants e.g. '10 mail.example.com.')")]
    NotMx { value: String },
    #[error("{value:?} is not 'PRIORITY WEIGHT PORT HOST' (type SRV wants e.g. '10 5 8080 web.example.com.')")]
    NotSrv { value: String },
    #[error("TXT value is empty or longer than 512 characters")]
    BadTxt,
}

/// Parses a static value as the data of a record of type `record_type`.
pub fn parse_value(record_type: RecordType, value: &str) -> Result<RecordData, ValueError> {
    let owned = || value.to_owned();
    match record_type {
        RecordType::A => value
            .parse()
            .map(RecordData::A)
            .map_err(|_| ValueError::NotIpv4 { value: owned() }),
        RecordType::AAAA => value
            .parse::<Ipv6Addr>()
            .ok()
            // An IPv4-mapped form like ::ffff:1.2.3.4 parses in Rust but is refused by the
            // API server's isIP(); refuse it here too so both agree.
            .filter(|_| !value.contains('.'))
            .map(RecordData::Aaaa)
            .ok_or(ValueError::NotIpv6 { value: owned() }),
        RecordType::CNAME => normalize_host(value)
            .map(RecordData::Cname)
            .ok_or(ValueError::NotHost { value: owned() }),
        RecordType::NS => normalize_host(value)
            .map(RecordData::Ns)
            .ok_or(ValueError::NotHost { value: owned() }),
        RecordType::MX => parse_mx(value).ok_or(ValueError::NotMx { value: owned() }),
        RecordType::SRV => parse_srv(value).ok_or(ValueError::NotSrv { value: owned() }),
        RecordType::TXT if !value.is_empty() && value.len() <= 512 => Ok(RecordData::Txt(owned())),
        RecordType::TXT => Err(ValueError::BadTxt),
    }
}

fn parse_mx(value: &str) -> Option<RecordData> {
    let mut fields = value.split(' ').filter(|f| !f.is_empty());
    let preference = parse_u16(fields.next()?)?;
    let exchange = normalize_host(fields.next()?)?;
    fields
        .next()
        .is_none()
        .then_some(RecordData::Mx { preference, exchange })
}

fn parse_srv(value: &str) -> Option<RecordData> {
    let mut fields = value.split(' ').filter(|f| !f.is_empty());
    let priority = parse_u16(fields.next()?)?;
    let weight = parse_u16(fields.next()?)?;
    let port = parse_u16(fields.next()?)?;
    let target = normalize_host(fields.next()?)?;
    fields.next().is_none().then_some(RecordData::Srv {
        priority,
        weight,
        port,
        target,
    })
}

/// 1-5 ASCII digits, at most 65535 (the CEL rule's `[0-9]{1,5}` and `<= 65535`).
fn parse_u16(field: &str) -> Option<u16> {
    (field.len() <= 5 && field.bytes().all(|b| b.is_ascii_digit()))
        .then(|| field.parse().ok())
        .flatten()
}

/// Lower-cases a host name and adds the trailing dot; `None` if it is not a valid
/// host name. DNS names compare case-insensitively, so everything inside mvdns
/// works on this form.
pub fn normalize_host(host: &str) -> Option<String> {
    let bare = host.strip_suffix('.').unwrap_or(host);
    let valid = !bare.is_empty() && bare.len() <= 253 && bare.split('.').all(is_label);
    valid.then(|| format!("{}.", bare.to_ascii_lowercase()))
}

/// Normalises a record set's `spec.name`: a host name with at least two labels.
pub fn normalize_fqdn(name: &str) -> Option<String> {
    normalize_host(name).filter(|n| n.trim_end_matches('.').contains('.'))
}

/// Whether two host names are the same name, as far as their normalised forms go: for
/// valid names exactly when [`normalize_host`] gives the same. Cheap (no allocation), to
/// pick the few record sets that share a name before normalising theirs.
pub fn same_host(a: &str, b: &str) -> bool {
    let a = a.strip_suffix('.').unwrap_or(a);
    let b = b.strip_suffix('.').unwrap_or(b);
    a.eq_ignore_ascii_case(b)
}

fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-';
    (1..=63).contains(&bytes.len())
        && bytes.iter().all(allowed)
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_match_the_family() {
        assert_eq!(
            parse_value(RecordType::A, "192.0.2.1"),
            Ok(RecordData::A(Ipv4Addr::new(192, 0, 2, 1)))
        );
        for bad in ["300.1.1.1", "1.2.3", "01.2.3.4", "2001:db8::1", "", " 1.2.3.4"] {
            assert!(parse_value(RecordType::A, bad).is_err(), "{bad}");
        }
        assert!(parse_value(RecordType::AAAA, "2001:db8::1").is_ok());
        for bad in ["192.0.2.1", "::ffff:1.2.3.4", "2001:db8::g", "fe80::1%eth0"] {
            assert!(parse_value(RecordType::AAAA, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_names_are_normalised() {
        assert_eq!(normalize_host("Web.Example.COM"), Some("web.example.com.".into()));
        assert_eq!(
            normalize_host("_sip._tcp.example.com."),
            Some("_sip._tcp.example.com.".into())
        );
        for bad in [
            "-a.example.",
            "a..b",
            "a b.c",
            "*.example.com",
            ".",
            "",
            &"a".repeat(64),
        ] {
            assert_eq!(normalize_host(bad), None, "{bad}");
        }
        assert_eq!(normalize_fqdn("localhost"), None);
        assert!(same_host("Web.Example.internal.", "web.example.INTERNAL"));
        assert!(!same_host("web.example.internal", "web2.example.internal"));
        assert!(!same_host("web.example.internal..", "web.example.internal"));
        assert_eq!(
            normalize_fqdn("web.shop.example.internal."),
            Some("web.shop.example.internal.".into())
        );
    }

    #[test]
    fn mx_and_srv_fields() {
        assert_eq!(
            parse_value(RecordType::MX, "10 Mail.example.com."),
            Ok(RecordData::Mx {
                preference: 10,
                exchange: "mail.example.com.".into()
            })
        );
        assert_eq!(
            parse_value(RecordType::SRV, "1  5 8080 web.example."),
            Ok(RecordData::Srv {
                priority: 1,
                weight: 5,
                port: 8080,
                target: "web.example.".into()
            })
        );
        for bad in [
            "10",
            "65536 mail.example.",
            "10 mail.example. extra",
            "-1 mail.example.",
        ] {
            assert!(parse_value(RecordType::MX, bad).is_err(), "{bad}");
        }
        for bad in ["1 2 3", "1 2 70000 x.example.", "1 2 3 bad..host"] {
            assert!(parse_value(RecordType::SRV, bad).is_err(), "{bad}");
        }
    }
}
