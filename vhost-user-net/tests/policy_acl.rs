//! ACLs on the real daemon's datapath, between two virtual guests on one segment: a deny rule
//! on TCP port 80 (counted as `acl_deny`, shown by the rule-hit metric) while port 22 passes;
//! the same rule in monitor mode (passes, counted as would-deny); a stateful ingress ACL that
//! lets the reply of an allowed flow in and nothing else; and an ACL swapped through the control
//! socket while traffic flows.
//!
//! A dropped frame is proved by the next allowed frame arriving first, and by the counters,
//! never by waiting for silence.

mod control_support;
mod daemon_support;
mod policy_support;

use control_support::{guest, ok, sample, scrape_until, start_daemon, vif_table};
use daemon_support::Scratch;
use policy_support::{counters_until, drops, receive, send, tcp, udp, ACK, SYN, SYN_ACK};
use vhost_user_net::control::protocol::{AclDirection, Request};

const A: u8 = 0x0a;
const B: u8 = 0x0b;

/// Allows everything but TCP to port 80; `mode` is "enforce" or "monitor".
fn no_web(mode: &str) -> String {
    format!(
        "[[acl]]\nname = \"no-web\"\nmode = \"{mode}\"\n\
         default_action = {{ ingress = \"allow\", egress = \"allow\" }}\n\
         rules = [{{ action = \"deny\", protocol = \"tcp\", dst_ports = \"80\" }}]\n"
    )
}

#[test]
fn a_deny_rule_drops_port_80_counts_it_and_lets_22_pass() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}{}",
        vif_table("a", A, "acl = { egress = \"no-web\" }"),
        vif_table("b", B, ""),
        no_web("enforce")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let web = tcp(A, B, 40000, 80, SYN, b"");
    let ssh = tcp(A, B, 40001, 22, SYN, b"");
    send(&mut a, &web);
    send(&mut a, &ssh);
    // Frames of one queue stay in order: the first to arrive is the second sent.
    assert_eq!(receive(&mut b, log), ssh);

    let counters = counters_until(&daemon.control, "a", "one acl_deny", |c| {
        drops(&c.tx, "acl_deny") == 1
    });
    assert_eq!(counters.tx.packets, 1, "only :22 went through the switch");
    let text = scrape_until(daemon.metrics, "the deny in the metrics", |text| {
        sample(
            text,
            "vif_tx_drops_total",
            &[("vif", "a"), ("reason", "acl_deny")],
        ) == Some(1.0)
    });
    let hits = [
        ("vif", "a"),
        ("direction", "egress"),
        ("acl", "no-web"),
        ("rule", "0"),
    ];
    assert_eq!(sample(&text, "vif_acl_rule_hits_total", &hits), Some(1.0));
    let defaults = [("vif", "a"), ("direction", "egress"), ("acl", "no-web")];
    assert_eq!(
        sample(&text, "vif_acl_default_hits_total", &defaults),
        Some(1.0)
    );
}

#[test]
fn monitor_mode_passes_and_counts_what_it_would_deny() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}{}",
        vif_table("a", A, "acl = { egress = \"no-web\" }"),
        vif_table("b", B, ""),
        no_web("monitor")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let web = tcp(A, B, 40000, 80, SYN, b"");
    let ssh = tcp(A, B, 40001, 22, SYN, b"");
    send(&mut a, &web);
    send(&mut a, &ssh);
    assert_eq!(receive(&mut b, log), web, "monitor mode dropped");
    assert_eq!(receive(&mut b, log), ssh);

    let labels = [("vif", "a"), ("direction", "egress"), ("acl", "no-web")];
    scrape_until(daemon.metrics, "one would-deny", |text| {
        sample(text, "vif_acl_would_deny_total", &labels) == Some(1.0)
    });
    let counters = counters_until(&daemon.control, "a", "two packets", |c| c.tx.packets == 2);
    assert_eq!(drops(&counters.tx, "acl_deny"), 0);
}

