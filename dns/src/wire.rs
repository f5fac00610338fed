//! Request bytes to response bytes: decoding, the checks every DNS server does before
//! answering (FORMERR, NOTIMP, EDNS version), the EDNS(0) size rules and truncation.
//! Pure: the socket loops in [`crate::server`] only move bytes.
//!
//! hickory-proto is the codec of record: requests are decoded and responses encoded with
//! its `Message`, so names, compression and EDNS follow one well-tested implementation.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use std::net::IpAddr;

use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use rand::Rng;

use crate::answer::{Question, answer};
use crate::index::Index;
use crate::topology::ClientZones;
use crate::zone::Zones;

/// Which transport a request came on: it decides the response size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// The UDP payload size this server advertises and the largest it sends, whatever the
/// client offers: 1232 bytes fits every common path without IP fragmentation (DNS flag
/// day 2020) and bounds what one spoofed query can make the server send.
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A response ready to send, and what the metrics want to know about it.
#[derive(Clone, Debug)]
pub struct Response {
    pub bytes: Vec<u8>,
    pub query_type: Option<RecordType>,
    pub rcode: ResponseCode,
    pub truncated: bool,
}

/// The state a request is answered from.
#[derive(Clone, Copy, Debug)]
pub struct Served<'a> {
    pub index: &'a Index,
    pub zones: &'a Zones,
    pub client_zones: &'a ClientZones,
    /// False until the first full sync: the server answers SERVFAIL then, so a resolver
    /// tries another server instead of caching an NXDOMAIN for a name that exists.
    pub synced: bool,
}

/// Answers one request. `None` means drop it: too short to carry an ID, or not a query
/// (answering responses would let two servers loop).
pub fn respond<R: Rng + ?Sized>(
    packet: &[u8],
    transport: Transport,
    source: IpAddr,
    served: Served<'_>,
    rng: &mut R,
) -> Option<Response> {
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => {
            return Some(error_response(
                header.metadata.id,
                header.metadata.op_code,
                ResponseCode::FormErr,
            ));
        }
    };
    // The client's advertised size bounds UDP responses; the OPT we send advertises ours.
    let limit = size_limit(transport, request.edns.as_ref().map(Edns::max_payload));
    if request.metadata.op_code != OpCode::Query {
        return Some(finish(reply_to(&request, ResponseCode::NotImp), limit, None));
    }
    if request.queries.len() != 1 {
        return Some(finish(reply_to(&request, ResponseCode::FormErr), limit, None));
    }
    if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        return Some(finish(reply_to(&request, ResponseCode::BADVERS), limit, None));
    }
    let query = &request.queries[0];
    let query_type = Some(query.query_type());
    if !served.synced {
        return Some(finish(reply_to(&request, ResponseCode::ServFail), limit, query_type));
    }

    let question = Question {
        name: query.name(),
        record_type: query.query_type(),
        class: query.query_class(),
    };
    let subnet = client_subnet(&request);
    let client = subnet.as_ref().map_or(source, ClientSubnet::addr);
    let client_zone = served.client_zones.topology_zone(client);
    let found = answer(served.index, served.zones, &question, client_zone, rng);
    let mut response = reply_to(&request, found.rcode);
    if let (Some(subnet), Some(edns)) = (subnet, response.edns.as_mut()) {
        // RFC 7871 section 7.2.1: echo the option; the scope says how much of the
        // address the answer depended on (none, unless zone-aware selection used it).
        let scope = if found.zone_dependent {
            subnet.source_prefix()
        } else {
            0
        };
        let echoed = ClientSubnet::new(subnet.addr(), subnet.source_prefix(), scope);
        edns.options_mut().insert(EdnsOption::Subnet(echoed));
    }
    response.metadata.authoritative = found.authoritative;
    response.answers = found.answers;
    response.authorities = found.authorities;
    response.additionals = found.additionals;
    Some(finish(response, limit, query_type))
}

