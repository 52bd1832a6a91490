//! The per-VIF engine end to end: stateful return traffic, a full table, monitor mode.

use super::*;
use crate::acl::tests::{tcp, udp};
use crate::acl::{AclSpec, CompiledAcl, Decider, Mode, Rule};
use crate::wire::tcp::TcpFlags;

const GUEST: &str = "10.0.0.5";
const SERVER: &str = "192.0.2.80";

/// Egress: the guest may open TCP to port 80 (stateful); ingress: nothing is allowed.
fn web_client(capacity: usize, on_full: FullPolicy, mode: Mode) -> Firewall {
    let firewall = Firewall::new(ConntrackConfig {
        capacity,
        on_full,
        ..ConntrackConfig::default()
    })
    .unwrap();
    let rule: Rule =
        toml::from_str("action = \"allow\"\nprotocol = \"tcp\"\ndst_ports = \"80\"").unwrap();
    let mut egress = AclSpec::new("egress", vec![rule]);
    egress.stateful = true;
    egress.mode = mode;
    let ingress = AclSpec::new("ingress", vec![]);
    for (direction, spec) in [(Direction::Egress, egress), (Direction::Ingress, ingress)] {
        firewall
            .acl(direction)
            .swap(Some(Arc::new(CompiledAcl::compile(&spec).unwrap())));
    }
    firewall
}

#[test]
fn return_traffic_passes_only_for_allowed_flows() {
    let firewall = web_client(16, FullPolicy::Refuse, Mode::Enforce);
    let view = firewall.view();
    let syn = tcp(GUEST, SERVER, 40000, 80, TcpFlags::SYN);
    assert_eq!(
        view.filter(Direction::Egress, &syn, 0, 0),
        AclVerdict::Allow(Decider::Rule(0))
    );
    let syn_ack = tcp(SERVER, GUEST, 80, 40000, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        view.filter(Direction::Ingress, &syn_ack, 1, 0),
        AclVerdict::Tracked
    );
    let ack = tcp(GUEST, SERVER, 40000, 80, TcpFlags::ACK);
    assert_eq!(
        view.filter(Direction::Egress, &ack, 2, 1),
        AclVerdict::Tracked
    );

    // Not a reply to anything: the ingress rules (default deny) decide.
    let inbound = tcp(SERVER, GUEST, 80, 40001, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        view.filter(Direction::Ingress, &inbound, 3, 0),
        AclVerdict::Deny(Decider::Default)
    );
    // A denied flow opens nothing, so its "reply" is denied too.
    let ssh = tcp(GUEST, SERVER, 40002, 22, TcpFlags::SYN);
    assert_eq!(
        view.filter(Direction::Egress, &ssh, 4, 0),
        AclVerdict::Deny(Decider::Default)
    );
    let ssh_reply = tcp(SERVER, GUEST, 22, 40002, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        view.filter(Direction::Ingress, &ssh_reply, 5, 0),
        AclVerdict::Deny(Decider::Default)
    );
    let egress = firewall.acl(Direction::Egress).load();
    assert_eq!(
        egress.as_ref().unwrap().rule_hits(),
        vec![1],
        "tracked packets skip the rules"
    );
}

#[test]
fn full_table_refuses_new_flows_while_existing_ones_work() {
    let firewall = web_client(1, FullPolicy::Refuse, Mode::Enforce);
    let first = tcp(GUEST, SERVER, 40000, 80, TcpFlags::SYN);
    let second = tcp(GUEST, SERVER, 40001, 80, TcpFlags::SYN);
    assert!(firewall.filter(Direction::Egress, &first, 0, 0).passes());
    let refused = firewall.filter(Direction::Egress, &second, 1, 0);
    assert_eq!(refused, AclVerdict::ConntrackFull);
    assert_eq!(
        refused.drop_reason(),
        Some(crate::stats::DropReason::AclDeny)
    );
    assert_eq!(firewall.conntrack().stats().full, 1);
    let reply = tcp(SERVER, GUEST, 80, 40000, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        firewall.filter(Direction::Ingress, &reply, 2, 0),
        AclVerdict::Tracked
    );

    let lenient = web_client(1, FullPolicy::AllowUntracked, Mode::Enforce);
    assert!(lenient.filter(Direction::Egress, &first, 0, 0).passes());
    assert_eq!(
        lenient.filter(Direction::Egress, &second, 1, 0),
        AclVerdict::Allow(Decider::Rule(0))
    );
    let untracked_reply = tcp(SERVER, GUEST, 80, 40001, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        lenient.filter(Direction::Ingress, &untracked_reply, 2, 0),
        AclVerdict::Deny(Decider::Default)
    );
    assert_eq!(lenient.conntrack().stats().full, 1);
}

#[test]
fn monitor_mode_passes_and_opens_nothing() {
    let firewall = web_client(16, FullPolicy::Refuse, Mode::Monitor);
    let dns = udp(GUEST, SERVER, 5353, 53);
    let verdict = firewall.filter(Direction::Egress, &dns, 0, 0);
    assert_eq!(verdict, AclVerdict::WouldDeny(Decider::Default));
    assert!(verdict.passes());
    assert_eq!(firewall.conntrack().occupancy(), 0);
    let web = tcp(GUEST, SERVER, 40000, 80, TcpFlags::SYN);
    assert!(firewall.filter(Direction::Egress, &web, 0, 0).passes());
    assert_eq!(
        firewall.conntrack().occupancy(),
        1,
        "allowed flows are still tracked"
    );
}

#[test]
fn no_policy_means_unfiltered() {
    let firewall = Firewall::new(ConntrackConfig::default()).unwrap();
    let key = udp(GUEST, SERVER, 1, 2);
    assert_eq!(
        firewall.filter(Direction::Ingress, &key, 0, 0),
        AclVerdict::Unfiltered
    );
    let frame = [0u8; 14];
    let layout = crate::wire::frame::parse_frame(&frame).unwrap();
    let frame_key = AclKey::extract_with_layout(&frame, &layout).unwrap();
    assert_eq!(
        firewall.view().check_source(&frame, &layout, &frame_key),
        Ok(())
    );
    let security = PortSecurity::new(crate::acl::tests::GUEST_MAC, &Default::default()).unwrap();
    assert!(firewall
        .set_port_security(Some(Arc::new(security)))
        .is_none());
    assert_eq!(
        firewall.view().check_source(&frame, &layout, &frame_key),
        Err(SpoofCause::SrcMac)
    );
}
