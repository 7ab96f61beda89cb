//! Fetching an item's bytes: per-request timeout, retries of transient failures with
//! exponential backoff and full jitter (the AWS architecture-blog scheme: sleep a random time
//! in [0, min(cap, base * 2^attempt)] so that many workers do not retry in lockstep).

use crate::item::{Fetch, FetchError};
use crate::quarantine::{Reason, Rejection};
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Limit for one attempt.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// How long to wait before retry number `attempt` (0-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.base_delay.saturating_mul(1u32 << attempt.min(20)).min(self.max_delay);
        cap.mul_f64(fastrand::f64())
    }
}

/// Fetches with retries. Returns the bytes, or the rejection to quarantine the item with.
pub async fn fetch_with_retries(f: &dyn Fetch, max_bytes: u64, policy: &RetryPolicy) -> Result<Bytes, Rejection> {
    let mut attempt = 0;
    loop {
        let err = match tokio::time::timeout(policy.timeout, f.fetch(max_bytes)).await {
            Ok(Ok(bytes)) => return Ok(bytes),
            Ok(Err(e)) => e,
            Err(_) => FetchError::Transient(format!("timed out after {:?}", policy.timeout)),
        };
        if !err.is_transient() || attempt >= policy.max_retries {
            let mut rej = err.into_rejection();
            if rej.reason == Reason::FetchFailed {
                rej.detail = format!("{} (after {} attempts)", rej.detail, attempt + 1);
            }
            return Err(rej);
        }
        tracing::debug!(attempt, error = %err, "retrying fetch");
        tokio::time::sleep(policy.backoff(attempt)).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails transiently `fail` times, then succeeds.
    struct Flaky {
        fail: u32,
        calls: AtomicU32,
    }

    impl Fetch for Flaky {
        fn fetch(&self, _max: u64) -> BoxFuture<'_, Result<Bytes, FetchError>> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail {
                    Err(FetchError::Transient(format!("attempt {n} failed")))
                } else {
                    Ok(Bytes::from_static(b"ok"))
                }
            })
        }
    }

    fn quick(max_retries: u32) -> RetryPolicy {
        RetryPolicy { max_retries, base_delay: Duration::from_millis(1), max_delay: Duration::from_millis(2), timeout: Duration::from_secs(5) }
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let f = Flaky { fail: 3, calls: AtomicU32::new(0) };
        assert_eq!(fetch_with_retries(&f, 10, &quick(3)).await.unwrap(), Bytes::from_static(b"ok"));
        assert_eq!(f.calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn retries_stop_at_the_limit() {
        let f = Flaky { fail: 10, calls: AtomicU32::new(0) };
        let rej = fetch_with_retries(&f, 10, &quick(2)).await.unwrap_err();
        assert_eq!(rej.reason, Reason::FetchFailed);
        assert!(rej.detail.contains("after 3 attempts"), "{}", rej.detail);
        assert_eq!(f.calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn backoff_stays_under_its_cap() {
        let p = RetryPolicy { max_retries: 30, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(2), timeout: Duration::from_secs(1) };
        for attempt in 0..30 {
            let cap = Duration::from_millis(100).saturating_mul(1 << attempt.min(20)).min(Duration::from_secs(2));
            assert!(p.backoff(attempt) <= cap);
        }
    }
}
