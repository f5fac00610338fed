//! One status value to one DNS record: parsed for the record type (a hand-written status
//! is not trusted), encoded once for the fast path, and for SRV values that point at pods
//! the synthesized target name with its address record as glue.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType as DnsType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use mvdns_api::RecordType;
use mvdns_api::value::{RecordData, parse_value};

use super::model::Entry;

/// One status value as a record. An SRV value with a `port` is a pod address: the record
/// points at `<address with dashes>.<name>` (as Kubernetes names pods behind headless
/// Services), and that name's address record goes along as glue.
pub fn entry_for(owner: &Name, record_type: RecordType, ttl: u32, value: &str, port: Option<u16>) -> Option<Entry> {
    if let (RecordType::SRV, Some(port)) = (record_type, port) {
        let ip: IpAddr = value.parse().ok()?;
        let target = pod_target(owner, ip)?;
        let glue = Record::from_rdata(target.clone(), ttl, address_rdata(ip));
        let srv = RData::SRV(SRV::new(0, 1, port, target));
        let record = Record::from_rdata(owner.clone(), ttl, srv);
        return Some(Entry {
            wire: wire_without_owner(&record),
            record,
            glue: Some(glue),
            zone: None,
            weight: 1,
        });
    }
    let rdata = match parse_value(record_type, value).ok()? {
        RecordData::A(ip) => RData::A(A(ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(ip)),
        RecordData::Cname(target) => RData::CNAME(CNAME(parse_name(&target)?)),
        RecordData::Ns(target) => RData::NS(NS(parse_name(&target)?)),
        RecordData::Mx { preference, exchange } => RData::MX(MX::new(preference, parse_name(&exchange)?)),
        RecordData::Srv {
            priority,
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(priority, weight, port, parse_name(&target)?)),
        RecordData::Txt(text) => RData::TXT(TXT::new(txt_strings(&text))),
    };
    let record = Record::from_rdata(owner.clone(), ttl, rdata);
    Some(Entry {
        wire: wire_without_owner(&record),
        record,
        glue: None,
        zone: None,
        weight: 1,
    })
}

/// `10.0.0.7` under `web.example.internal.` is `10-0-0-7.web.example.internal.`;
/// `2001:db8::7` is `2001-db8--7.web.example.internal.`.
fn pod_target(owner: &Name, ip: IpAddr) -> Option<Name> {
    let label = ip.to_string().replace(['.', ':'], "-");
    owner.prepend_label(label.as_str()).ok()
}

fn address_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// A TXT value as character-strings of at most 255 bytes each (RFC 1035 section 3.3),
/// split on character boundaries.
fn txt_strings(text: &str) -> Vec<String> {
    let mut strings = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 255 {
            strings.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    strings.push(current);
    strings
}

/// A record's TYPE, CLASS, TTL, RDLENGTH and RDATA (no owner name), as hickory-proto
/// encodes them.
pub(super) fn wire_without_owner(record: &Record) -> Box<[u8]> {
    let mut rdata = Vec::with_capacity(32);
    let mut encoder = BinEncoder::new(&mut rdata);
    // Encoding data we built ourselves from parsed values cannot fail; an empty RDATA
    // would only make the fast path decline the record set.
    let _ = record.data.emit(&mut encoder);
    let mut wire = Vec::with_capacity(10 + rdata.len());
    wire.extend_from_slice(&u16::from(record.record_type()).to_be_bytes());
    wire.extend_from_slice(&u16::from(record.dns_class).to_be_bytes());
    wire.extend_from_slice(&record.ttl.to_be_bytes());
    wire.extend_from_slice(&u16::try_from(rdata.len()).unwrap_or(0).to_be_bytes());
    wire.extend_from_slice(&rdata);
    wire.into_boxed_slice()
}

pub(super) fn parse_name(fqdn: &str) -> Option<Name> {
    Name::from_ascii(fqdn).ok().map(|n| n.to_lowercase())
}

pub(super) fn dns_type(record_type: RecordType) -> DnsType {
    match record_type {
        RecordType::A => DnsType::A,
        RecordType::AAAA => DnsType::AAAA,
        RecordType::SRV => DnsType::SRV,
        RecordType::MX => DnsType::MX,
        RecordType::TXT => DnsType::TXT,
        RecordType::CNAME => DnsType::CNAME,
        RecordType::NS => DnsType::NS,
    }
}
