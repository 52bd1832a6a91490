//! Conntrack tests with an injected clock: TCP lifecycle, echo flows, timeouts, a full table.

use super::*;
use crate::acl::tests::{ip_key, tcp, udp};
use crate::wire::frame::IpFrag;

const SEC: u64 = NS_PER_SEC;

fn table(capacity: usize) -> Conntrack {
    Conntrack::new(ConntrackConfig {
        capacity,
        ..ConntrackConfig::default()
    })
    .unwrap()
}

fn echo(src: &str, dst: &str, icmp_type: u16, id: u16) -> AclKey {
    let mut key = ip_key(src.parse().unwrap(), dst.parse().unwrap(), 1, icmp_type, 0);
    key.icmp_echo_id = id;
    key
}

#[test]
fn tcp_lifecycle() {
    let ct = table(16);
    let (a, b) = ("10.0.0.1", "10.0.0.2");
    let syn = tcp(a, b, 40000, 80, TcpFlags::SYN);
    assert_eq!(ct.track(&syn, 0), Track::Miss);
    assert_eq!(ct.admit(&syn, 0), Admit::Created);
    assert_eq!(ct.admit(&syn, 0), Admit::Exists);
    let reply = |flags| tcp(b, a, 80, 40000, flags);
    let opener = |flags| tcp(a, b, 40000, 80, flags);
    let step = |key: AclKey, now| ct.track(&key, now);
    assert_eq!(
        step(reply(TcpFlags::SYN | TcpFlags::ACK), 1),
        Track::Hit(FlowState::Tcp(TcpState::SynReceived))
    );
    assert_eq!(
        step(opener(TcpFlags::ACK), 2),
        Track::Hit(FlowState::Tcp(TcpState::Established))
    );
    assert_eq!(
        step(reply(TcpFlags::ACK | TcpFlags::PSH), 3),
        Track::Hit(FlowState::Tcp(TcpState::Established))
    );
    assert_eq!(
        step(opener(TcpFlags::FIN | TcpFlags::ACK), 4),
        Track::Hit(FlowState::Tcp(TcpState::FinWait { by_opener: true }))
    );
    // A retransmitted FIN from the same side does not close.
    assert_eq!(
        step(opener(TcpFlags::FIN | TcpFlags::ACK), 5),
        Track::Hit(FlowState::Tcp(TcpState::FinWait { by_opener: true }))
    );
    assert_eq!(
        step(reply(TcpFlags::FIN | TcpFlags::ACK), 6),
        Track::Hit(FlowState::Tcp(TcpState::Closing))
    );
    assert_eq!(
        step(opener(TcpFlags::ACK), 7),
        Track::Hit(FlowState::Tcp(TcpState::Closing))
    );
    // Port reuse: a new SYN is a new flow, and admitting it replaces the finished entry.
    assert_eq!(step(syn, 8), Track::Miss);
    assert_eq!(ct.admit(&syn, 8), Admit::Created);
    assert_eq!(ct.stats().occupancy, 1);
    assert_eq!(ct.stats().created, 2);
    assert_eq!(
        step(reply(TcpFlags::RST), 9),
        Track::Hit(FlowState::Tcp(TcpState::Closed))
    );
}

#[test]
fn tcp_timeouts_follow_the_state() {
    let ct = table(16);
    let t = Timeouts::default();
    let syn = tcp("10.0.0.1", "10.0.0.2", 1, 2, TcpFlags::SYN);
    ct.admit(&syn, 0);
    let transient = u64::from(t.tcp_transient_secs) * SEC;
    assert_eq!(
        ct.track(&syn, transient),
        Track::Miss,
        "half-open flows expire"
    );
    assert_eq!(ct.stats().expired, 1);
    assert_eq!(ct.occupancy(), 0);

    // Taken up mid-stream: established, with the long timeout.
    let ack = tcp("10.0.0.1", "10.0.0.2", 1, 2, TcpFlags::ACK);
    assert_eq!(ct.admit(&ack, 0), Admit::Created);
    assert!(matches!(ct.track(&ack, transient * 2), Track::Hit(_)));
    let rst = tcp("10.0.0.2", "10.0.0.1", 2, 1, TcpFlags::RST);
    assert!(matches!(ct.track(&rst, transient * 2), Track::Hit(_)));
    let closed = u64::from(t.tcp_closed_secs) * SEC;
    assert_eq!(ct.track(&ack, transient * 2 + closed), Track::Miss);
    // An RST opens nothing.
    assert_eq!(ct.admit(&rst, 0), Admit::NotOpened);
}

