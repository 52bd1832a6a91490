//! The policy families of a scrape: ACL rule hits and connection tracking, per VIF, read from
//! the VIF's `vif_core::acl::Firewall` (a VIF without one exports none of these series).
//!
//! - `vif_acl_rule_hits_total{vif,tenant,direction,acl,rule}`: packets a rule decided, `rule`
//!   being its position in the ACL's list (rules have no names); with conntrack, a flow's first
//!   packet only (`acl/firewall.rs`);
//! - `vif_acl_default_hits_total{vif,tenant,direction,acl}`: packets no rule matched;
//! - `vif_acl_would_deny_total{vif,tenant,direction,acl}`: what a monitor-mode ACL would have
//!   dropped (the canary signal);
//! - `vif_conntrack_entries`, `vif_conntrack_capacity` (gauges), `vif_conntrack_created_total`,
//!   `vif_conntrack_expired_total`, `vif_conntrack_full_total` (counters): the table's occupancy
//!   and exhaustion, so a full table is a visible event.
//!
//! Hit counters belong to a compiled rule set: replacing a VIF's ACL starts them again, which
//! Prometheus reads as a counter reset (the `acl` label changes with the set's name).

use vif_core::acl::{ConntrackStats, Direction, Firewall};

use super::exposition::{Exposition, MetricType};

/// A VIF's firewall with the VIF's base labels (`vif`, `tenant`).
pub struct PolicyView<'a> {
    pub labels: [(&'a str, &'a str); 2],
    pub firewall: &'a Firewall,
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// A conntrack family: name, type, HELP, and how to read it from the table's stats.
type ConntrackFamily = (
    &'static str,
    MetricType,
    &'static str,
    fn(&ConntrackStats) -> u64,
);

const DIRECTIONS: [Direction; 2] = [Direction::Ingress, Direction::Egress];

/// Writes the ACL and conntrack families for `views`.
pub fn policy_families(out: &mut Exposition, views: &[PolicyView<'_>]) {
    acl_families(out, views);
    conntrack_families(out, views);
}

fn acl_families(out: &mut Exposition, views: &[PolicyView<'_>]) {
    let name = "vif_acl_rule_hits_total";
    out.family(
        name,
        MetricType::Counter,
        "Packets an ACL rule decided (its position in the list), by the guest's direction.",
    );
    for view in views {
        let [vif, tenant] = view.labels;
        for direction in DIRECTIONS {
            let snapshot = view.firewall.acl(direction).load();
            let Some(acl) = snapshot.as_ref() else {
                continue;
            };
            for (index, hits) in acl.rule_hits().into_iter().enumerate() {
                let rule = index.to_string();
                let labels = [
                    vif,
                    tenant,
                    ("direction", direction_label(direction)),
                    ("acl", acl.name()),
                    ("rule", &rule),
                ];
                out.sample(name, &labels, hits);
            }
        }
    }
    for (name, help, read) in [
        (
            "vif_acl_default_hits_total",
            "Packets no ACL rule matched, decided by the ACL's default action.",
            false,
        ),
        (
            "vif_acl_would_deny_total",
            "Packets a monitor-mode ACL would have denied (they passed).",
            true,
        ),
    ] {
        out.family(name, MetricType::Counter, help);
        for view in views {
            let [vif, tenant] = view.labels;
            for direction in DIRECTIONS {
                let snapshot = view.firewall.acl(direction).load();
                let Some(acl) = snapshot.as_ref() else {
                    continue;
                };
                let value = if read {
                    acl.would_deny()
                } else {
                    acl.default_hits(direction)
                };
                let labels = [
                    vif,
                    tenant,
                    ("direction", direction_label(direction)),
                    ("acl", acl.name()),
                ];
                out.sample(name, &labels, value);
            }
        }
    }
}

fn conntrack_families(out: &mut Exposition, views: &[PolicyView<'_>]) {
    let stats: Vec<_> = views
        .iter()
        .map(|v| (v.labels, v.firewall.conntrack().stats()))
        .collect();
    let families: [ConntrackFamily; 5] = [
        (
            "vif_conntrack_entries",
            MetricType::Gauge,
            "Flows in the VIF's connection tracking table.",
            |s| u64::try_from(s.occupancy).unwrap_or(u64::MAX),
        ),
        (
            "vif_conntrack_capacity",
            MetricType::Gauge,
            "Most flows the VIF's connection tracking table holds.",
            |s| u64::try_from(s.capacity).unwrap_or(u64::MAX),
        ),
        (
            "vif_conntrack_created_total",
            MetricType::Counter,
            "Flows opened in the connection tracking table.",
            |s| s.created,
        ),
        (
            "vif_conntrack_expired_total",
            MetricType::Counter,
            "Flows that timed out of the connection tracking table.",
            |s| s.expired,
        ),
        (
            "vif_conntrack_full_total",
            MetricType::Counter,
            "New flows refused because the connection tracking table was full.",
            |s| s.full,
        ),
    ];
    for (name, kind, help, read) in families {
        out.family(name, kind, help);
        for (labels, stats) in &stats {
            out.sample(name, labels, read(stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vif_core::acl::{AclSpec, CompiledAcl, ConntrackConfig};

    use super::*;
    use crate::metrics::exposition::tests::parse_exposition;

    #[test]
    fn acl_and_conntrack_series() {
        let firewall = Firewall::new(ConntrackConfig::default()).unwrap();
        let spec: AclSpec = toml::from_str(
            r#"
name = "web"
default_action = { ingress = "deny", egress = "allow" }
rules = [
  { action = "allow", protocol = "tcp", dst_ports = "80" },
  { action = "deny", protocol = "udp" },
]
"#,
        )
        .unwrap();
        let acl = Arc::new(CompiledAcl::compile(&spec).unwrap());
        firewall.acl(Direction::Ingress).swap(Some(acl));
        let mut out = Exposition::new();
        policy_families(
            &mut out,
            &[PolicyView {
                labels: [("vif", "a"), ("tenant", "")],
                firewall: &firewall,
            }],
        );
        let text = out.into_string();
        let samples = parse_exposition(&text).unwrap();
        let rules: Vec<_> = samples
            .iter()
            .filter(|(n, ..)| n == "vif_acl_rule_hits_total")
            .collect();
        assert_eq!(rules.len(), 2, "{text}");
        assert!(rules[1].1.contains(&("rule".to_owned(), "1".to_owned())));
        assert!(rules[0]
            .1
            .contains(&("direction".to_owned(), "ingress".to_owned())));
        assert!(
            text.contains("vif_conntrack_capacity{vif=\"a\",tenant=\"\"} 32768\n"),
            "{text}"
        );
        assert!(text.contains("vif_conntrack_entries{vif=\"a\",tenant=\"\"} 0\n"));
        assert!(text.contains("vif_acl_default_hits_total{vif=\"a\",tenant=\"\",direction=\"ingress\",acl=\"web\"} 0\n"));
    }
}
