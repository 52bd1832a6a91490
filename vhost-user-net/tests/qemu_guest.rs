//! The real-guest test: two Linux guests under QEMU, each with one virtio-net NIC served by the
//! daemon binary over vhost-user, on one local segment, ping each other.
//!
//! Everything else in this crate's tests drives the daemon with `VirtualGuest`, a frontend we
//! wrote; this test puts the real thing on both sides: QEMU's vhost-user frontend (Debian 12,
//! QEMU 7.2, TCG) and Linux's `virtio_net` driver (Debian 12's 6.1 kernel). Guest A (10.0.0.1)
//! must resolve guest B (10.0.0.2) by ARP, then get every echo reply for 3 pings of 56, 1400 and
//! 1472 bytes of ICMP payload; 1472 makes a 1500-byte IP packet, a full 1514-byte frame at
//! MTU 1500. The only path between the two NICs is the daemon's switch, so A's PASS marker and
//! B's MAC in A's neighbour table prove that the daemon floods a broadcast, learns both MACs and
//! forwards unicast frames both ways through the RX and TX rings of a real driver.
//!
//! Both socket modes are covered: the daemon listens for A (`mode = "server"`) and connects to
//! B's QEMU (`mode = "client"`, QEMU `server=on`).
//!
//! The guests come from `scripts/guest/build-guest.sh` (run first: it installs QEMU, the kernel
//! and busybox when missing and is instant when its output is up to date) and boot through
//! `scripts/guest/boot.sh`, so the QEMU command line lives in one place. `$VIF_GUEST_DIR` picks
//! the guest image directory (default: `<target>/tmp/vif-guest`), `$VIF_DAEMON_BIN` another
//! daemon build.
//!
//! Every process runs in its own process group and a guard kills the group on drop
//! (`qemu_support`), so a failed assertion or a hung guest leaves no QEMU behind; the scratch
//! directory (sockets, config, logs) goes with `Scratch`. Deadlines only stop a hung test;
//! nothing asserts on timing.

mod daemon_support;
mod qemu_support;

use daemon_support::{start, Scratch, DEADLINE};
use qemu_support::{guest_image, tail, Guest, BOOT_DEADLINE};
use vmm_integration::launcher::{Launcher, Output, DAEMON_BINARY_ENV};

const MAC_A: &str = "52:54:00:00:0a:01";
const MAC_B: &str = "52:54:00:00:0a:02";

#[test]
fn two_linux_guests_ping_across_one_local_segment() {
    let scratch = Scratch::new();
    let image = guest_image(scratch.path());
    let socket_a = scratch.join("a.sock");
    let socket_b = scratch.join("b.vm.sock");
    let config = scratch.write(
        "vif.toml",
        &format!(
            r#"
[[vif]]
id = "guest-a"
mac = "{MAC_A}"
socket = "{a}"
uplink = {{ type = "local", segment = "lab" }}

[[vif]]
id = "guest-b"
mac = "{MAC_B}"
socket = "{b}"
mode = "client"
uplink = {{ type = "local", segment = "lab" }}
"#,
            a = socket_a.display(),
            b = socket_b.display(),
        ),
    );

    // B first: its QEMU listens, and the daemon (client mode for B) retries until it does.
    // vif.serve bounds B's life even if this test is killed before its guard runs.
    let guest_b = Guest::boot(
        scratch.path(),
        &image,
        "b",
        &socket_b,
        MAC_B,
        true,
        &["vif.ip=10.0.0.2/24", "vif.serve=110"],
    );
    let launcher = match std::env::var_os(DAEMON_BINARY_ENV) {
        Some(binary) => Launcher::new(binary)
            .env("VIF_RUNTIME_DIR", scratch.path())
            .env("RUST_LOG", "debug")
            .output(Output::File(scratch.log_path()))
            .stop_grace(DEADLINE),
        None => scratch.daemon(),
    };
    let daemon = start(&scratch, launcher.config(&config), &[&socket_a]);
    // A waits for B to answer (both boot at once), then pings with three payload sizes.
    let guest_a = Guest::boot(
        scratch.path(),
        &image,
        "a",
        &socket_a,
        MAC_A,
        false,
        &[
            "vif.ip=10.0.0.1/24",
            "vif.ping=10.0.0.2",
            "vif.peerwait=60",
            "vif.count=3",
            "vif.sizes=56,1400,1472",
        ],
    );

    let status = guest_a.group.wait(BOOT_DEADLINE);
    let report = || {
        format!(
            "{}\n{}\n--- daemon (tail) ---\n{}",
            guest_a.report(),
            guest_b.report(),
            tail(&scratch.log_path(), 30)
        )
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "guest A: boot.sh exit {:?} (0 PASS, 1 FAIL, 3 no marker, 124 timeout; None: hung)\n{}",
        status.map(|s| s.code()),
        report()
    );
    let console_a = guest_a.console();
    assert!(
        console_a.contains("VIF-GUEST-RESULT: PASS ping56=3/3 ping1400=3/3 ping1472=3/3"),
        "guest A's marker\n{}",
        report()
    );
    // ARP went out as a broadcast and B's reply came back with B's own MAC.
    assert!(
        console_a.contains(&format!("10.0.0.2 lladdr {MAC_B}")),
        "guest A's neighbour table lacks B\n{}",
        report()
    );
    assert!(
        guest_b.console().contains("VIF-GUEST-READY"),
        "guest B never served\n{}",
        report()
    );
    drop(guest_b);

    let stopped = daemon.stop();
    let log = scratch.log();
    assert!(
        matches!(&stopped, Ok(Some(s)) if s.success()),
        "daemon stop: {stopped:?}\n{log}"
    );
    for needle in [
        "vif guest-a: frontend connected",
        "vif guest-b: frontend connected",
    ] {
        assert!(log.contains(needle), "daemon log lacks {needle:?}\n{log}");
    }
    assert!(
        !log.contains("connection failed"),
        "the daemon dropped a connection\n{log}"
    );
    assert!(!socket_a.exists(), "the daemon must remove its socket");
}
