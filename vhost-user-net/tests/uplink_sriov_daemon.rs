//! The daemon with an SR-IOV VIF on a host without SR-IOV: it must refuse to start and say
//! plainly why, naming the file it looked for. (The allocation itself is tested against a sysfs
//! tree in `uplink_sriov.rs`; this host has no VF for the daemon's real rtnetlink to set.)

use vhost_user_net::config::{DaemonConfig, RUNTIME_DIR_ENV};
use vhost_user_net::daemon::Daemon;

#[test]
fn daemon_refuses_an_sriov_vif_on_an_interface_without_sriov() {
    let dir = std::env::temp_dir().join(format!("vif-sriov-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The SR-IOV state file and its lock go to the runtime directory: this test's own. The
    // only test in this file (its own process), so setting the variable races with nothing.
    std::env::set_var(RUNTIME_DIR_ENV, &dir);
    let config = r#"
[[vif]]
id = "db-1"
mac = "52:54:00:00:00:0a"
uplink = { type = "sriov-vf", pf = "lo" }
"#;
    let config = DaemonConfig::parse(config, "uplink_sriov_daemon.rs", &dir).unwrap();
    let error = Daemon::start(&config).err().expect("no SR-IOV on lo");
    assert_eq!(
        error.to_string(),
        "vif db-1: interface lo has no SR-IOV capability \
         (no /sys/class/net/lo/device/sriov_totalvfs)"
    );
    assert!(
        !dir.join("db-1.sock").exists(),
        "an SR-IOV VIF has no vhost-user socket"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
