//! Port security on the real daemon's datapath: a guest whose VIF allows only its own MAC and
//! address cannot send from another MAC, another IPv4 address, or ARP for another address or
//! with another sender MAC; each is a `spoofed` drop, none reaches the other guest, and no
//! forged MAC is learned by the segment. With `allowed_ips` empty only the MAC is checked.

mod control_support;
mod daemon_support;
mod policy_support;

use control_support::{guest, ok, start_daemon, vif_table};
use daemon_support::Scratch;
use policy_support::{arp, counters_until, drops, ip, mac, receive, send, tcp, tcp_from, SYN};
use vhost_user_net::control::protocol::{Request, SegmentSummary};

const A: u8 = 0x0a;
const B: u8 = 0x0b;
/// An address and MAC no VIF owns.
const FORGED: u8 = 0x99;

fn fdb_entries(control: &std::path::Path) -> usize {
    let segments: Vec<SegmentSummary> =
        serde_json::from_value(ok(control, &Request::Segments {})).expect("segments result");
    segments.iter().map(|s| s.fdb_entries).sum()
}

#[test]
fn spoofed_mac_ip_and_arp_are_dropped_and_counted() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}",
        vif_table(
            "a",
            A,
            "port_security = { allowed_ips = [\"192.0.2.10/32\"] }"
        ),
        vif_table("b", B, "")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let spoofed = [
        tcp_from(mac(FORGED), ip(A), B, 40000, 22, SYN, b"mac"),
        tcp_from(mac(A), ip(FORGED), B, 40000, 22, SYN, b"ip"),
        arp(mac(A), mac(A), ip(FORGED), ip(B)),
        arp(mac(A), mac(FORGED), ip(A), ip(B)),
    ];
    for frame in &spoofed {
        send(&mut a, frame);
    }
    let honest_arp = arp(mac(A), mac(A), ip(A), ip(B));
    let honest = tcp(A, B, 40000, 22, SYN, b"honest");
    send(&mut a, &honest_arp);
    send(&mut a, &honest);
    // Nothing forged got through: the first frames B sees are the honest ones.
    assert_eq!(receive(&mut b, log), honest_arp);
    assert_eq!(receive(&mut b, log), honest);

    let counters = counters_until(&daemon.control, "a", "four spoofed drops", |c| {
        drops(&c.tx, "spoofed") == 4
    });
    assert_eq!(counters.tx.packets, 2);
    // Only A's real MAC was learned: a forged source never reached the FDB.
    assert_eq!(fdb_entries(&daemon.control), 1);
}

#[test]
fn an_empty_allow_list_checks_the_mac_only() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}",
        vif_table("a", A, "port_security = {}"),
        vif_table("b", B, "")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let forged_mac = tcp_from(mac(FORGED), ip(A), B, 40000, 22, SYN, b"");
    let any_ip = tcp_from(mac(A), ip(FORGED), B, 40000, 22, SYN, b"");
    send(&mut a, &forged_mac);
    send(&mut a, &any_ip);
    assert_eq!(receive(&mut b, log), any_ip);
    counters_until(&daemon.control, "a", "one spoofed drop", |c| {
        drops(&c.tx, "spoofed") == 1 && c.tx.packets == 1
    });
}
