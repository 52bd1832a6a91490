//! The ACL model: [`AclSpec`] and its [`Rule`]s as written in the config file, and
//! [`AclSpec::validate`], which refuses rules whose fields contradict each other.
//!
//! # Semantics (the linear-scan reference in `reference.rs` is their executable form)
//!
//! A rule matches a packet when every field it sets matches; an unset field matches anything.
//! - `ethertype`: the EtherType after the VLAN tags.
//! - `src`, `dst`: the packet is IP of the prefix's family and its address is inside. An ARP
//!   packet is not IP here: its sender and target addresses are for anti-spoofing, and ACLs
//!   match ARP by `ethertype` only.
//! - `protocol`: the packet is IPv4 or IPv6 and its upper-layer protocol (after IPv6 extension
//!   headers) is this one.
//! - `src_ports`, `dst_ports` (TCP, UDP, SCTP), `icmp_type`, `icmp_code` (ICMP, ICMPv6) and
//!   `tcp_flags` (under `mask`, the flags equal `value`) are L4 fields. A non-initial fragment
//!   has no L4 header, so a rule with an L4 field never matches it; rules without L4 fields
//!   match it on L3 alone (as OVS's `nw_frag=later` and VPP's ACL plugin do). To let fragments
//!   through, write a rule without ports.
//!
//! The winning rule is the matching rule with the lowest `priority`; among equal priorities the
//! first in the list. When none matches, the default action of the direction applies.
//! Directions are the guest's, as in [`crate::model::AclRefs`]: `ingress` is toward the guest,
//! `egress` from it.
//!
//! ```toml
//! name = "web"
//! stateful = true
//! default_action = { ingress = "deny", egress = "allow" }
//!
//! [[rules]]
//! priority = 10
//! action = "allow"
//! protocol = "tcp"
//! dst_ports = "80"
//! src = "10.0.0.0/8"
//! ```

use serde::{Deserialize, Serialize};

use super::error::{AclError, RuleProblem};
use super::fields::{EtherTypeMatch, IpCidr, PortRange, Protocol, TcpFlagSet};
use crate::model::names::check_name;
use crate::wire::ethernet::EtherType;

/// Most rules per ACL. A sanity bound for config files: compile time and memory stay in the
/// hundreds of milliseconds and tens of MiB well past it (see `compile.rs`).
pub const MAX_RULES: usize = 65_536;

/// What a rule, or a default, does with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    #[default]
    Deny,
}

/// `enforce` drops denied packets; `monitor` counts them as "would deny" and lets them pass,
/// so a new policy can be tried on live traffic first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Monitor,
}

/// The action when no rule matches, per direction. Both default to `deny`: an ACL is an
/// allow-list unless it says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultActions {
    #[serde(default = "deny")]
    pub ingress: Action,
    #[serde(default = "deny")]
    pub egress: Action,
}

fn deny() -> Action {
    Action::Deny
}

impl Default for DefaultActions {
    fn default() -> Self {
        DefaultActions {
            ingress: Action::Deny,
            egress: Action::Deny,
        }
    }
}

/// A named ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSpec {
    /// Referenced from [`crate::model::AclRefs`]; syntax of [`check_name`].
    pub name: String,
    #[serde(default)]
    pub default_action: DefaultActions,
    /// Allowed flows are tracked, and their return traffic passes whatever the rules of the
    /// other direction say (`conntrack.rs`).
    #[serde(default)]
    pub stateful: bool,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// One rule; see the module docs for what each field matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Lower wins; ties go to the earlier rule.
    #[serde(default)]
    pub priority: u32,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethertype: Option<EtherTypeMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpCidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpCidr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_ports: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_ports: Option<PortRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<TcpFlagsMatch>,
}

/// Matches when `flags & mask == value`: `{ mask = "syn|ack", value = "syn" }` is a connection
/// request (RFC 9293 § 3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFlagsMatch {
    pub mask: TcpFlagSet,
    pub value: TcpFlagSet,
}

/// The address family a rule's fields require, as an IP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleFamily {
    /// No L3 condition: any frame.
    Any,
    /// `protocol` without addresses: IPv4 or IPv6.
    AnyIp,
    V4,
    V6,
}

