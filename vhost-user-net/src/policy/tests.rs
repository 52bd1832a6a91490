//! The datapath's policy per frame: ACL verdicts, port security, monitor mode, the TX rate limit
//! (held, not consumed, then passing once time moved on) and the RX one (dropped), and swaps
//! that leave unchanged parts alone. Time is injected; nothing sleeps.

use super::*;
use crate::policy::TxJudgement;
use vif_core::acl::{Mode, PortSecuritySpec};
use vif_core::qos::{BucketSpec, RateLimitSpec};
use vif_core::stats::DropReason;

const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
const PEER_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 2]);
const MS: u64 = 1_000_000;

/// Ethernet + IPv4 (20 bytes, no options) + TCP (20 bytes) from `src_mac`/10.0.0.`src` to
/// 10.0.0.`dst`:`dst_port`, flags SYN; laid out by hand from RFC 791 § 3.1 and RFC 9293 § 3.1.
/// Checksums are left 0: nothing on this path verifies them.
fn tcp(src_mac: MacAddr, src: u8, dst: u8, dst_port: u16) -> Vec<u8> {
    let mut frame = vec![0u8; 14 + 20 + 20];
    frame[0..6].copy_from_slice(PEER_MAC.as_bytes());
    frame[6..12].copy_from_slice(src_mac.as_bytes());
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    frame[16..18].copy_from_slice(&40u16.to_be_bytes());
    frame[22] = 64;
    frame[23] = 6;
    frame[26..30].copy_from_slice(&[10, 0, 0, src]);
    frame[30..34].copy_from_slice(&[10, 0, 0, dst]);
    frame[34..36].copy_from_slice(&40000u16.to_be_bytes());
    frame[36..38].copy_from_slice(&dst_port.to_be_bytes());
    frame[46] = 0x50;
    frame[47] = 0x02;
    frame
}

fn deny_port_80(mode: Mode) -> AclSpec {
    let mut acl: AclSpec = toml::from_str(
        "name = \"no-web\"\ndefault_action = { ingress = \"allow\", egress = \"allow\" }\n\
         rules = [{ action = \"deny\", protocol = \"tcp\", dst_ports = \"80\" }]",
    )
    .unwrap();
    acl.mode = mode;
    acl
}

fn ops_limit(size: u64, refill_time_ms: u64) -> RateLimitSpec {
    RateLimitSpec {
        bandwidth: None,
        ops: Some(BucketSpec {
            size,
            one_time_burst: 0,
            refill_time_ms,
        }),
    }
}

fn policy(resolved: &ResolvedPolicy) -> VifPolicy {
    let policy = VifPolicy::new(GUEST_MAC, ConntrackConfig::default());
    policy.apply(resolved, 0).unwrap();
    policy
}

#[test]
fn no_policy_is_idle_and_allocates_no_firewall() {
    let policy = policy(&ResolvedPolicy::default());
    assert!(policy.burst(Direction::Egress, 0, 0).is_idle());
    assert!(policy.burst(Direction::Ingress, 0, 0).is_idle());
    assert!(policy.firewall().is_none());
}

#[test]
fn egress_acl_denies_one_port() {
    let policy = policy(&ResolvedPolicy {
        egress: Some(deny_port_80(Mode::Enforce)),
        ..ResolvedPolicy::default()
    });
    let mut burst = policy.burst(Direction::Egress, 0, 0);
    assert_eq!(
        burst.judge_tx(&tcp(GUEST_MAC, 1, 2, 80)),
        TxJudgement::Drop(DropReason::AclDeny)
    );
    assert_eq!(burst.judge_tx(&tcp(GUEST_MAC, 1, 2, 22)), TxJudgement::Pass);
    // A frame the engine cannot parse is refused, not waved through.
    let mut truncated = tcp(GUEST_MAC, 1, 2, 22);
    truncated.truncate(40);
    assert_eq!(
        burst.judge_tx(&truncated),
        TxJudgement::Drop(DropReason::Malformed)
    );
    // Egress only: the same frame delivered to the guest passes.
    drop(burst);
    let mut rx = policy.burst(Direction::Ingress, 0, 0);
    assert_eq!(rx.judge_rx(&tcp(PEER_MAC, 2, 1, 80)), Ok(()));
    let hits = policy.firewall().unwrap().acl(Direction::Egress).load();
    assert_eq!(hits.as_ref().unwrap().rule_hits(), [1]);
}

#[test]
fn monitor_mode_passes_and_counts() {
    let policy = policy(&ResolvedPolicy {
        ingress: Some(deny_port_80(Mode::Monitor)),
        ..ResolvedPolicy::default()
    });
    let mut burst = policy.burst(Direction::Ingress, 0, 0);
    assert_eq!(burst.judge_rx(&tcp(PEER_MAC, 2, 1, 80)), Ok(()));
    assert_eq!(burst.judge_rx(&tcp(PEER_MAC, 2, 1, 80)), Ok(()));
    let acl = policy.firewall().unwrap().acl(Direction::Ingress).load();
    assert_eq!(acl.as_ref().unwrap().would_deny(), 2);
}

