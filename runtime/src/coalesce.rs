//! Leading-edge coalescing, shared by the operator's status writes and the DNS server's
//! index rebuilds: the first change after a quiet window goes out at once (lowest
//! latency), the changes that follow wait for the rest of the window (one write or
//! rebuild for a burst), so there is at most one per window.

use std::time::{Duration, Instant};

/// How long to wait before acting on a change, given when we last acted.
pub fn wait_in_window(last: Option<Instant>, now: Instant, window: Duration) -> Option<Duration> {
    let since = now.saturating_duration_since(last?);
    (since < window).then(|| window - since)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaced_by_the_window_without_delaying_the_first() {
        let window = Duration::from_millis(100);
        let now = Instant::now();
        assert_eq!(wait_in_window(None, now, window), None, "never acted: at once");
        let long_ago = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        assert_eq!(
            wait_in_window(Some(long_ago), now, window),
            None,
            "quiet window: at once"
        );
        let just_now = now.checked_sub(Duration::from_millis(30)).unwrap_or(now);
        assert_eq!(
            wait_in_window(Some(just_now), now, window),
            Some(Duration::from_millis(70))
        );
    }
}
