//! The fast path for the common query: one question, class IN, for a name and type the
//! index holds, without EDNS options, answered with records picked at random. It copies
//! the question from the request (so its case comes back as asked) and appends records
//! that hickory-proto encoded once per index rebuild ([`crate::index::Entry::wire`]),
//! each owner name a compression pointer to the question.
//!
//! Everything else (negative answers, CNAME, SRV with glue, zone-aware sets, ANY, EDNS
//! options such as Client Subnet, other opcodes, malformed packets, answers that need
//! truncation) returns `None` and goes to the hickory-proto path in [`crate::wire`],
//! which stays the reference: `dns/tests/differential.rs` checks that both paths give
//! the same message for the same picks.

use hickory_proto::rr::RecordType;
use rand::Rng;

use crate::answer::choose;
use crate::index::Index;
use crate::wire::{MAX_UDP_PAYLOAD, Transport, size_limit};

/// What the fast path understood of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainQuery<'a> {
    /// The question section: name, type and class, as received.
    pub question: &'a [u8],
    /// The name's bytes within `question`.
    pub name: &'a [u8],
    pub record_type: u16,
    /// The payload size of an OPT record without options, if the request had one.
    pub edns_payload: Option<u16>,
}

const HEADER: usize = 12;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// Parses a request the fast path can answer: a standard query (QR=0, opcode 0, no TC,
/// rcode 0) with exactly one question of class IN, no answer or authority records, and
/// at most an OPT record of version 0 without options; nothing after it.
pub fn parse_plain(packet: &[u8]) -> Option<PlainQuery<'_>> {
    let header = packet.get(..HEADER)?;
    let (flags, flags_low) = (header[2], header[3]);
    let standard_query = flags & 0b1111_1010 == 0 && flags_low & 0x0f == 0;
    let counts = [
        u16::from_be_bytes([header[4], header[5]]),
        u16::from_be_bytes([header[6], header[7]]),
        u16::from_be_bytes([header[8], header[9]]),
        u16::from_be_bytes([header[10], header[11]]),
    ];
    if !standard_query || counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    let name_len = name_length(packet.get(HEADER..)?)?;
    let question_end = HEADER + name_len + 4;
    let question = packet.get(HEADER..question_end)?;
    let record_type = u16::from_be_bytes([question[name_len], question[name_len + 1]]);
    let class = u16::from_be_bytes([question[name_len + 2], question[name_len + 3]]);
    if class != CLASS_IN {
        return None;
    }
    let rest = &packet[question_end..];
    let edns_payload = match (counts[3], rest) {
        (0, []) => None,
        // Root owner, TYPE OPT, CLASS = payload size, extended rcode 0, version 0, any
        // flags, RDLENGTH 0.
        (1, [0, t0, t1, p0, p1, 0, 0, _, _, 0, 0]) if u16::from_be_bytes([*t0, *t1]) == TYPE_OPT => {
            Some(u16::from_be_bytes([*p0, *p1]))
        }
        _ => return None,
    };
    Some(PlainQuery {
        question,
        name: &question[..name_len],
        record_type,
        edns_payload,
    })
}

/// The length of an uncompressed name at the start of `bytes` (queries never need
/// compression; a pointer sends the request to the slow path).
fn name_length(bytes: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let label = usize::from(*bytes.get(at)?);
        if label == 0 {
            return (at < 255).then_some(at + 1);
        }
        if label > 63 {
            return None;
        }
        at += label + 1;
        if at > 255 {
            return None;
        }
    }
}

/// Writes the answer to `request` into `out` and returns the query type, or returns
/// `None` (with `out` in any state) when the slow path must answer.
pub fn answer_fast<R: Rng + ?Sized>(
    request: &[u8],
    transport: Transport,
    index: &Index,
    rng: &mut R,
    out: &mut Vec<u8>,
) -> Option<RecordType> {
    let query = parse_plain(request)?;
    let mut key = [0u8; 255];
    let key = key.get_mut(..query.name.len())?;
    for (k, b) in key.iter_mut().zip(query.name) {
        *k = b.to_ascii_lowercase();
    }
    let record_type = RecordType::from(query.record_type);
    let rrset = index.node_by_key(key)?.rrset(record_type)?;
    if rrset.record_type == RecordType::CNAME || rrset.prefer_same_zone || rrset.has_glue {
        return None;
    }
    let picked = choose(rrset, None, rrset.max_answers, rng);
    if picked.is_empty() {
        return None;
    }

    out.clear();
    out.extend_from_slice(&request[..2]); // ID
    // QR, opcode 0, AA, RD as asked; RA 0; CD as asked; rcode NOERROR.
    out.push(0x84 | (request[2] & 0x01));
    out.push(request[3] & 0x10);
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&u16::try_from(picked.len()).ok()?.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&u16::from(query.edns_payload.is_some()).to_be_bytes());
    out.extend_from_slice(query.question);
    for entry in picked {
        out.extend_from_slice(&[0xc0, 0x0c]); // owner: the question's name, at offset 12
        out.extend_from_slice(&entry.wire);
    }
    if query.edns_payload.is_some() {
        // OPT: root owner, our payload size, extended rcode 0, version 0, DO 0, no options.
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    (out.len() <= size_limit(transport, query.edns_payload)).then_some(record_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], edns: bool) -> Vec<u8> {
        let mut packet = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        packet.extend_from_slice(name);
        packet.extend_from_slice(&[0, 1, 0, 1]);
        if edns {
            packet.extend_from_slice(&[0, 0, 41, 0x10, 0x00, 0, 0, 0, 0, 0, 0]);
        }
        packet
    }

    #[test]
    fn plain_queries_parse_and_everything_else_declines() {
        let name = b"\x03web\x07example\x08internal\x00";
        let packet = query(name, true);
        let plain = parse_plain(&packet).expect("plain");
        assert_eq!(
            (plain.name, plain.record_type, plain.edns_payload),
            (&name[..], 1, Some(4096))
        );
        assert!(parse_plain(&query(name, false)).is_some_and(|q| q.edns_payload.is_none()));

        let mut response = query(name, false);
        response[2] |= 0x80;
        assert!(parse_plain(&response).is_none(), "a response");
        let mut notify = query(name, false);
        notify[2] |= 4 << 3;
        assert!(parse_plain(&notify).is_none(), "another opcode");
        let mut pointer = query(b"\xc0\x0c", false);
        pointer.truncate(14);
        assert!(parse_plain(&pointer).is_none(), "a compression pointer");
        let mut trailing = query(name, false);
        trailing.push(0);
        assert!(parse_plain(&trailing).is_none(), "bytes after the question");
        let mut options = query(name, true);
        let len = options.len();
        options[len - 1] = 4; // RDLENGTH 4: an option follows
        options.extend_from_slice(&[0, 8, 0, 0]);
        assert!(parse_plain(&options).is_none(), "EDNS options");
        let mut chaos = query(name, false);
        let len = chaos.len();
        chaos[len - 1] = 3;
        assert!(parse_plain(&chaos).is_none(), "class CH");
        assert!(parse_plain(&[0x12, 0x34, 1]).is_none(), "short");
    }
}