impl Rule {
    /// The family the prefixes require (validated to agree), else `AnyIp` when the rule names
    /// a protocol, else `Any`.
    pub(crate) fn family(&self) -> RuleFamily {
        match self.src.or(self.dst) {
            Some(cidr) if cidr.is_ipv4() => RuleFamily::V4,
            Some(_) => RuleFamily::V6,
            None if self.protocol.is_some() => RuleFamily::AnyIp,
            None => RuleFamily::Any,
        }
    }

    /// True when the rule looks at the L4 header, so it cannot match a later fragment.
    pub(crate) fn has_l4_fields(&self) -> bool {
        self.src_ports.is_some()
            || self.dst_ports.is_some()
            || self.icmp_type.is_some()
            || self.icmp_code.is_some()
            || self.tcp_flags.is_some()
    }

    /// The first contradiction among the fields, as (field, problem).
    fn check(&self) -> Result<(), (&'static str, RuleProblem)> {
        let protocol = self.protocol.map(|p| p.number());
        if let (Some(src), Some(dst)) = (self.src, self.dst) {
            if src.is_ipv4() != dst.is_ipv4() {
                let version = |cidr: IpCidr| if cidr.is_ipv4() { 4 } else { 6 };
                return Err((
                    "dst",
                    RuleProblem::FamilyMismatch {
                        expected: version(src),
                        found: version(dst),
                    },
                ));
            }
        }
        let family = self.family();
        if let Some(EtherTypeMatch(ethertype)) = self.ethertype {
            let needs = match family {
                RuleFamily::Any => None,
                RuleFamily::AnyIp if ethertype == EtherType::IPV4 => None,
                RuleFamily::AnyIp if ethertype == EtherType::IPV6 => None,
                RuleFamily::AnyIp => Some("ipv4 or ipv6"),
                RuleFamily::V4 if ethertype != EtherType::IPV4 => Some("ipv4 (0x0800)"),
                RuleFamily::V6 if ethertype != EtherType::IPV6 => Some("ipv6 (0x86dd)"),
                RuleFamily::V4 | RuleFamily::V6 => None,
            };
            if let Some(needs) = needs {
                return Err((
                    "ethertype",
                    RuleProblem::EtherTypeConflict {
                        ethertype: ethertype.0,
                        needs,
                    },
                ));
            }
        }
        let transport = self.protocol.is_some_and(|p| p.has_ports());
        if self.src_ports.is_some() && !transport {
            return Err(("src_ports", RuleProblem::PortsNeedTransport { protocol }));
        }
        if self.dst_ports.is_some() && !transport {
            return Err(("dst_ports", RuleProblem::PortsNeedTransport { protocol }));
        }
        let icmp = self.protocol.is_some_and(|p| p.is_icmp());
        if self.icmp_type.is_some() && !icmp {
            return Err(("icmp_type", RuleProblem::IcmpNeedsIcmpProtocol { protocol }));
        }
        if self.icmp_code.is_some() && self.icmp_type.is_none() {
            return Err(("icmp_code", RuleProblem::IcmpCodeWithoutType));
        }
        // ICMPv4 inside IPv6 (or ICMPv6 inside IPv4) is never sent; such a rule is a typo.
        match (protocol, family) {
            (Some(1), RuleFamily::V6) | (Some(58), RuleFamily::V4) => {
                let family = if family == RuleFamily::V4 { 4 } else { 6 };
                return Err((
                    "protocol",
                    RuleProblem::IcmpFamilyMismatch {
                        protocol: protocol.unwrap_or_default(),
                        family,
                    },
                ));
            }
            _ => {}
        }
        if let Some(flags) = self.tcp_flags {
            if protocol != Some(6) {
                return Err(("tcp_flags", RuleProblem::FlagsNeedTcp { protocol }));
            }
            let (mask, value) = (flags.mask.0.bits(), flags.value.0.bits());
            if value & !mask != 0 {
                return Err((
                    "tcp_flags",
                    RuleProblem::FlagsValueOutsideMask { value, mask },
                ));
            }
        }
        Ok(())
    }
}

impl AclSpec {
    /// An ACL with default actions `deny`, stateless, enforcing.
    pub fn new(name: impl Into<String>, rules: Vec<Rule>) -> AclSpec {
        AclSpec {
            name: name.into(),
            default_action: DefaultActions::default(),
            stateful: false,
            mode: Mode::Enforce,
            rules,
        }
    }

