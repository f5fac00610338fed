//! How both binaries retry a failed watch.

use std::time::Duration;

/// Retries after a failed watch: from 200 ms doubling up to 4 s, each with up to 50%
/// random jitter so that replicas do not reconnect in step. kube's default goes up to
/// 30 s, which after an API server outage of a minute delayed fresh answers by up to
/// 30 s (measured 19 s); one watch per replica is cheap enough to retry sooner.
#[derive(Debug)]
pub struct ReconnectBackoff {
    next: Duration,
}

impl ReconnectBackoff {
    pub const FIRST: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(4);
}

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for ReconnectBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        Some(delay.mul_f64(1.0 + rand::random::<f64>() * 0.5))
    }
}

impl kube::runtime::utils::Backoff for ReconnectBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        use kube::runtime::utils::Backoff;
        let mut backoff = ReconnectBackoff::default();
        let delays: Vec<Duration> = backoff.by_ref().take(8).collect();
        let bases = [0.2, 0.4, 0.8, 1.6, 3.2, 4.0, 4.0, 4.0];
        for (delay, base) in delays.iter().zip(bases) {
            let seconds = delay.as_secs_f64();
            assert!(seconds >= base && seconds <= base * 1.5, "{seconds} for base {base}");
        }
        backoff.reset();
        assert!(backoff.next().is_some_and(|d| d <= Duration::from_millis(300)));
    }
}
