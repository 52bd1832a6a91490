//! The daemon's scrape carries its uplinks' counters: a daemon in this process serves a VXLAN
//! VIF whose VTEP is on 127.0.0.1, a UDP socket on 127.0.0.2 plays the remote VTEP, and the
//! `vif_uplink_*` series of the VNI and of the VTEP follow what it sends. (The series' families
//! and labels are unit-tested in `metrics/uplink.rs`; the SR-IOV VFs' in
//! `uplink_sriov_control.rs`.)
//!
//! The only test in this file (its own process): it sets the runtime directory in the
//! environment.

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use vhost_user_net::config::{DaemonConfig, RUNTIME_DIR_ENV};
use vhost_user_net::daemon::Daemon;

const WAIT: Duration = Duration::from_secs(5);

/// A temporary directory, removed on drop.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(dir: &std::path::Path, udp_port: u16) -> String {
    format!(
        r#"
[control]
enabled = false
[metrics]
enabled = false
[[vif]]
id = "vx-1"
mac = "02:00:00:00:00:01"
mtu = 1450
socket = "{}"
uplink = {{ type = "vxlan", vni = 42, local = "127.0.0.1", remotes = ["127.0.0.2"], udp_port = {udp_port} }}
"#,
        dir.join("vx-1.sock").display()
    )
}

/// The daemon, on the first UDP port that both it (127.0.0.1) and the peer (127.0.0.2) bind.
fn start(dir: &std::path::Path) -> (Daemon, UdpSocket, u16) {
    for offset in 0..64u16 {
        let udp_port = 42000 + (std::process::id() as u16 % 8000) + offset * 7;
        let Ok(peer) = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 2), udp_port)) else {
            continue;
        };
        let config = DaemonConfig::parse(&config(dir, udp_port), "test", dir).unwrap();
        if let Ok(daemon) = Daemon::start(&config) {
            return (daemon, peer, udp_port);
        }
    }
    panic!("no free UDP port on loopback");
}

/// The value of the series `name{labels}` in `text`, where `labels` is the exact label text.
fn sample(text: &str, name: &str, labels: &str) -> Option<u64> {
    let series = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map(|value| value.parse().unwrap())
}

fn scrape_until(daemon: &Daemon, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = daemon.scrape();
        if done(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::yield_now();
    }
}

#[test]
fn scrape_counts_what_the_vxlan_uplink_received_and_refused() {
    let dir =
        Scratch(std::env::temp_dir().join(format!("vif-uplink-metrics-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    std::env::set_var(RUNTIME_DIR_ENV, &dir.0);
    let (daemon, peer, udp_port) = start(&dir.0);
    let vtep = format!("127.0.0.1:{udp_port}");
    let vni = format!(r#"uplink="vxlan",vtep="{vtep}",vni="42",parent="",vid="""#);
    let text = daemon.scrape();
    assert_eq!(
        sample(&text, "vif_uplink_rx_packets_total", &vni),
        Some(0),
        "{text}"
    );

    // RFC 7348 § 5: flags with I set, VNI 42, then a broadcast inner frame (60 bytes).
    let mut datagram = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    let mut inner = vec![0u8; 60];
    inner[..6].copy_from_slice(&[0xff; 6]);
    inner[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    inner[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    datagram.extend_from_slice(&inner);
    peer.send_to(&datagram, ("127.0.0.1", udp_port)).unwrap();
    // Too short for a VXLAN header: the VTEP drops it before any VNI.
    peer.send_to(&[0x08, 0, 0], ("127.0.0.1", udp_port))
        .unwrap();

    let vtep_only =
        format!(r#"uplink="vxlan",vtep="{vtep}",vni="",parent="",vid="",reason="malformed""#);
    let text = scrape_until(&daemon, |text| {
        sample(text, "vif_uplink_rx_packets_total", &vni) == Some(1)
            && sample(text, "vif_uplink_rx_drops_total", &vtep_only) == Some(1)
    });
    assert_eq!(
        sample(&text, "vif_uplink_rx_packets_total", &vni),
        Some(1),
        "{text}"
    );
    assert_eq!(sample(&text, "vif_uplink_rx_bytes_total", &vni), Some(60));
    assert_eq!(
        sample(&text, "vif_uplink_rx_drops_total", &vtep_only),
        Some(1)
    );
    assert_eq!(sample(&text, "vif_uplink_tx_packets_total", &vni), Some(0));
    // The VIF's own series are still there, before the uplinks'.
    let vif_info = text.find("# HELP vif_info ").unwrap();
    assert!(vif_info < text.find("# HELP vif_uplink_tx_packets_total ").unwrap());
    daemon.shutdown();
}
