//! Connection lifecycles of the real daemon: a server-mode VIF outlives its frontends, and a
//! client-mode VIF reattaches to a VMM that kept running while the daemon was killed and
//! restarted.

mod daemon_support;

use std::os::unix::net::UnixListener;

use vhost::VhostBackend;

use daemon_support::{accept, connect, frontend, handshake, start, Scratch};

#[test]
fn server_mode_listens_again_after_each_disconnect() {
    let scratch = Scratch::new();
    let socket = scratch.join("vif0.sock");
    let daemon = start(&scratch, scratch.daemon(), &[&socket]);

    let mut features = Vec::new();
    for round in 0..3 {
        let frontend = connect(&socket);
        let offered = handshake(&frontend)
            .unwrap_or_else(|e| panic!("round {round}: {e}\n{}", scratch.log()));
        features.push(offered);
        // A VM that goes away: the daemon sees EOF and must listen again.
        drop(frontend);
    }
    // The same device each time: a reconnecting VMM must find the same feature bits
    // (DPDK and VPP reconnect bugs came from sets that changed).
    assert!(features.windows(2).all(|w| w[0] == w[1]), "{features:x?}");
    assert!(socket.exists());
    assert!(daemon.stop().unwrap().is_some_and(|s| s.success()));
    let log = scratch.log();
    // Three handshakes, plus the launcher's readiness probe (a connection without messages).
    assert!(
        log.matches("vif vif0: frontend connected").count() >= 3,
        "{log}"
    );
    assert!(
        log.matches("vif vif0: listening again").count() >= 3,
        "{log}"
    );
}

#[test]
fn two_frontends_on_two_vifs_are_independent() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "vif.toml",
        r#"
[[vif]]
id = "a"
mac = "52:54:00:00:00:0a"
socket = "a.sock"
uplink = { type = "local", segment = "lab" }

[[vif]]
id = "b"
mac = "52:54:00:00:00:0b"
socket = "b.sock"
uplink = { type = "local", segment = "lab" }
"#,
    );
    let (a, b) = (scratch.join("a.sock"), scratch.join("b.sock"));
    let daemon = start(&scratch, scratch.daemon().config(&config), &[&a, &b]);
    let frontend_a = connect(&a);
    handshake(&frontend_a).expect("a");
    // A frontend that breaks the protocol (SET_OWNER twice) loses its own connection only.
    assert!(frontend_a.set_owner().is_err() || frontend_a.get_features().is_err());
    let frontend_b = connect(&b);
    handshake(&frontend_b).expect("b is unaffected by a's misbehaving frontend");
    drop((frontend_a, frontend_b));
    assert!(daemon.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn client_mode_reattaches_after_the_daemon_is_killed_and_restarted() {
    let scratch = Scratch::new();
    // The VMM side: QEMU with `-chardev socket,...,server=on,wait=off` listens here.
    let vm_socket = scratch.join("vm.sock");
    let listener = UnixListener::bind(&vm_socket).unwrap();
    let launcher = scratch
        .daemon()
        .arg("--client")
        .arg("--socket")
        .arg(&vm_socket);

    let daemon = launcher.clone().spawn().expect("spawn daemon");
    let first = frontend(accept(&listener));
    let offered = handshake(&first).expect("first attachment");

    // A crash: no cleanup, the VMM keeps its socket and notices the hang-up.
    daemon.kill().unwrap();
    assert!(
        first.get_features().is_err(),
        "the old connection must be gone"
    );

    let restarted = launcher.spawn().expect("respawn daemon");
    let second = frontend(accept(&listener));
    let reoffered = handshake(&second).expect("reattached after restart");
    assert_eq!(
        offered, reoffered,
        "a restarted daemon offers the same device"
    );

    // The VMM restarts too: the daemon reconnects on its own.
    drop(second);
    let third = frontend(accept(&listener));
    handshake(&third).expect("reattached after the VMM dropped the connection");

    assert!(restarted.stop().unwrap().is_some_and(|s| s.success()));
    assert!(
        vm_socket.exists(),
        "the VMM's socket is not the daemon's to remove"
    );
    let log = scratch.log();
    assert!(log.contains("vif vif0: connecting to"), "{log}");
    assert!(log.contains("vif vif0: reconnecting to"), "{log}");
}