#[test]
fn udp_refreshes_then_expires_with_the_clock() {
    let ct = table(16);
    let timeout = u64::from(Timeouts::default().udp_secs) * SEC;
    let query = udp("10.0.0.1", "10.0.0.53", 5353, 53);
    let answer = udp("10.0.0.53", "10.0.0.1", 53, 5353);
    assert_eq!(ct.admit(&query, 0), Admit::Created);
    assert_eq!(ct.track(&answer, timeout - 1), Track::Hit(FlowState::Udp));
    // The answer refreshed the timer.
    assert_eq!(
        ct.track(&query, 2 * timeout - 2),
        Track::Hit(FlowState::Udp)
    );
    assert_eq!(ct.expire(3 * timeout), 1);
    assert_eq!(ct.track(&answer, 3 * timeout), Track::Miss);
    assert_eq!(ct.stats().expired, 1);
}

#[test]
fn echo_flows_key_on_the_identifier() {
    let ct = table(16);
    let request = echo("10.0.0.1", "10.0.0.2", 8, 7);
    assert_eq!(
        ct.admit(&echo("10.0.0.2", "10.0.0.1", 0, 7), 0),
        Admit::NotOpened
    );
    assert_eq!(ct.admit(&request, 0), Admit::Created);
    assert_eq!(
        ct.track(&echo("10.0.0.2", "10.0.0.1", 0, 7), 1),
        Track::Hit(FlowState::IcmpEcho)
    );
    assert_eq!(
        ct.track(&echo("10.0.0.2", "10.0.0.1", 0, 8), 1),
        Track::Miss
    );
    // A request from the responder is not the flow's return traffic.
    assert_eq!(
        ct.track(&echo("10.0.0.2", "10.0.0.1", 8, 7), 1),
        Track::Miss
    );
    // ICMP errors, later fragments and ARP are not tracked.
    let unreachable = ip_key(
        "10.0.0.2".parse().unwrap(),
        "10.0.0.1".parse().unwrap(),
        1,
        3,
        1,
    );
    assert_eq!(ct.track(&unreachable, 1), Track::Untrackable);
    let mut fragment = udp("10.0.0.1", "10.0.0.2", 0, 0);
    fragment.flow.frag = IpFrag::Later;
    assert_eq!(ct.track(&fragment, 1), Track::Untrackable);
    let mut arp = udp("10.0.0.1", "10.0.0.2", 0, 0);
    arp.flow.ethertype = crate::wire::ethernet::EtherType::ARP;
    assert_eq!(ct.admit(&arp, 1), Admit::NotOpened);
}

#[test]
fn full_table_refuses_new_flows_and_keeps_live_ones() {
    let ct = table(2);
    let flow = |port| udp("10.0.0.1", "10.0.0.2", port, 53);
    assert_eq!(ct.admit(&flow(1), 0), Admit::Created);
    assert_eq!(ct.admit(&flow(2), 0), Admit::Created);
    assert_eq!(ct.admit(&flow(3), 1), Admit::Full);
    assert_eq!(ct.admit(&flow(4), 2), Admit::Full);
    assert_eq!(ct.stats().full, 2);
    assert_eq!(ct.occupancy(), 2);
    assert_eq!(ct.track(&flow(1), 3), Track::Hit(FlowState::Udp));
    assert_eq!(ct.track(&flow(2), 3), Track::Hit(FlowState::Udp));
    // Once the old flows expired, a new one finds room (the shard sweeps itself).
    let later = 3 + u64::from(Timeouts::default().udp_secs) * SEC;
    assert_eq!(ct.admit(&flow(3), later), Admit::Created);
    assert_eq!(ct.stats().expired, 2);
    assert_eq!(ct.occupancy(), 1);
    ct.flush();
    assert_eq!(ct.occupancy(), 0);
}

#[test]
fn capacity_is_bounded() {
    let bad = ConntrackConfig {
        capacity: 0,
        ..ConntrackConfig::default()
    };
    assert!(matches!(
        Conntrack::new(bad),
        Err(AclError::Conntrack {
            field: "capacity",
            ..
        })
    ));
    let config: ConntrackConfig =
        toml::from_str("capacity = 1000\non_full = \"allow_untracked\"\n[timeouts]\nudp_secs = 5")
            .unwrap();
    assert_eq!(config.timeouts.udp_secs, 5);
    assert_eq!(config.timeouts.icmp_secs, 30);
    assert_eq!(config.on_full, FullPolicy::AllowUntracked);
}