/// The EDNS Client Subnet option of the request, if any: the address of the client a
/// resolver asks for (RFC 7871).
fn client_subnet(request: &Message) -> Option<ClientSubnet> {
    match request.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(subnet) => Some(*subnet),
        _ => None,
    }
}

/// The response skeleton: ID, opcode, RD and the question echoed as asked; an OPT
/// record advertising our own size when the request had one (RFC 6891 section 7).
fn reply_to(request: &Message, rcode: ResponseCode) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.metadata.response_code = rcode;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD).set_version(0);
        response.edns = Some(edns);
    }
    response
}

/// The largest response a client may get over `transport` (RFC 6891 section 6.2.5:
/// below 512 counts as 512).
pub fn size_limit(transport: Transport, client_payload: Option<u16>) -> usize {
    match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => usize::from(client_payload.unwrap_or(512).clamp(512, MAX_UDP_PAYLOAD)),
    }
}

/// Encodes `response` within the transport's size limit. Additional records (SRV glue)
/// are optional and go first, without TC (RFC 2181 section 9); when the answer itself
/// does not fit, the response carries as many records as fit, with TC set, and the
/// client retries over TCP.
///
/// The limit is checked on the finished bytes rather than with hickory's size-limited
/// encoder: that one writes each name in full before replacing it with a compression
/// pointer, so it gives up on long names that would fit once compressed.
fn finish(mut response: Message, limit: usize, query_type: Option<RecordType>) -> Response {
    let rcode = response.metadata.response_code;
    let done = |bytes: Vec<u8>, truncated: bool| Response {
        bytes,
        query_type,
        rcode,
        truncated,
    };
    let Some(bytes) = encode(&response) else {
        return error_response(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail);
    };
    if bytes.len() <= limit {
        return done(bytes, false);
    }
    response.additionals.clear();
    response.metadata.truncation = false;
    if let Some(bytes) = encode(&response).filter(|b| b.len() <= limit) {
        return done(bytes, false);
    }
    response.metadata.truncation = true;
    while response.answers.pop().is_some() || response.authorities.pop().is_some() {
        if let Some(bytes) = encode(&response).filter(|b| b.len() <= limit) {
            return done(bytes, true);
        }
    }
    // Not even the question fits: only a hostile request gets here; answer it bare.
    error_response(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail)
}

fn encode(message: &Message) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    message.emit(&mut encoder).ok()?;
    Some(bytes)
}

