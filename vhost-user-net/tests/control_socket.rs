//! The control socket of the real daemon: VIFs created at runtime carry traffic while the
//! others keep working, removal takes the socket away, `apply` adds, changes and removes and
//! reports it, and a request that fails validation changes nothing.

mod control_support;
mod daemon_support;

use std::os::unix::fs::PermissionsExt;

use control_support::{arp_request, exchange, guest, ok, request, start_daemon, vif_table};
use daemon_support::Scratch;
use vhost_user_net::control::protocol::{ChangeReport, ErrorCode, Request, VifSummary};

fn list(control: &std::path::Path) -> Vec<VifSummary> {
    serde_json::from_value(ok(control, &Request::List {})).expect("list result")
}

/// What a VIF is, without its connection state (a readiness probe moves that).
fn identities(vifs: &[VifSummary]) -> Vec<(String, String, u16, std::path::PathBuf)> {
    vifs.iter()
        .map(|v| (v.id.clone(), v.mac.clone(), v.mtu, v.socket.clone()))
        .collect()
}

fn ids(vifs: &[VifSummary]) -> Vec<&str> {
    vifs.iter().map(|v| v.id.as_str()).collect()
}

fn apply(
    scratch: &Scratch,
    text: &str,
    dry_run: bool,
) -> vhost_user_net::control::protocol::Response {
    request(
        &scratch.join("control.sock"),
        &Request::Apply {
            config: text.to_owned(),
            base: Some(scratch.path().to_owned()),
            dry_run,
        },
    )
}

