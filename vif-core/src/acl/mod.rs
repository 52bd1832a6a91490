//! The per-VIF policy engine: ACL rules, their compiled classifier, connection tracking and
//! anti-spoofing (port security). Rate limiting is in [`crate::qos`].
//!
//! - [`rule`]: [`AclSpec`] and [`Rule`] as written in the config (serde, TOML-friendly) and
//!   their validation; [`fields`] has the typed values (CIDR, port range, protocol, ...).
//! - [`compile`]: the rule compiler (a HyperSplit decision tree over the rule boxes).
//! - [`classify`]: [`CompiledAcl`], classification through `&self` from any number of workers,
//!   per-rule hit counters sharded per worker, monitor mode.
//! - [`slot`]: [`AclSlot`], the atomically swappable `Arc<CompiledAcl>` of a VIF direction.
//! - [`reference`]: the linear-scan reference the classifier is tested and benchmarked against.
//! - [`key`]: [`AclKey`], the fields read from a frame.
//! - [`conntrack`]: [`Conntrack`], the bounded, sharded flow table of stateful ACLs.
//! - [`spoof`]: [`PortSecurity`], anti-spoofing of the frames a guest sends.
//! - [`firewall`]: [`Firewall`], all of the above for one VIF, as the pipeline applies it.
//!
//! # Datapath contract
//!
//! Classification allocates nothing, takes no lock and never panics; the clock is a parameter
//! (`now`, nanoseconds of any monotonic clock), never read inside. Directions are the guest's
//! ([`crate::model::AclRefs`]): [`Direction::Egress`] for frames the guest sends (TX path),
//! [`Direction::Ingress`] for frames delivered to it (RX path).

pub mod classify;
pub mod compile;
pub mod conntrack;
pub mod error;
pub mod fields;
pub mod firewall;
pub mod key;
pub mod reference;
pub mod rule;
pub mod slot;
pub mod spoof;

pub use classify::{AclVerdict, Classification, CompileOptions, CompiledAcl, Decider};
pub use compile::TreeStats;
pub use conntrack::{
    Admit, Conntrack, ConntrackConfig, ConntrackStats, FlowState, FullPolicy, TcpState, Timeouts,
    Track,
};
pub use error::{AclError, RuleProblem};
pub use fields::{EtherTypeMatch, IpCidr, PortRange, Protocol, TcpFlagSet};
pub use firewall::{Firewall, FirewallView};
pub use key::AclKey;
pub use rule::{AclSpec, Action, DefaultActions, Mode, Rule, TcpFlagsMatch, MAX_RULES};
pub use slot::{AclSlot, AclSnapshot};
pub use spoof::{PortSecurity, PortSecuritySpec, SpoofCause};

/// Which way a frame crosses the VIF, from the guest's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Toward the guest: the RX path (receiveq).
    Ingress,
    /// From the guest: the TX path (transmitq).
    Egress,
}

impl Direction {
    pub const fn reverse(self) -> Direction {
        match self {
            Direction::Ingress => Direction::Egress,
            Direction::Egress => Direction::Ingress,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