/// FORMERR (or another error) for a request whose body did not decode: the header
/// alone, with the ID so the client can match it.
fn error_response(id: u16, op_code: OpCode, rcode: ResponseCode) -> Response {
    let mut message = Message::response(id, op_code);
    message.metadata.response_code = rcode;
    let bytes = encode(&message).unwrap_or_default();
    Response {
        bytes,
        query_type: None,
        rcode,
        truncated: false,
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use serde_json::json;

    use super::*;
    use crate::index::build_index;
    use crate::testing::{record_set, zones};

    const LOCALHOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn index(name: &str, record_type: &str, values: &[String]) -> Index {
        let statuses: Vec<_> = values
            .iter()
            .map(|v| json!({"value": v, "healthy": true, "source": v}))
            .collect();
        let specs: Vec<_> = values.iter().map(|v| json!({"value": v})).collect();
        let spec = json!({"name": name, "type": record_type, "values": specs});
        let rs = record_set("a", "x", "2026-01-01T00:00:00Z", spec, json!(statuses));
        build_index(&[&rs], &zones(), 1)
    }

    fn query(name: &str, record_type: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut message = Message::query();
        message.metadata.id = 77;
        message.add_query(Query::query(Name::from_ascii(name).expect("name"), record_type));
        if let Some(size) = edns {
            let mut opt = Edns::new();
            opt.set_max_payload(size);
            message.set_edns(opt);
        }
        message.to_vec().expect("encode")
    }

    fn ask(index: &Index, packet: &[u8], transport: Transport) -> Option<Response> {
        let zones = zones();
        let client_zones = ClientZones::default();
        let served = Served {
            index,
            zones: &zones,
            client_zones: &client_zones,
            synced: true,
        };
        respond(packet, transport, LOCALHOST, served, &mut StdRng::seed_from_u64(3))
    }

    #[test]
    fn garbage_gets_formerr_and_responses_are_dropped() {
        let index = Index::default();
        assert!(ask(&index, &[1, 2, 3], Transport::Udp).is_none(), "no room for an ID");
        let mut garbage = vec![0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        garbage.extend_from_slice(&[0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01]); // a name pointing at itself
        let formerr = ask(&index, &garbage, Transport::Udp).expect("answered");
        let decoded = Message::from_vec(&formerr.bytes).expect("decodes");
        assert_eq!(
            (decoded.metadata.id, decoded.metadata.response_code),
            (0xabcd, ResponseCode::FormErr)
        );
        let mut response = query("a.example.internal.", RecordType::A, None);
        response[2] |= 0x80; // QR: a response
        assert!(ask(&index, &response, Transport::Udp).is_none());
    }

    #[test]
    fn compressed_answers_fit_and_big_ones_truncate_on_udp_only() {
        let long = format!("{}.{}.long.example.internal.", "a".repeat(63), "b".repeat(63));
        let addresses: Vec<String> = (1..=8).map(|i| format!("2001:db8::{i}")).collect();
        let index = index(&long, "AAAA", &addresses);
        let response = ask(&index, &query(&long, RecordType::AAAA, None), Transport::Udp).expect("answered");
        let decoded = Message::from_vec(&response.bytes).expect("decodes");
        assert!(!response.truncated, "{} bytes", response.bytes.len());
        assert_eq!(decoded.answers.len(), 8);
        assert!(response.bytes.len() <= 512);

        let texts: Vec<String> = (0..8).map(|i| format!("{i}{}", "x".repeat(199))).collect();
        let index = self::index("text.example.internal.", "TXT", &texts);
        for (edns, limit) in [(None, 512), (Some(4096), 1232), (Some(100), 512)] {
            let packet = query("text.example.internal.", RecordType::TXT, edns);
            let response = ask(&index, &packet, Transport::Udp).expect("answered");
            assert!(
                response.truncated && response.bytes.len() <= limit,
                "{edns:?}: {}",
                response.bytes.len()
            );
            let decoded = Message::from_vec(&response.bytes).expect("decodes");
            assert_eq!(decoded.edns.is_some(), edns.is_some(), "OPT echoed when asked");
        }
        let tcp = ask(
            &index,
            &query("text.example.internal.", RecordType::TXT, None),
            Transport::Tcp,
        )
        .expect("answered");
        assert!(!tcp.truncated);
        assert_eq!(Message::from_vec(&tcp.bytes).expect("decodes").answers.len(), 8);
    }

    #[test]
    fn only_plain_queries_with_one_question_are_answered() {
        let index = Index::default();
        let mut notify = query("example.internal.", RecordType::SOA, None);
        notify[2] = (notify[2] & !0x78) | (4 << 3); // opcode NOTIFY
        let response = ask(&index, &notify, Transport::Udp).expect("answered");
        assert_eq!(response.rcode, ResponseCode::NotImp);
        let mut two = Message::query();
        two.add_query(Query::query(
            Name::from_ascii("a.example.internal.").expect("name"),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("b.example.internal.").expect("name"),
            RecordType::A,
        ));
        let response = ask(&index, &two.to_vec().expect("encode"), Transport::Udp).expect("answered");
        assert_eq!(response.rcode, ResponseCode::FormErr);
        let client_zones = ClientZones::default();
        let unsynced = Served {
            index: &index,
            zones: &zones(),
            client_zones: &client_zones,
            synced: false,
        };
        let packet = query("a.example.internal.", RecordType::A, None);
        let response = respond(
            &packet,
            Transport::Udp,
            LOCALHOST,
            unsynced,
            &mut StdRng::seed_from_u64(1),
        )
        .expect("answered");
        assert_eq!(
            response.rcode,
            ResponseCode::ServFail,
            "never NXDOMAIN before the first sync"
        );
    }
}
