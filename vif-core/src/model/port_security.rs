//! The `port_security` table of a VIF: anti-spoofing of the frames its guest sends, as the
//! config file writes it. [`PortSecurityConfig::spec`] turns it into the
//! [`PortSecuritySpec`] that [`crate::acl::PortSecurity`] compiles with the VIF's MAC.
//!
//! ```toml
//! [port_security]                 # absent: the guest may send from any address
//! enabled = true                  # default when the table is present
//! allowed_ips = ["10.0.0.2/32", "fd00::2/128"]
//! ```
//!
//! - With the table present and `enabled`, the guest may send only from its own MAC (the
//!   VIF's `mac`), in the Ethernet header, in ARP and in Neighbor Discovery options.
//! - When `allowed_ips` is non-empty, IPv4/IPv6 source addresses, ARP sender addresses and
//!   neighbor advertisement targets must lie in one of its prefixes too (see
//!   `acl/spoof.rs` for DHCP, DAD and link-local exceptions). Empty means the addresses are
//!   not checked; only the MAC is.
//! - Router advertisements and redirects, and DHCP/DHCPv6 server messages, are refused unless
//!   `allow_router_advertisements` / `allow_dhcp_server`: these are roles, not addresses, so
//!   they are refused even when addresses are not checked (OpenStack's port security does
//!   the same).
//!
//! The table is opt-in: a guest that bridges containers or nested VMs legitimately sends from
//! other MACs, and Open vSwitch and Linux bridges do not filter sources by default either.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use super::error::ModelError;
use super::names::VifId;
use crate::acl::spoof::MAX_ALLOWED_IPS;
use crate::acl::{IpCidr, PortSecuritySpec};

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The `port_security` table of a VIF; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSecurityConfig {
    /// `false` keeps the table but turns the checks off.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Prefixes the guest may send from; empty: addresses are not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_ips: Vec<IpCidr>,
    /// IPv4 source `0.0.0.0` for DHCP client messages (RFC 2131 § 4.1).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub allow_dhcp_client: bool,
    /// The link-local address derived from the MAC (RFC 4291 appendix A) is allowed.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub eui64_link_local: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_router_advertisements: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_dhcp_server: bool,
}

impl Default for PortSecurityConfig {
    /// The table written as `[port_security]` with nothing in it: MAC only.
    fn default() -> Self {
        PortSecurityConfig {
            enabled: true,
            allowed_ips: Vec::new(),
            allow_dhcp_client: true,
            eui64_link_local: true,
            allow_router_advertisements: false,
            allow_dhcp_server: false,
        }
    }
}

impl PortSecurityConfig {
    /// The engine's settings, or `None` when `enabled` is false. An empty `allowed_ips`
    /// becomes "every address of both families", so only the MAC (and the RA / DHCP-server
    /// guards) is enforced.
    pub fn spec(&self) -> Option<PortSecuritySpec> {
        if !self.enabled {
            return None;
        }
        let allowed_ips = if self.allowed_ips.is_empty() {
            [
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            ]
            .into_iter()
            .filter_map(|any| IpCidr::new(any, 0))
            .collect()
        } else {
            self.allowed_ips.clone()
        };
        // No `..Default::default()`: a field added to the engine's spec must be decided here.
        Some(PortSecuritySpec {
            allowed_ips,
            allow_dhcp_client: self.allow_dhcp_client,
            eui64_link_local: self.eui64_link_local,
            allow_router_advertisements: self.allow_router_advertisements,
            allow_dhcp_server: self.allow_dhcp_server,
        })
    }

    /// The bound the engine enforces, checked at config time with the VIF's name.
    pub fn validate(&self, vif: &VifId) -> Result<(), ModelError> {
        if self.allowed_ips.len() > MAX_ALLOWED_IPS {
            return Err(ModelError::TooManyAllowedIps {
                vif: vif.clone(),
                count: self.allowed_ips.len(),
                max: MAX_ALLOWED_IPS,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::PortSecurity;
    use crate::model::tests::{mac, vif_id};

    fn parse(text: &str) -> Result<PortSecurityConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn empty_table_is_mac_only() {
        let config = parse("").unwrap();
        assert_eq!(config, PortSecurityConfig::default());
        let spec = config.spec().unwrap();
        let security = PortSecurity::new(mac(), &spec).unwrap();
        // Any address of either family passes: only the MAC is checked.
        assert!(security.allows_ip("203.0.113.7".parse().unwrap()));
        assert!(security.allows_ip("2001:db8::7".parse().unwrap()));
        assert!(!spec.allow_router_advertisements && !spec.allow_dhcp_server);
    }

    #[test]
    fn allowed_ips_restrict_sources() {
        let config = parse(r#"allowed_ips = ["10.0.0.2/32", "fd00::2"]"#).unwrap();
        let security = PortSecurity::new(mac(), &config.spec().unwrap()).unwrap();
        assert!(security.allows_ip("10.0.0.2".parse().unwrap()));
        assert!(!security.allows_ip("10.0.0.3".parse().unwrap()));
        assert!(security.allows_ip("fd00::2".parse().unwrap()));
        assert!(!security.allows_ip("fd00::3".parse().unwrap()));
    }

    #[test]
    fn disabled_table_yields_no_spec() {
        let config = parse("enabled = false\nallowed_ips = [\"10.0.0.2\"]").unwrap();
        assert_eq!(config.spec(), None);
    }

    #[test]
    fn unknown_keys_and_bad_prefixes_are_refused() {
        assert!(parse("allowed_ip = []").is_err());
        assert!(parse(r#"allowed_ips = ["10.0.0.1/33"]"#).is_err());
        assert!(
            parse(r#"allowed_ips = ["10.0.0.1/24"]"#).is_err(),
            "host bits set"
        );
    }

    #[test]
    fn too_many_prefixes_name_the_vif() {
        let config = PortSecurityConfig {
            allowed_ips: (0..=MAX_ALLOWED_IPS)
                .map(|i| IpCidr::host(IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8))))
                .collect(),
            ..PortSecurityConfig::default()
        };
        let err = config.validate(&vif_id()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vif web-1: port_security.allowed_ips has 65 entries, more than 64"
        );
    }

    #[test]
    fn defaults_are_not_serialized() {
        let config = parse(r#"allowed_ips = ["10.0.0.2/32"]"#).unwrap();
        let text = toml::to_string(&config).unwrap();
        assert_eq!(text.trim(), r#"allowed_ips = ["10.0.0.2/32"]"#);
        assert_eq!(parse(&text).unwrap(), config);
    }
}
