//! Record sets and zones for tests: the server's own fixtures
//! (`mvdns_server::testing`), and a value builder.

pub use mvdns_server::testing::{TEST_ZONE, record_set, zones};
use serde_json::json;

/// One `status.values` entry: an address, its health and a source.
pub fn value(value: &str, healthy: bool) -> serde_json::Value {
    json!({"value": value, "healthy": healthy, "source": format!("pod/{value}")})
}