    /// Checks the name, the rule count and every rule; returns the first problem.
    pub fn validate(&self) -> Result<(), AclError> {
        check_name(&self.name).map_err(|reason| AclError::InvalidName {
            name: self.name.clone(),
            reason,
        })?;
        if self.rules.len() > MAX_RULES {
            return Err(AclError::TooManyRules {
                acl: self.name.clone(),
                count: self.rules.len(),
                max: MAX_RULES,
            });
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.check().map_err(|(field, problem)| AclError::Rule {
                acl: self.name.clone(),
                index,
                field,
                problem,
            })?;
        }
        Ok(())
    }

    /// The default action of `direction`.
    pub fn default_for(&self, direction: super::Direction) -> Action {
        match direction {
            super::Direction::Ingress => self.default_action.ingress,
            super::Direction::Egress => self.default_action.egress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
name = "web"
stateful = true
mode = "monitor"
default_action = { ingress = "deny", egress = "allow" }

[[rules]]
priority = 10
action = "allow"
protocol = "tcp"
src = "10.0.0.0/8"
dst_ports = "80-81"
tcp_flags = { mask = "syn|ack", value = "syn" }

[[rules]]
action = "deny"
ethertype = 0x86dd

[[rules]]
action = "allow"
protocol = "icmpv6"
icmp_type = 128
"#;

    #[test]
    fn parses_toml_and_round_trips() {
        let spec: AclSpec = toml::from_str(WEB).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.mode, Mode::Monitor);
        assert_eq!(spec.default_action.egress, Action::Allow);
        assert_eq!(spec.rules.len(), 3);
        assert_eq!(spec.rules[0].dst_ports, PortRange::new(80, 81));
        assert_eq!(spec.rules[1].priority, 0);
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(toml::from_str::<AclSpec>(&text).unwrap(), spec);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        let typo = "name = \"a\"\n[[rules]]\naction = \"allow\"\ndst_port = 80\n";
        assert!(toml::from_str::<AclSpec>(typo).is_err());
        let bad_cidr = "name = \"a\"\n[[rules]]\naction = \"allow\"\nsrc = \"10.0.0.1/8\"\n";
        let err = toml::from_str::<AclSpec>(bad_cidr).unwrap_err().to_string();
        assert!(err.contains("host bits"), "{err}");
    }

    fn problem(rule: Rule) -> (usize, &'static str) {
        let spec = AclSpec::new("t", vec![Rule::default(), rule]);
        match spec.validate() {
            Err(AclError::Rule { index, field, .. }) => (index, field),
            other => panic!("expected a rule error, got {other:?}"),
        }
    }

    #[test]
    fn contradictions_name_the_rule_and_field() {
        let tcp = Some("tcp".parse().unwrap());
        let v4 = Some("10.0.0.0/8".parse().unwrap());
        let v6 = Some("2001:db8::/32".parse().unwrap());
        let rule = |f: fn(&mut Rule)| {
            let mut rule = Rule::default();
            f(&mut rule);
            rule
        };
        assert_eq!(
            problem(Rule {
                src: v4,
                dst: v6,
                ..Rule::default()
            }),
            (1, "dst")
        );
        assert_eq!(
            problem(Rule {
                src: v4,
                ethertype: Some("ipv6".parse().unwrap()),
                ..Rule::default()
            }),
            (1, "ethertype")
        );
        assert_eq!(
            problem(rule(|r| r.dst_ports = Some(PortRange::single(80)))),
            (1, "dst_ports")
        );
        assert_eq!(
            problem(Rule {
                protocol: tcp,
                icmp_type: Some(8),
                ..Rule::default()
            }),
            (1, "icmp_type")
        );
        assert_eq!(
            problem(Rule {
                protocol: Some("icmp".parse().unwrap()),
                dst: v6,
                ..Rule::default()
            }),
            (1, "protocol")
        );
        assert_eq!(
            problem(Rule {
                protocol: tcp,
                tcp_flags: Some(TcpFlagsMatch {
                    mask: "syn".parse().unwrap(),
                    value: "ack".parse().unwrap(),
                }),
                ..Rule::default()
            }),
            (1, "tcp_flags")
        );
        let err = AclSpec::new("bad/name", vec![]).validate().unwrap_err();
        assert!(matches!(err, AclError::InvalidName { .. }));
        let message = AclError::Rule {
            acl: "web".into(),
            index: 3,
            field: "dst_ports",
            problem: RuleProblem::PortsNeedTransport { protocol: None },
        }
        .to_string();
        assert_eq!(
            message,
            "acl web: rule 3: dst_ports needs protocol tcp, udp or sctp (has None)"
        );
    }
}
