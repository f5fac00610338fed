//! Which zone a client is in, from the cluster's Nodes: each node's addresses and pod
//! CIDRs map to its `topology.kubernetes.io/zone` label. A pod querying the server
//! directly comes from its pod IP (inside its node's pod CIDR); NodeLocal DNSCache and
//! host-network clients come from a node address. Behind a plain CoreDNS `forward` the
//! source is CoreDNS itself, so zone awareness then needs EDNS Client Subnet.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

/// The node label that names a node's zone (well-known, set by cloud providers).
pub use mvdns_api::ZONE_LABEL;

/// A network: an address and the number of leading bits that matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Network {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Network {
    /// Parses `10.244.1.0/24`, `fd00::/64`, or a bare address (a host network).
    pub fn parse(text: &str) -> Option<Self> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address.parse().ok()?, prefix.parse().ok()?),
            None => {
                let address: IpAddr = text.parse().ok()?;
                (address, host_bits(address))
            }
        };
        (prefix <= host_bits(address)).then_some(Self { address, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.address, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => same_prefix(u128::from(net), u128::from(ip), self.prefix),
            _ => false,
        }
    }
}

fn host_bits(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

fn same_prefix(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// Networks and their zones; the longest matching prefix wins.
#[derive(Clone, Debug, Default)]
pub struct ClientZones {
    networks: Vec<(Network, String)>,
}

impl ClientZones {
    /// Every node with a zone label contributes its addresses and pod CIDRs.
    pub fn from_nodes<'a>(nodes: impl IntoIterator<Item = &'a Node>) -> Self {
        let mut networks = Vec::new();
        for node in nodes {
            let Some(zone) = node.metadata.labels.as_ref().and_then(|l| l.get(ZONE_LABEL)) else {
                continue;
            };
            let addresses = node
                .status
                .iter()
                .flat_map(|s| s.addresses.iter().flatten())
                .map(|a| a.address.as_str());
            let pod_cidrs = node
                .spec
                .iter()
                .flat_map(|s| s.pod_cidrs.iter().flatten())
                .map(String::as_str);
            for network in addresses.chain(pod_cidrs).filter_map(Network::parse) {
                networks.push((network, zone.clone()));
            }
        }
        // Longest prefix first, so the first match is the most specific.
        networks.sort_by_key(|(network, _)| std::cmp::Reverse(network.prefix));
        Self { networks }
    }

    /// The topology zone of a client address (not a DNS zone: those are `crate::zone`).
    pub fn topology_zone(&self, ip: IpAddr) -> Option<&str> {
        self.networks
            .iter()
            .find(|(network, _)| network.contains(ip))
            .map(|(_, zone)| zone.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: Option<&str>, address: &str, cidrs: &[&str]) -> Node {
        let labels = zone.map(|z| json!({ZONE_LABEL: z})).unwrap_or(json!({}));
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"podCIDRs": cidrs},
            "status": {"addresses": [{"type": "InternalIP", "address": address}, {"type": "Hostname", "address": name}]},
        }))
        .expect("node")
    }

    #[test]
    fn node_addresses_and_pod_cidrs_map_to_zones() {
        let nodes = [
            node("a", Some("zone-a"), "10.0.0.1", &["10.244.0.0/24", "fd00:10:244::/64"]),
            node("b", Some("zone-b"), "10.0.0.2", &["10.244.1.0/24"]),
            node("c", None, "10.0.0.3", &["10.244.2.0/24"]),
        ];
        let zones = ClientZones::from_nodes(&nodes);
        let zone = |ip: &str| zones.topology_zone(ip.parse().expect("ip"));
        assert_eq!(zone("10.244.0.17"), Some("zone-a"));
        assert_eq!(zone("fd00:10:244::5"), Some("zone-a"));
        assert_eq!(zone("10.244.1.200"), Some("zone-b"));
        assert_eq!(zone("10.0.0.2"), Some("zone-b"));
        assert_eq!(zone("10.244.2.9"), None, "node without a zone label");
        assert_eq!(zone("192.0.2.1"), None);
    }

    #[test]
    fn the_most_specific_network_wins_and_bad_ones_are_ignored() {
        let nodes = [
            node("wide", Some("zone-a"), "not-an-ip", &["10.0.0.0/8", "10.1.0.0/99"]),
            node("narrow", Some("zone-b"), "10.1.2.3", &[]),
        ];
        let zones = ClientZones::from_nodes(&nodes);
        assert_eq!(zones.topology_zone("10.1.2.3".parse().expect("ip")), Some("zone-b"));
        assert_eq!(zones.topology_zone("10.1.2.4".parse().expect("ip")), Some("zone-a"));
        assert_eq!(Network::parse("10.1.0.0/99"), None);
        assert!(Network::parse("::/0").is_some_and(|n| n.contains("2001:db8::1".parse().expect("ip"))));
    }
}