#[test]
fn a_vif_created_at_runtime_carries_traffic_and_its_removal_disturbs_no_other() {
    let scratch = Scratch::new();
    let vifs = format!("{}{}", vif_table("a", 0x0a, ""), vif_table("c", 0x0c, ""));
    let daemon = start_daemon(&scratch, &vifs, &["a", "c"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut c = guest(&scratch.join("c.sock"), log);
    exchange(&mut a, &mut c, &arp_request(0x0a, 1), log);

    let created: ChangeReport = serde_json::from_value(ok(
        &daemon.control,
        &Request::Create {
            config: vif_table("b", 0x0b, "labels = { tenant = \"acme\" }"),
            base: Some(scratch.path().to_owned()),
        },
    ))
    .unwrap();
    assert_eq!(created.added, ["b"]);
    let b_socket = scratch.join("b.sock");
    assert!(b_socket.exists());
    let mut b = guest(&b_socket, log);
    // A broadcast from the new VIF reaches both old ones; theirs reach it.
    let from_b = arp_request(0x0b, 2);
    b.send(0, &Default::default(), &from_b).unwrap();
    for receiver in [&mut a, &mut c] {
        let (_, frame) = receiver.recv_timeout(0, daemon_support::DEADLINE).unwrap();
        assert_eq!(frame, from_b);
    }
    let from_a = arp_request(0x0a, 3);
    a.send(0, &Default::default(), &from_a).unwrap();
    for receiver in [&mut b, &mut c] {
        let (_, frame) = receiver.recv_timeout(0, daemon_support::DEADLINE).unwrap();
        assert_eq!(frame, from_a);
    }
    let listed = list(&daemon.control);
    assert_eq!(ids(&listed), ["a", "b", "c"]);
    let b_entry = &listed[1];
    assert_eq!(
        (b_entry.state.as_str(), b_entry.tenant.as_deref()),
        ("connected", Some("acme"))
    );

    let removed = ok(&daemon.control, &Request::Remove { vif: "b".into() });
    assert_eq!(removed["removed"], serde_json::json!(["b"]));
    assert!(!b_socket.exists(), "removing a VIF removes its socket");
    assert_eq!(ids(&list(&daemon.control)), ["a", "c"]);
    // A and C never noticed.
    exchange(&mut a, &mut c, &arp_request(0x0a, 4), log);
    exchange(&mut c, &mut a, &arp_request(0x0c, 5), log);

    let again = request(&daemon.control, &Request::Remove { vif: "b".into() });
    assert_eq!(again.error.unwrap().code, ErrorCode::NotFound);
    let exists = request(
        &daemon.control,
        &Request::Create {
            config: vif_table("a", 0x0a, ""),
            base: Some(scratch.path().to_owned()),
        },
    );
    assert_eq!(exists.error.unwrap().code, ErrorCode::Exists);
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn apply_adds_changes_removes_and_reports_it() {
    let scratch = Scratch::new();
    let vifs = [
        vif_table("a", 1, ""),
        vif_table("b", 2, ""),
        vif_table("c", 3, ""),
    ]
    .concat();
    let daemon = start_daemon(&scratch, &vifs, &["a", "b", "c"]);
    let desired = [
        vif_table("a", 1, ""),
        vif_table("b", 2, "mtu = 9000"),
        vif_table("d", 4, ""),
    ]
    .concat();

    let dry = apply(&scratch, &desired, true);
    let report: ChangeReport = serde_json::from_value(dry.result.clone().unwrap()).unwrap();
    assert!(report.dry_run);
    assert_eq!(
        ids(&list(&daemon.control)),
        ["a", "b", "c"],
        "a dry run changes nothing"
    );
    assert!(!scratch.join("d.sock").exists());

    let applied = apply(&scratch, &desired, false);
    assert!(applied.ok, "{applied:?}\n{}", scratch.log());
    let applied: ChangeReport = serde_json::from_value(applied.result.unwrap()).unwrap();
    assert_eq!(applied.added, ["d"]);
    assert_eq!(applied.removed, ["c"]);
    assert_eq!(applied.unchanged, ["a"]);
    assert_eq!(applied.changed.len(), 1);
    assert_eq!(applied.changed[0].id, "b");
    assert_eq!(applied.changed[0].fields, ["mtu"]);
    assert_eq!(applied.changed[0].action, "restarted");
    assert_eq!(
        ChangeReport {
            dry_run: true,
            ..applied.clone()
        },
        report,
        "the dry run said the same"
    );

    let listed = list(&daemon.control);
    assert_eq!(ids(&listed), ["a", "b", "d"]);
    assert_eq!(listed[1].mtu, 9000);
    assert!(
        !scratch.join("c.sock").exists(),
        "the orphan's socket is gone"
    );
    assert!(scratch.join("d.sock").exists());
    // The changed VIF serves its new device.
    let b = guest(&scratch.join("b.sock"), || scratch.log());
    assert_eq!(b.net_config().and_then(|c| c.mtu), Some(9000));

    // Applying the same state again changes nothing.
    let again = apply(&scratch, &desired, false);
    let again: ChangeReport = serde_json::from_value(again.result.unwrap()).unwrap();
    assert!(again.is_empty());
    assert_eq!(again.unchanged, ["a", "b", "d"]);
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn a_request_that_fails_validation_changes_nothing() {
    let scratch = Scratch::new();
    let vifs = [vif_table("a", 1, ""), vif_table("b", 2, "")].concat();
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let before = identities(&list(&daemon.control));

    // Each would remove b and add c if it were valid.
    let bad_mtu = [vif_table("a", 1, ""), vif_table("c", 3, "mtu = 20")].concat();
    let duplicate = [vif_table("a", 1, ""), vif_table("a", 3, "")].concat();
    let unknown_key = [vif_table("a", 1, ""), vif_table("c", 3, "mtux = 1500")].concat();
    for text in [&bad_mtu, &duplicate, &unknown_key] {
        let response = apply(&scratch, text, false);
        let error = response.error.expect("refused");
        assert_eq!(error.code, ErrorCode::InvalidConfig, "{}", error.message);
    }
    // Valid text whose new socket cannot be bound (a regular file is in the way): refused at
    // the first step, before b is removed.
    std::fs::write(scratch.join("c.sock"), b"not a socket").unwrap();
    let blocked = apply(
        &scratch,
        &[vif_table("a", 1, ""), vif_table("c", 3, "")].concat(),
        false,
    );
    let error = blocked.error.expect("refused");
    assert_eq!(error.code, ErrorCode::InvalidConfig, "{}", error.message);
    assert!(
        error.message.contains("nothing changed"),
        "{}",
        error.message
    );

    let bad_json = request(&daemon.control, &Request::Show { vif: "zz".into() });
    assert_eq!(bad_json.error.unwrap().code, ErrorCode::NotFound);
    assert_eq!(identities(&list(&daemon.control)), before);
    assert!(scratch.join("a.sock").exists() && scratch.join("b.sock").exists());
    assert_eq!(
        std::fs::read(scratch.join("c.sock")).unwrap(),
        b"not a socket"
    );
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn the_control_socket_is_owner_only_and_removed_at_exit() {
    let scratch = Scratch::new();
    let daemon = start_daemon(&scratch, &vif_table("a", 1, ""), &["a"]);
    let mode = std::fs::metadata(&daemon.control)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let control = daemon.control.clone();
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
    assert!(!control.exists());
}
