//! mvdns-server: the authoritative DNS server of mvdns.
//!
//! It watches `MultiValueRecordSet`s, builds an [`index::Index`] of what their status says
//! is healthy (only for names their namespace owns), swaps it in atomically, and answers
//! each query with up to `maxAnswers` values picked at random ([`select`]).
//!
//! The decisions are pure functions: [`index::build_index`] (record sets to records),
//! [`answer::answer`] (one question to one answer) and [`wire::respond`] (request bytes to
//! response bytes: FORMERR, EDNS, truncation). [`server`] and [`watch`] are the thin IO
//! around them; the admin port is `mvdns_runtime::admin`'s, serving [`Shared`].

pub mod answer;
pub mod fast;
pub mod index;
pub mod metrics;
pub mod mmsg;
pub mod rrl;
pub mod select;
pub mod server;
pub mod topology;
pub mod watch;
pub mod wire;
pub mod zone;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;

/// Everything that can go wrong in the server's IO.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("socket {address}: {source}")]
    Socket {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// What the query path reads: the current index (swapped whole by the watcher, so a
/// query never waits for it), the zones, and whether the first full sync is done.
#[derive(Debug)]
pub struct Shared {
    pub index: ArcSwap<index::Index>,
    /// Client address to topology zone, from the Nodes (for `PreferSameZone`).
    pub client_zones: ArcSwap<topology::ClientZones>,
    pub zones: zone::Zones,
    pub synced: AtomicBool,
    pub metrics: metrics::Metrics,
}

impl Shared {
    pub fn new(zones: zone::Zones) -> Arc<Self> {
        Arc::new(Self {
            index: ArcSwap::from_pointee(index::Index::default()),
            client_zones: ArcSwap::from_pointee(topology::ClientZones::default()),
            zones,
            synced: AtomicBool::new(false),
            metrics: metrics::Metrics::default(),
        })
    }
}

impl mvdns_runtime::admin::AdminState for Shared {
    fn ready(&self) -> Result<(), &'static str> {
        if self.synced.load(std::sync::atomic::Ordering::Relaxed) {
            Ok(())
        } else {
            Err("waiting for the first full sync of record sets")
        }
    }

    fn metrics(&self) -> String {
        self.metrics.encode()
    }
}

/// Fixtures for tests and examples: the unit tests here use them directly, every other
/// tier through the test kit (`mvdns-testkit`), which re-exports them. Not for serving.
pub mod testing {
    use serde_json::json;

    use crate::zone::{ZoneSettings, Zones};

    /// The zone the tests serve.
    pub const TEST_ZONE: &str = "example.internal.";

    /// The zones of a server that serves [`TEST_ZONE`] with default settings.
    pub fn zones() -> Zones {
        Zones::new(&ZoneSettings {
            apexes: vec![TEST_ZONE.into()],
            ..ZoneSettings::default()
        })
        .expect("the test zone is valid")
    }

    /// A record set as the watcher sees it: its namespace, creation time, spec and the
    /// `status.values` the operator wrote.
    pub fn record_set(
        namespace: &str,
        object: &str,
        created: &str,
        spec: serde_json::Value,
        values: serde_json::Value,
    ) -> mvdns_api::MultiValueRecordSet {
        serde_json::from_value(json!({
            "apiVersion": "mvdns.io/v1alpha1",
            "kind": "MultiValueRecordSet",
            "metadata": {"name": object, "namespace": namespace, "creationTimestamp": created},
            "spec": spec,
            "status": {"values": values},
        }))
        .expect("record set")
    }
}
