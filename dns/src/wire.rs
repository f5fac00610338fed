//! Request bytes to response bytes: decoding, the checks every DNS server does before
//! answering (FORMERR, NOTIMP, EDNS version), the EDNS(0) size rules and truncation.
//! Pure: the socket loops in [`crate::server`] only move bytes.
//!
//! hickory-proto is the codec of record: requests are decoded and responses encoded with
//! its `Message`, so names, compression and EDNS follow one well-tested implementation.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode, emit_message_parts};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder};
use rand::Rng;

use crate::answer::answer;
use crate::index::Index;
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
    /// False until the first full sync: the server answers SERVFAIL then, so a resolver
    /// tries another server instead of caching an NXDOMAIN for a name that exists.
    pub synced: bool,
}

/// Answers one request. `None` means drop it: too short to carry an ID, or not a query
/// (answering responses would let two servers loop).
pub fn respond<R: Rng + ?Sized>(packet: &[u8], transport: Transport, served: Served<'_>, rng: &mut R) -> Option<Response> {
    let header = Header::read(&mut BinDecoder::new(packet)).ok()?;
    if header.metadata.message_type != MessageType::Query {
        return None;
    }
    let request = match Message::from_vec(packet) {
        Ok(request) => request,
        Err(_) => return Some(error_response(header.metadata.id, header.metadata.op_code, ResponseCode::FormErr)),
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

    let found = answer(served.index, served.zones, query.name(), query.query_type(), query.query_class(), rng);
    let mut response = reply_to(&request, found.rcode);
    response.metadata.authoritative = found.authoritative;
    response.answers = found.answers;
    response.authorities = found.authorities;
    response.additionals = found.additionals;
    Some(finish(response, limit, query_type))
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

/// Encodes `response` within the transport's size limit. When the answer or authority
/// does not fit, the response goes out truncated with TC set, and the client retries
/// over TCP; when only additional records (SRV glue) do not fit, they are left out
/// without TC (RFC 2181 section 9: glue is optional).
fn finish(mut response: Message, limit: usize, query_type: Option<RecordType>) -> Response {
    let rcode = response.metadata.response_code;
    let (bytes, header) = match encode(&response, limit) {
        Some((bytes, header)) if header.metadata.truncation && complete_without_additionals(&response, &header) => {
            response.additionals.clear();
            encode(&response, limit).unwrap_or((bytes, header))
        }
        Some(encoded) => encoded,
        // Not even the question fits (only a hostile EDNS size could do that): TC alone.
        None => {
            let mut bare = response.truncate();
            bare.edns = response.edns.clone();
            match encode(&bare, limit) {
                Some(encoded) => encoded,
                None => return error_response(response.metadata.id, response.metadata.op_code, ResponseCode::ServFail),
            }
        }
    };
    Response {
        truncated: header.metadata.truncation,
        bytes,
        query_type,
        rcode,
    }
}

fn complete_without_additionals(response: &Message, header: &Header) -> bool {
    usize::from(header.counts.answers) == response.answers.len()
        && usize::from(header.counts.authorities) == response.authorities.len()
}

fn encode(message: &Message, limit: usize) -> Option<(Vec<u8>, Header)> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
    let header = emit_message_parts(
        &message.metadata,
        &mut message.queries.iter(),
        &mut message.answers.iter(),
        &mut message.authorities.iter(),
        &mut message.additionals.iter(),
        message.edns.as_ref(),
        None,
        &mut encoder,
    )
    .ok()?;
    Some((bytes, header))
}

/// FORMERR (or another error) for a request whose body did not decode: the header
/// alone, with the ID so the client can match it.
fn error_response(id: u16, op_code: OpCode, rcode: ResponseCode) -> Response {
    let mut message = Message::response(id, op_code);
    message.metadata.response_code = rcode;
    let bytes = encode(&message, 512).map(|(bytes, _)| bytes).unwrap_or_default();
    Response {
        bytes,
        query_type: None,
        rcode,
        truncated: false,
    }
}