#[test]
fn port_security_refuses_other_sources() {
    let spec = PortSecuritySpec {
        allowed_ips: vec!["10.0.0.1/32".parse().unwrap()],
        ..PortSecuritySpec::default()
    };
    let policy = policy(&ResolvedPolicy {
        port_security: Some(spec),
        ..ResolvedPolicy::default()
    });
    let mut burst = policy.burst(Direction::Egress, 0, 0);
    assert_eq!(burst.judge_tx(&tcp(GUEST_MAC, 1, 2, 80)), TxJudgement::Pass);
    assert_eq!(
        burst.judge_tx(&tcp(PEER_MAC, 1, 2, 80)),
        TxJudgement::Drop(DropReason::Spoofed),
        "another MAC"
    );
    assert_eq!(
        burst.judge_tx(&tcp(GUEST_MAC, 9, 2, 80)),
        TxJudgement::Drop(DropReason::Spoofed),
        "another IP"
    );
}

#[test]
fn tx_over_the_limit_is_held_and_charges_nothing() {
    let qos = QosSpec {
        name: "two".into(),
        tx: ops_limit(2, 100),
        rx: RateLimitSpec::default(),
    };
    let policy = policy(&ResolvedPolicy {
        egress: Some(deny_port_80(Mode::Enforce)),
        qos: Some(qos),
        ..ResolvedPolicy::default()
    });
    let mut burst = policy.burst(Direction::Egress, 0, 0);
    // Denied frames take no tokens.
    for _ in 0..5 {
        assert_eq!(
            burst.judge_tx(&tcp(GUEST_MAC, 1, 2, 80)),
            TxJudgement::Drop(DropReason::AclDeny)
        );
    }
    let ssh = tcp(GUEST_MAC, 1, 2, 22);
    assert_eq!(burst.judge_tx(&ssh), TxJudgement::Pass);
    assert_eq!(burst.judge_tx(&ssh), TxJudgement::Pass);
    let TxJudgement::Throttle { retry_in_ns } = burst.judge_tx(&ssh) else {
        panic!("third frame passed a 2-packet bucket");
    };
    assert!(retry_in_ns > 0 && retry_in_ns <= 50 * MS, "{retry_in_ns}");
    assert_eq!(burst.retry_in_ns(), retry_in_ns);
    // Held frames were not judged: the ACL saw two ssh frames, not three.
    let acl = policy.firewall().unwrap().acl(Direction::Egress).load();
    assert_eq!(acl.as_ref().unwrap().default_hits(Direction::Egress), 2);
    drop(burst);
    // When the bucket says, the frame goes.
    let mut later = policy.burst(Direction::Egress, retry_in_ns, 0);
    assert_eq!(later.judge_tx(&ssh), TxJudgement::Pass);
}

#[test]
fn rx_over_the_limit_is_dropped() {
    let qos = QosSpec {
        name: "rx-one".into(),
        tx: RateLimitSpec::default(),
        rx: ops_limit(1, 1000),
    };
    let policy = policy(&ResolvedPolicy {
        qos: Some(qos),
        ..ResolvedPolicy::default()
    });
    assert!(
        policy.burst(Direction::Egress, 0, 0).is_idle(),
        "no TX limit"
    );
    let mut burst = policy.burst(Direction::Ingress, 0, 0);
    let frame = tcp(PEER_MAC, 2, 1, 22);
    assert_eq!(burst.judge_rx(&frame), Ok(()));
    assert_eq!(burst.judge_rx(&frame), Err(DropReason::RateLimited));
}

#[test]
fn apply_swaps_only_what_changed() {
    let first = ResolvedPolicy {
        egress: Some(deny_port_80(Mode::Enforce)),
        ingress: Some(deny_port_80(Mode::Monitor)),
        ..ResolvedPolicy::default()
    };
    let policy = policy(&first);
    let firewall = policy.firewall().unwrap();
    let egress = firewall.acl(Direction::Egress).load_full_for_test();
    let mut second = first.clone();
    second.ingress = None;
    policy.apply(&second, 1).unwrap();
    assert!(firewall.acl(Direction::Ingress).load().is_none());
    let kept = firewall.acl(Direction::Egress).load_full_for_test();
    assert!(Arc::ptr_eq(&egress, &kept), "unchanged ACL recompiled");
    assert_eq!(policy.current(), second);

    // A refused policy changes nothing.
    let mut bad = second.clone();
    bad.egress.as_mut().unwrap().name = "bad name".into();
    assert!(matches!(
        policy.apply(&bad, 2),
        Err(PolicyError::Acl {
            direction: "egress",
            ..
        })
    ));
    assert_eq!(policy.current(), second);
    // Clearing everything turns parsing off.
    policy.apply(&ResolvedPolicy::default(), 3).unwrap();
    assert!(policy.burst(Direction::Egress, 0, 0).is_idle());
}

/// `AclSlot::load` as an owned `Arc`, to compare identities.
trait LoadFull {
    fn load_full_for_test(&self) -> Arc<CompiledAcl>;
}

impl LoadFull for vif_core::acl::AclSlot {
    fn load_full_for_test(&self) -> Arc<CompiledAcl> {
        self.load().as_ref().cloned().unwrap()
    }
}