#[test]
fn stateful_ingress_lets_replies_in_and_nothing_else() {
    let scratch = Scratch::new();
    let policy = "[[acl]]\nname = \"out\"\nstateful = true\n\
                  default_action = { egress = \"allow\" }\n\n\
                  [[acl]]\nname = \"locked\"\nstateful = true\n\
                  default_action = { ingress = \"deny\" }\n";
    let vifs = format!(
        "{}{}{policy}",
        vif_table("a", A, "acl = { ingress = \"locked\", egress = \"out\" }"),
        vif_table("b", B, "")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    // A opens a flow to B:80; the egress ACL allows it and conntrack remembers it.
    let syn = tcp(A, B, 40000, 80, SYN, b"");
    send(&mut a, &syn);
    assert_eq!(receive(&mut b, log), syn);
    // B opens its own connection to A:22 (unsolicited: denied), then answers A's flow.
    let unsolicited = tcp(B, A, 50000, 22, SYN, b"");
    let reply = tcp(B, A, 80, 40000, SYN_ACK, b"");
    send(&mut b, &unsolicited);
    send(&mut b, &reply);
    assert_eq!(
        receive(&mut a, log),
        reply,
        "the reply is the first to arrive"
    );
    // The flow goes on both ways.
    let ack = tcp(A, B, 40000, 80, ACK, b"GET /");
    send(&mut a, &ack);
    assert_eq!(receive(&mut b, log), ack);
    let data = tcp(B, A, 80, 40000, ACK, b"200 OK");
    send(&mut b, &data);
    assert_eq!(receive(&mut a, log), data);

    counters_until(&daemon.control, "a", "one ingress acl_deny", |c| {
        drops(&c.rx, "acl_deny") == 1 && c.rx.packets == 2
    });
    scrape_until(daemon.metrics, "a tracked flow", |text| {
        sample(text, "vif_conntrack_entries", &[("vif", "a")]) == Some(1.0)
    });
}

#[test]
fn an_acl_swapped_under_traffic_changes_verdicts_and_loses_nothing_else() {
    let scratch = Scratch::new();
    let vifs = format!("{}{}", vif_table("a", A, ""), vif_table("b", B, ""));
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);
    let acl: vif_core::acl::AclSpec = toml::from_str(
        "name = \"no-web\"\ndefault_action = { egress = \"allow\" }\n\
         rules = [{ action = \"deny\", protocol = \"tcp\", dst_ports = \"80\" }]",
    )
    .unwrap();

    const ROUNDS: u16 = 40;
    const SWAP_AT: u16 = 20;
    let mut web_received = 0;
    for round in 0..ROUNDS {
        if round == SWAP_AT {
            ok(
                &daemon.control,
                &Request::SetAcl {
                    vif: "a".into(),
                    direction: AclDirection::Egress,
                    acl: Some(acl.clone()),
                },
            );
        }
        let unrelated = udp(A, B, 5000, 5001, &round.to_be_bytes());
        let web = tcp(A, B, 40000 + round, 80, SYN, b"");
        send(&mut a, &web);
        send(&mut a, &unrelated);
        let first = receive(&mut b, log);
        if first == web {
            web_received += 1;
            assert!(
                round < SWAP_AT,
                "round {round}: port 80 passed after the swap"
            );
            assert_eq!(receive(&mut b, log), unrelated, "round {round}");
        } else {
            assert_eq!(first, unrelated, "round {round}: lost or reordered");
            assert!(
                round >= SWAP_AT,
                "round {round}: port 80 dropped before the swap"
            );
        }
    }
    assert_eq!(web_received, SWAP_AT);
    let counters = counters_until(&daemon.control, "a", "the denies", |c| {
        drops(&c.tx, "acl_deny") == u64::from(ROUNDS - SWAP_AT)
    });
    assert_eq!(counters.tx.packets, u64::from(ROUNDS + SWAP_AT));
    // The VIF's spec names the ACL now, as `show` and a later `apply` see it.
    let shown = ok(&daemon.control, &Request::Show { vif: "a".into() });
    assert_eq!(shown["spec"]["acl"]["egress"], "no-web", "{shown}");
}

#[test]
fn apply_with_changed_rules_updates_the_policy_in_place() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}",
        vif_table("a", A, "acl = { egress = \"filter\" }"),
        vif_table("b", B, "")
    );
    let rules = |port: u16| {
        format!(
            "[[acl]]\nname = \"filter\"\ndefault_action = {{ egress = \"allow\" }}\n\
             rules = [{{ action = \"deny\", protocol = \"tcp\", dst_ports = \"{port}\" }}]\n"
        )
    };
    let daemon = start_daemon(&scratch, &format!("{vifs}{}", rules(80)), &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);
    let web = tcp(A, B, 40000, 80, SYN, b"");
    let ssh = tcp(A, B, 40001, 22, SYN, b"");
    send(&mut a, &web);
    send(&mut a, &ssh);
    assert_eq!(receive(&mut b, log), ssh);

    let report = ok(
        &daemon.control,
        &Request::Apply {
            config: format!("{}{vifs}{}", control_support::services(&scratch), rules(22)),
            base: Some(scratch.path().to_owned()),
            dry_run: false,
        },
    );
    assert_eq!(report["changed"][0]["id"], "a", "{report}");
    assert_eq!(report["changed"][0]["action"], "policy updated", "{report}");
    assert_eq!(report["changed"][0]["fields"][0], "acl", "{report}");
    assert_eq!(report["unchanged"][0], "b", "{report}");

    // The same connection (no restart, no reconnect) now meets the new rules.
    send(&mut a, &ssh);
    send(&mut a, &web);
    assert_eq!(receive(&mut b, log), web);
    let counters = counters_until(&daemon.control, "a", "two denies", |c| {
        drops(&c.tx, "acl_deny") == 2
    });
    assert_eq!(counters.tx.packets, 2);
}
