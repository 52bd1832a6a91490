//! Why an ACL, a port-security spec or a conntrack configuration is refused: [`AclError`] names
//! the ACL, the rule index and the field, so an operator can fix the config from the message.

use crate::model::NameError;

/// What is wrong with one field of one rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    #[error("is IPv{found} but the rule's other prefix is IPv{expected}")]
    FamilyMismatch { expected: u8, found: u8 },
    #[error("is {ethertype:#06x} but the rule's addresses or protocol need {needs}")]
    EtherTypeConflict { ethertype: u16, needs: &'static str },
    #[error("needs protocol tcp, udp or sctp (has {protocol:?})")]
    PortsNeedTransport { protocol: Option<u8> },
    #[error("needs protocol icmp or icmpv6 (has {protocol:?})")]
    IcmpNeedsIcmpProtocol { protocol: Option<u8> },
    #[error("protocol {protocol} does not go with IPv{family} addresses")]
    IcmpFamilyMismatch { protocol: u8, family: u8 },
    #[error("icmp_code needs icmp_type")]
    IcmpCodeWithoutType,
    #[error("needs protocol tcp (has {protocol:?})")]
    FlagsNeedTcp { protocol: Option<u8> },
    #[error("value {value:#04x} has bits outside mask {mask:#04x}: the rule could never match")]
    FlagsValueOutsideMask { value: u8, mask: u8 },
}

/// Why a policy spec is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("acl name {name:?} {reason}")]
    InvalidName { name: String, reason: NameError },
    #[error("acl {acl}: {count} rules, more than {max}")]
    TooManyRules {
        acl: String,
        count: usize,
        max: usize,
    },
    #[error("acl {acl}: rule {index}: {field} {problem}")]
    Rule {
        acl: String,
        /// Position in the `rules` list, from 0.
        index: usize,
        field: &'static str,
        problem: RuleProblem,
    },
    #[error("port security: {field} {problem}")]
    PortSecurity {
        field: &'static str,
        problem: &'static str,
    },
    #[error("conntrack: {field} is {value}, must be {bound}")]
    Conntrack {
        field: &'static str,
        value: u64,
        bound: &'static str,
    },
}
