//! Bounded load per tenant: one namespace cannot make the operator flood an endpoint or
//! starve the other namespaces' checks. Pure decisions; the checker applies them.
//!
//! - At most `max_checks_per_namespace` checked values per namespace run. A value beyond
//!   the cap is not probed and, like a value the probe-target policy refuses, not served
//!   (its health is unknown); its record set's `ProbeRefused` condition names the cap.
//!   Values already running keep running, so a new record set cannot push out an old one.
//! - At most `probes_per_second_per_namespace` probes per second leave for one namespace (a
//!   token bucket per namespace, a burst of one second). When a namespace's checks ask for
//!   more than that, they run less often than their intervals, and each of its record sets
//!   with checks says so in the `ProbeThrottled` condition. The other namespaces' probes do
//!   not wait for it.

use std::time::{Duration, Instant};

/// The caps; 0 turns one off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TenantLimits {
    pub max_checks_per_namespace: usize,
    pub probes_per_second_per_namespace: f64,
}

impl Default for TenantLimits {
    /// The chart's defaults: generous for one team, small beside a shared operator's work.
    fn default() -> Self {
        Self {
            max_checks_per_namespace: 500,
            probes_per_second_per_namespace: 50.0,
        }
    }
}

impl TenantLimits {
    /// Whether one more check may start in a namespace that runs `running` of them; if not,
    /// why (the text of the `ProbeRefused` condition).
    pub fn admit(&self, namespace: &str, running: usize) -> Result<(), String> {
        let cap = self.max_checks_per_namespace;
        if cap == 0 || running < cap {
            return Ok(());
        }
        Err(format!(
            "namespace {namespace} already runs {running} health checks, the most one namespace may run (--probe-max-checks-per-namespace {cap})"
        ))
    }

    /// When the checks of a namespace ask for more probes per second than the cap, what
    /// the `ProbeThrottled` condition says.
    pub fn throttled(&self, namespace: &str, demand: f64) -> Option<String> {
        let cap = self.probes_per_second_per_namespace;
        (cap > 0.0 && demand > cap).then(|| {
            format!(
                "the health checks of namespace {namespace} ask for {demand:.1} probes per second, more than the {cap} one namespace may send (--probe-rate-per-namespace): they run {:.1} times less often than their intervals",
                demand / cap
            )
        })
    }
}

/// Probes per second that checks with these intervals ask for.
pub fn demand(intervals_seconds: impl IntoIterator<Item = u32>) -> f64 {
    intervals_seconds
        .into_iter()
        .map(|seconds| 1.0 / f64::from(seconds.max(1)))
        .sum()
}

/// A token bucket: `rate` tokens a second, holding at most one second of them.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, now: Instant) -> Self {
        Self {
            rate,
            tokens: rate.max(1.0),
            last: now,
        }
    }

    /// Takes a token: `None` when one was there (go), else how long until there is one.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let burst = self.rate.max(1.0);
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            None
        } else {
            Some(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_cap_admits_up_to_the_cap_and_names_it() {
        let limits = TenantLimits {
            max_checks_per_namespace: 3,
            probes_per_second_per_namespace: 0.0,
        };
        assert_eq!(limits.admit("shop", 2), Ok(()));
        let refusal = limits.admit("shop", 3).expect_err("at the cap");
        assert!(refusal.contains("namespace shop already runs 3"), "{refusal}");
        assert!(refusal.contains("--probe-max-checks-per-namespace 3"), "{refusal}");
        let off = TenantLimits {
            max_checks_per_namespace: 0,
            ..limits
        };
        assert_eq!(off.admit("shop", 1_000_000), Ok(()));
    }

    #[test]
    fn demand_over_the_rate_cap_is_reported() {
        let limits = TenantLimits {
            max_checks_per_namespace: 0,
            probes_per_second_per_namespace: 2.0,
        };
        let forty_at_five_seconds = demand(std::iter::repeat_n(5, 40));
        assert!((forty_at_five_seconds - 8.0).abs() < 1e-9);
        let note = limits.throttled("flood", forty_at_five_seconds).expect("over the cap");
        assert!(note.contains("ask for 8.0 probes per second"), "{note}");
        assert!(note.contains("4.0 times less often"), "{note}");
        assert_eq!(limits.throttled("calm", demand([5, 30])), None);
    }

    #[test]
    fn the_bucket_lets_a_burst_through_then_paces_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, start);
        assert_eq!(bucket.take(start), None);
        assert_eq!(bucket.take(start), None, "a burst of one second");
        let wait = bucket.take(start).expect("empty");
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Over ten seconds of asking all the time, about twenty probes go.
        let mut sent = 0;
        let mut now = start;
        while now < start + Duration::from_secs(10) {
            match bucket.take(now) {
                None => sent += 1,
                Some(wait) => now += wait,
            }
        }
        assert!((19..=21).contains(&sent), "{sent}");
    }
}
