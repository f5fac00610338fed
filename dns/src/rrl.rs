//! Response rate limiting per client subnet (optional; UDP only), so the server cannot
//! be used to flood a spoofed victim with answers.
//!
//! Each subnet (/24 for IPv4, /56 for IPv6, as BIND's RRL defaults) has a token bucket
//! of `responses_per_second` tokens, refilled at that rate. Past it, responses are
//! dropped, except every `slip`-th, which is sent as an empty truncated answer (TC=1):
//! a real client behind a busy subnet retries over TCP, which cannot be spoofed and is
//! never limited here. The buckets live in a fixed table indexed by a hash of the
//! subnet, so memory stays the same however many addresses send; a collision hands the
//! slot to the newcomer with a full bucket, which only ever makes the limit more lenient.

use std::net::IpAddr;
use std::time::Instant;

/// `--rrl-responses-per-second` and `--rrl-slip`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitConfig {
    pub responses_per_second: u32,
    /// Every `slip`-th limited response goes out truncated; 0 drops them all.
    pub slip: u32,
}

/// What to do with one UDP response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send an empty answer with TC set instead.
    Slip,
    Drop,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    subnet: u64,
    tokens: f64,
    last_nanos: u64,
    limited: u32,
}

/// The buckets; one per server, shared by the UDP loops behind a mutex (only when
/// enabled; the check is a few arithmetic operations).
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Box<[Bucket]>,
    epoch: Instant,
}

/// Slots in the bucket table: 4096 x 32 bytes = 128 KiB.
const SLOTS: usize = 4096;

/// The subnet a client address belongs to, as a number: /24 for IPv4, /56 for IPv6.
/// The top bit tells the families apart.
pub fn subnet_of(address: IpAddr) -> u64 {
    match address {
        IpAddr::V4(v4) => (1 << 63) | u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return subnet_of(IpAddr::V4(v4));
            }
            let bytes = v6.octets();
            let mut prefix = [0u8; 8];
            prefix[1..8].copy_from_slice(&bytes[..7]);
            u64::from_be_bytes(prefix)
        }
    }
}

impl RateLimiter {
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: vec![Bucket::default(); SLOTS].into_boxed_slice(),
            epoch: Instant::now(),
        }
    }

    pub fn check(&mut self, client: IpAddr) -> Verdict {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(subnet_of(client), nanos)
    }

    /// The decision for a response to `subnet` at `now_nanos` (since the limiter began).
    pub fn check_at(&mut self, subnet: u64, now_nanos: u64) -> Verdict {
        let rate = f64::from(self.config.responses_per_second);
        let slot = slot_of(subnet);
        let bucket = &mut self.buckets[slot];
        if bucket.subnet != subnet || bucket.last_nanos == 0 {
            *bucket = Bucket {
                subnet,
                tokens: rate,
                last_nanos: now_nanos.max(1),
                limited: 0,
            };
        }
        let elapsed = now_nanos.saturating_sub(bucket.last_nanos) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.last_nanos = now_nanos.max(1);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        let slip = self.config.slip;
        if slip > 0 && bucket.limited.is_multiple_of(slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

fn slot_of(subnet: u64) -> usize {
    // Fibonacci hashing: spreads neighbouring subnets over the table.
    let hash = subnet.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    usize::try_from(hash >> 52).unwrap_or(0) % SLOTS
}

/// Rewrites a finished response in `out` into the empty truncated answer sent when a
/// response slips: header with TC set and no records, and the question.
pub fn truncate_to_question(out: &mut Vec<u8>) {
    if out.len() < 12 {
        return;
    }
    let mut end = 12;
    if out[4..6] != [0, 0] {
        // The question's name (never compressed: it is the first name) and its type
        // and class.
        while let Some(&length) = out.get(end) {
            end += 1 + usize::from(length);
            if length == 0 || length & 0xC0 != 0 {
                break;
            }
        }
        end = (end + 4).min(out.len());
        out[4..6].copy_from_slice(&[0, 1]);
    }
    out[2] |= 0x02; // TC
    out[6..12].fill(0);
    out.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SECOND: u64 = 1_000_000_000;

    fn limiter(rate: u32, slip: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            responses_per_second: rate,
            slip,
        })
    }

    #[test]
    fn a_subnet_gets_its_rate_then_every_slip_th_truncated() {
        let mut rrl = limiter(10, 2);
        let subnet = subnet_of(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let verdicts: Vec<Verdict> = (0..16).map(|i| rrl.check_at(subnet, SECOND + i)).collect();
        assert!(verdicts[..10].iter().all(|v| *v == Verdict::Send), "{verdicts:?}");
        assert_eq!(
            verdicts[10..],
            [
                Verdict::Drop,
                Verdict::Slip,
                Verdict::Drop,
                Verdict::Slip,
                Verdict::Drop,
                Verdict::Slip
            ]
        );
        // Half a second later, 5 tokens are back.
        let later: Vec<Verdict> = (0..6).map(|i| rrl.check_at(subnet, SECOND * 3 / 2 + i)).collect();
        assert_eq!(later.iter().filter(|v| **v == Verdict::Send).count(), 5);
    }

    #[test]
    fn other_subnets_are_not_affected_and_addresses_group_by_prefix() {
        let mut rrl = limiter(2, 0);
        let v4 = |d| IpAddr::V4(Ipv4Addr::new(198, 51, 100, d));
        assert_eq!(subnet_of(v4(1)), subnet_of(v4(200)), "one /24");
        let a = subnet_of(v4(1));
        let b = subnet_of(IpAddr::V4(Ipv4Addr::new(198, 51, 101, 1)));
        for i in 0..5 {
            rrl.check_at(a, SECOND + i);
        }
        assert_eq!(rrl.check_at(a, SECOND + 6), Verdict::Drop, "slip 0 drops");
        assert_eq!(rrl.check_at(b, SECOND + 7), Verdict::Send);
        let v6 = |last: u16, seventh: u16| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, seventh, 0, 0, 0, last));
        assert_eq!(subnet_of(v6(1, 0x0100)), subnet_of(v6(9, 0x01ff)), "one /56");
        assert_ne!(subnet_of(v6(1, 0x0100)), subnet_of(v6(1, 0x0200)));
        assert_ne!(subnet_of(v4(1)), subnet_of(v6(1, 0)));
    }

    #[test]
    fn a_slipped_answer_is_header_and_question_with_tc() {
        let mut out = vec![0x12, 0x34, 0x84, 0x00, 0, 1, 0, 2, 0, 0, 0, 1];
        out.extend_from_slice(b"\x03web\x07example\x00\x00\x01\x00\x01");
        let question_end = out.len();
        out.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
        truncate_to_question(&mut out);
        assert_eq!(out.len(), question_end);
        assert_eq!(out[2], 0x86, "TC added to the flags");
        assert_eq!(out[4..12], [0, 1, 0, 0, 0, 0, 0, 0]);
    }
}
