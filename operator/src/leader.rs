//! Leader election on a `coordination.k8s.io/v1` Lease, so two replicas never both write.
//!
//! The algorithm is client-go's: whoever holds an unexpired lease is leader and renews it
//! every `renew_period`; others wait until `renew_time + lease_duration` has passed, then
//! take it over. Every write is a replace with the read `resourceVersion`, so of two
//! candidates racing for an expired lease exactly one succeeds (the other gets 409).
//! Releasing on shutdown sets an expired lease, so the standby takes over at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;

use crate::Error;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
}

/// Whether `candidate` may take the lease as it is now.
pub fn can_acquire(spec: Option<&LeaseSpec>, candidate: &str, now: Timestamp) -> bool {
    let Some(spec) = spec else { return true };
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == candidate => true,
        Some(_) => is_expired(spec, now),
    }
}

fn is_expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed.checked_add(duration).map_or(true, |expiry| expiry < now)
}

/// The lease spec after `candidate` acquires or renews it.
pub fn held_by(old: Option<&LeaseSpec>, config: &LeaseConfig, now: Timestamp) -> LeaseSpec {
    let same_holder = old.and_then(|s| s.holder_identity.as_deref()) == Some(config.identity.as_str());
    let transitions = old.and_then(|s| s.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: if same_holder {
            old.and_then(|s| s.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if same_holder { transitions } else { transitions + 1 }),
        ..LeaseSpec::default()
    }
}

#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector").field("config", &self.config).finish()
    }
}

impl LeaderElector {
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// Tries once to acquire or renew; true while this replica holds the lease.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let existing = self.api.get_opt(&self.config.name).await?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(held_by(None, &self.config, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                Err(error) => Err(error.into()),
            };
        };
        if !can_acquire(lease.spec.as_ref(), &self.config.identity, now) {
            return Ok(false);
        }
        lease.spec = Some(held_by(lease.spec.as_ref(), &self.config, now));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Waits until this replica is leader. `reachable` says, meanwhile, whether the last
    /// request for the lease got an answer: a standby that can reach the API server is
    /// ready to take over (its readiness probe reads it).
    pub async fn acquire(&self, reachable: &AtomicBool) {
        loop {
            let answer = self.try_acquire_or_renew().await;
            reachable.store(answer.is_ok(), Ordering::Relaxed);
            match answer {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election: cannot reach the lease"),
            }
            tokio::time::sleep(self.config.renew_period).await;
        }
    }

    /// Renews the lease until a renewal fails for longer than the lease lasts, or
    /// another replica holds it; returns then (leadership lost).
    pub async fn keep_renewing(&self) {
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "leader election: renewal failed");
                    // Stop before the lease can expire, so two leaders never overlap.
                    if last_renewed.elapsed() + self.config.renew_period >= self.config.lease_duration {
                        return;
                    }
                }
            }
        }
    }

    /// Gives the lease up, so a standby takes over without waiting for it to expire.
    pub async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        self.api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity: &str) -> LeaseConfig {
        LeaseConfig {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).expect("valid")
    }

    #[test]
    fn a_held_lease_is_taken_only_after_it_expires() {
        let held = held_by(None, &config("a"), at(100));
        assert!(can_acquire(Some(&held), "a", at(101)), "the holder renews");
        assert!(!can_acquire(Some(&held), "b", at(114)), "not expired yet");
        assert!(can_acquire(Some(&held), "b", at(116)), "expired after 15 s");
        let taken = held_by(Some(&held), &config("b"), at(116));
        assert_eq!(
            (taken.lease_transitions, taken.acquire_time.clone()),
            (Some(2), Some(MicroTime(at(116))))
        );
        let renewed = held_by(Some(&taken), &config("b"), at(120));
        assert_eq!(
            (renewed.lease_transitions, renewed.acquire_time.clone()),
            (Some(2), Some(MicroTime(at(116))))
        );
    }

    #[test]
    fn a_released_lease_is_free() {
        let mut released = held_by(None, &config("a"), at(100));
        released.holder_identity = None;
        assert!(can_acquire(Some(&released), "b", at(100)));
        assert!(can_acquire(None, "b", at(100)));
    }
}
