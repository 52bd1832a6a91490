//! The daemon binary from the outside: help, the no-argument start, refused configs, a socket
//! already in use, and clean shutdown on SIGTERM.

mod daemon_support;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;

use daemon_support::{connect, handshake, run_to_exit, start, Scratch};

#[test]
fn help_shows_options_and_examples() {
    let scratch = Scratch::new();
    let status = run_to_exit(&scratch, scratch.daemon().arg("--help"));
    assert!(status.success(), "{status}");
    let help = scratch.log();
    for needle in [
        "--config",
        "--socket",
        "--mac",
        "--mtu",
        "--queue-pairs",
        "--client",
        "--segment",
        "--log-level",
        "Examples:",
        "SIGTERM",
    ] {
        assert!(help.contains(needle), "help lacks {needle}:\n{help}");
    }
}

#[test]
fn no_arguments_serves_vif0_and_prints_vmm_arguments() {
    let scratch = Scratch::new();
    // The documented default: $XDG_RUNTIME_DIR/vif/vif0.sock, the directory created on demand.
    let socket = scratch.join("vif/vif0.sock");
    let launcher = scratch
        .daemon()
        .env_remove("VIF_RUNTIME_DIR")
        .env("XDG_RUNTIME_DIR", scratch.path());
    let daemon = start(&scratch, launcher, &[&socket]);

    let frontend = connect(&socket);
    handshake(&frontend).expect("vhost-user handshake with the default VIF");
    drop(frontend);

    let status = daemon.stop().unwrap().expect("daemon was running");
    assert!(status.success(), "{status}\n{}", scratch.log());
    let out = scratch.log();
    let path = socket.display().to_string();
    for needle in [
        format!("vif vif0: listening on {path}"),
        "mac 52:54:00:76:69:00, mtu 1500".to_owned(),
        "memory-backend-memfd,id=mem,size=1024M,share=on".to_owned(),
        "-numa node,memdev=mem".to_owned(),
        format!("-chardev socket,id=chr-vif0,path={path}"),
        "-netdev vhost-user,id=net-vif0,chardev=chr-vif0".to_owned(),
        "-device virtio-net-pci,netdev=net-vif0,mac=52:54:00:76:69:00".to_owned(),
        "vectors=0".to_owned(),
        "--memory size=1024M,shared=on".to_owned(),
        format!(
            "--net vhost_user=true,socket={path},num_queues=2,queue_size=256,vhost_mode=client"
        ),
    ] {
        assert!(out.contains(&needle), "output lacks {needle:?}:\n{out}");
    }
    assert!(!socket.exists(), "SIGTERM must remove the socket");
}

#[test]
fn bad_config_names_the_file_vif_and_field() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "vif.toml",
        r#"
[[vif]]
id = "web-1"
mac = "52:54:00:00:00:01"
mtu = 20
uplink = { type = "local", segment = "lab" }
"#,
    );
    let status = run_to_exit(&scratch, scratch.daemon().config(&config));
    assert!(!status.success());
    let out = scratch.log();
    let expected = format!(
        "config {}: vif web-1: mtu 20 is below the minimum 68",
        config.display()
    );
    assert!(out.contains(&expected), "{out}");
    assert!(
        !scratch.join("web-1.sock").exists(),
        "nothing is served from a refused config"
    );
}

#[test]
fn misspelt_key_is_refused_with_its_line() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "vif.toml",
        "[[vif]]\nid = \"web-1\"\nmac = \"52:54:00:00:00:01\"\nmtuu = 1500\n\
         uplink = { type = \"local\", segment = \"lab\" }\n",
    );
    let status = run_to_exit(&scratch, scratch.daemon().config(&config));
    assert!(!status.success());
    let out = scratch.log();
    assert!(out.contains("vif[0] (web-1)"), "{out}");
    assert!(out.contains("line 4") && out.contains("mtuu"), "{out}");
}

#[test]
fn socket_in_use_is_a_clear_error() {
    let scratch = Scratch::new();
    let socket = scratch.join("shared.sock");
    let first = start(
        &scratch,
        scratch.daemon().arg("--socket").arg(&socket),
        &[&socket],
    );

    let status = run_to_exit(
        &scratch,
        scratch
            .daemon()
            .arg("--socket")
            .arg(&socket)
            .arg("--id")
            .arg("second"),
    );
    assert!(!status.success());
    let out = scratch.log();
    assert!(
        out.contains(&format!("socket {socket:?} is in use")),
        "{out}"
    );

    // The refused daemon must not have taken the socket away from the first one.
    let frontend = connect(&socket);
    handshake(&frontend).expect("the first daemon still serves");
    drop(frontend);
    assert!(first.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn sigterm_removes_every_socket_and_a_stale_one_is_reused() {
    let scratch = Scratch::new();
    let a = scratch.join("a.sock");
    let b = scratch.join("b.sock");
    // What a SIGKILLed daemon leaves behind: a socket file nobody listens on.
    drop(UnixListener::bind(&a).unwrap());
    let config = scratch.write(
        "vif.toml",
        &format!(
            r#"
[[vif]]
id = "a"
mac = "52:54:00:00:00:0a"
socket = "{}"
uplink = {{ type = "local", segment = "lab" }}

[[vif]]
id = "b"
mac = "52:54:00:00:00:0b"
socket = "b.sock"
uplink = {{ type = "local", segment = "lab" }}

[[vif]]
id = "c"
mac = "52:54:00:00:00:0c"
socket = "vm-c.sock"
mode = "client"
uplink = {{ type = "local", segment = "lab" }}
"#,
            a.display()
        ),
    );
    let daemon = start(&scratch, scratch.daemon().config(&config), &[&a, &b]);
    for socket in [&a, &b] {
        let frontend = connect(socket);
        handshake(&frontend).expect("handshake");
    }
    let status = daemon.stop().unwrap().expect("daemon was running");
    assert!(status.success(), "{status}\n{}", scratch.log());
    assert!(!a.exists() && !b.exists(), "{}", scratch.log());
    // A client-mode VIF's socket belongs to the VMM: never created, never removed.
    assert!(!scratch.join("vm-c.sock").exists());
}

#[test]
fn a_regular_file_at_the_socket_path_is_left_alone() {
    let scratch = Scratch::new();
    let path = scratch.write("not-a-socket", "precious");
    let status = run_to_exit(&scratch, scratch.daemon().arg("--socket").arg(&path));
    assert!(!status.success());
    assert!(
        scratch.log().contains("is not a socket"),
        "{}",
        scratch.log()
    );
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(!meta.file_type().is_socket());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
}
