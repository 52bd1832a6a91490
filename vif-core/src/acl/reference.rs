//! The linear-scan reference: the rule semantics of `rule.rs` written as directly as possible,
//! one rule at a time. The compiled classifier is tested against it (differential proptests)
//! and benchmarked beside it. Not for the datapath: it costs O(rules) per packet.

use super::key::{AclKey, PacketFamily};
use super::rule::{Rule, RuleFamily};

/// True when every field `rule` sets matches `key`.
pub fn rule_matches(rule: &Rule, key: &AclKey) -> bool {
    let flow = &key.flow;
    if rule.ethertype.is_some_and(|e| e.0 != flow.ethertype) {
        return false;
    }
    let family_ok = match rule.family() {
        RuleFamily::Any => true,
        RuleFamily::AnyIp => key.family() != PacketFamily::None,
        RuleFamily::V4 => key.family() == PacketFamily::V4,
        RuleFamily::V6 => key.family() == PacketFamily::V6,
    };
    if !family_ok {
        return false;
    }
    let in_prefix =
        |cidr: Option<super::fields::IpCidr>, addr: Option<std::net::IpAddr>| match (cidr, addr) {
            (None, _) => true,
            (Some(cidr), Some(addr)) => cidr.contains(addr),
            (Some(_), None) => false,
        };
    if !in_prefix(rule.src, key.flow.src_ip()) || !in_prefix(rule.dst, key.flow.dst_ip()) {
        return false;
    }
    if rule.protocol.is_some_and(|p| p.number() != flow.ip_proto) {
        return false;
    }
    if rule.has_l4_fields() && !key.has_l4() {
        return false;
    }
    if rule.src_ports.is_some_and(|r| !r.contains(flow.src_port))
        || rule.dst_ports.is_some_and(|r| !r.contains(flow.dst_port))
    {
        return false;
    }
    // ICMP type and code sit in the port slots of the flow key.
    if rule
        .icmp_type
        .is_some_and(|t| u16::from(t) != flow.src_port)
        || rule
            .icmp_code
            .is_some_and(|c| u16::from(c) != flow.dst_port)
    {
        return false;
    }
    if let Some(flags) = rule.tcp_flags {
        if key.tcp_flags.bits() & flags.mask.0.bits() != flags.value.0.bits() {
            return false;
        }
    }
    true
}

/// The index of the winning rule: the lowest priority among the matches, the earliest on ties.
pub fn reference_lookup(rules: &[Rule], key: &AclKey) -> Option<usize> {
    rules
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule_matches(rule, key))
        .min_by_key(|(index, rule)| (rule.priority, *index))
        .map(|(index, _)| index)
}
