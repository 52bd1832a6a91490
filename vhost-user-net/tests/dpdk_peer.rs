//! DPDK as a real peer: DPDK's own virtio-net driver (`dpdk-testpmd --vdev net_virtio_user0`,
//! written by another project than the backend and than our virtual guest) is the frontend of
//! one VIF, and a `VirtualGuest` is the frontend of a second VIF on the same local segment.
//!
//! - `testpmd_txonly_frames_reach_the_guest`: testpmd generates IPv4/UDP frames addressed to the
//!   guest's MAC; every frame the guest gets has testpmd's headers, field by field.
//! - `guest_frames_come_back_from_testpmd_macswap`: the guest sends frames of many lengths to
//!   testpmd, which swaps the MACs and sends them back; each returns byte for byte.
//!
//! The daemon runs in process (`Daemon::start` on a config text, the code the binary runs) so
//! its counters can be read. The test runs `scripts/dpdk/setup.sh` itself (installs `dpdk-dev`,
//! reserves hugepages; needs root, as CI is). Nothing can hang: every wait has a deadline, and
//! testpmd (under `timeout`, in its own process group) is stopped by a drop guard; its hugepages
//! are memfds released when it exits. The tests take one lock, so only one testpmd busy-polls a
//! core at a time.

#[path = "../../benches/pps/testpmd.rs"]
#[allow(dead_code)] // the bench uses the rest
mod testpmd;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vhost_user_net::config::DaemonConfig;
use vhost_user_net::daemon::Daemon;
use vif_core::checksum;
use vif_core::mac::MacAddr;
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::{GuestConfig, VirtualGuest};
use vmm_sys_util::tempdir::TempDir;

use testpmd::{Launch, Role, Testpmd};

/// testpmd's port; locally administered addresses (IEEE 802, U/L bit set).
const PMD_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0a]);
const GUEST_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x0b]);
/// EAL start, hugepage mapping and the vhost-user handshake; generous for a loaded CI box.
const FIRST_FRAME: Duration = Duration::from_secs(60);
const NEXT_FRAME: Duration = Duration::from_secs(10);
/// testpmd's hard lifetime (`--max-secs`) should the test process die without unwinding.
const TESTPMD_MAX_SECS: u64 = 120;

/// One testpmd at a time: each busy-polls a core.
static DPDK: Mutex<()> = Mutex::new(());

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("vhost-user-net sits in the workspace root")
        .to_path_buf()
}

/// The daemon with two VIFs on segment `dpdk` (`pmd` for testpmd, `guest`), and the virtual
/// guest connected to its VIF with receive buffers posted.
struct Rig {
    // Dropped in this order: guest, daemon (removes its sockets), then the directory.
    guest: VirtualGuest,
    daemon: Daemon,
    dir: TempDir,
    scripts: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Rig {
    fn new() -> Rig {
        let serial = DPDK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let scripts = testpmd::scripts_dir(&workspace());
        if let Err(e) = testpmd::setup(&scripts) {
            panic!("DPDK peer tests need scripts/dpdk/setup.sh to succeed (root, apt): {e}");
        }
        // Under /tmp: socket paths must fit in sun_path.
        let dir = TempDir::new_with_prefix("/tmp/vif-dpdk-peer-").expect("temp dir");
        let config = format!(
            r#"
[[vif]]
id = "pmd"
mac = "{PMD_MAC}"
socket = "pmd.sock"
uplink = {{ type = "local", segment = "dpdk" }}

[[vif]]
id = "guest"
mac = "{GUEST_MAC}"
socket = "guest.sock"
uplink = {{ type = "local", segment = "dpdk" }}
"#
        );
        let config = DaemonConfig::parse(&config, "dpdk_peer.rs", dir.as_path()).expect("config");
        let daemon = Daemon::start(&config).expect("daemon starts");
        let mut guest = VirtualGuest::connect(dir.as_path().join("guest.sock"), guest_config())
            .expect("virtual guest connects");
        guest.fill_rx(0, 2048).expect("post RX buffers");
        Rig {
            guest,
            daemon,
            dir,
            scripts,
            _serial: serial,
        }
    }

    /// testpmd's `net_virtio_user` port on the `pmd` VIF, running `testpmd_args`.
    fn testpmd(&self, name: &str, testpmd_args: &[&str]) -> Testpmd {
        let socket = self.dir.as_path().join("pmd.sock");
        let log = self.dir.as_path().join(format!("testpmd-{name}.log"));
        let prefix = format!("vif-peer-{name}-{}", std::process::id());
        let options = [
            "--mac",
            &PMD_MAC.to_string(),
            "--mbufs",
            "4096",
            "--stats",
            "1",
        ]
        .map(String::from);
        let args: Vec<String> = testpmd_args.iter().map(|s| s.to_string()).collect();
        let launch = Launch {
            role: Role::Frontend,
            prefix: &prefix,
            max_secs: TESTPMD_MAX_SECS,
            options: &options,
            sockets: &[&socket],
            testpmd_args: &args,
            log: &log,
        };
        Testpmd::spawn(&self.scripts, &launch).expect("start testpmd")
    }
}

fn guest_config() -> GuestConfig {
    GuestConfig {
        reply_timeout: Duration::from_secs(10),
        op_timeout: Duration::from_secs(10),
        ..GuestConfig::default()
    }
}

/// Receives the next frame, failing with testpmd's output if none comes within `timeout`.
fn next_frame(guest: &mut VirtualGuest, pmd: &Testpmd, timeout: Duration) -> Vec<u8> {
    match guest.recv_timeout(0, timeout) {
        Ok((_, frame)) => frame,
        Err(e) => panic!(
            "no frame from testpmd within {timeout:?}: {e}\n--- testpmd ---\n{}",
            pmd.log_text()
        ),
    }
}

#[test]
fn testpmd_txonly_frames_reach_the_guest() {
    let mut rig = Rig::new();
    // 128-byte frames, TEST-NET-1 addresses (RFC 5737) and ports of our choosing, so that every
    // checked field is one testpmd was told, not one of its defaults.
    let pmd = rig.testpmd(
        "txonly",
        &[
            "--forward-mode=txonly",
            "--txpkts=128",
            &format!("--eth-peer=0,{GUEST_MAC}"),
            "--tx-ip=192.0.2.1,192.0.2.2",
            "--tx-udp=4000,5000",
        ],
    );
    const FRAMES: usize = 200;
    let mut timeout = FIRST_FRAME;
    for n in 0..FRAMES {
        let frame = next_frame(&mut rig.guest, &pmd, timeout);
        timeout = NEXT_FRAME;
        check_txonly_frame(&frame).unwrap_or_else(|e| panic!("frame {n}: {e}: {frame:02x?}"));
    }
    let (_, log) = pmd.stop().expect("stop testpmd");
    let totals = testpmd::parse_forward_totals(&log);
    let sent = totals.first().map_or(0, |t| t.tx_packets);
    assert!(
        sent >= FRAMES as u64,
        "testpmd reports {sent} frames sent:\n{log}"
    );
    let consumed = rig
        .daemon
        .backend("pmd")
        .expect("pmd VIF")
        .stats()
        .snapshot();
    assert!(consumed.tx.packets >= FRAMES as u64, "{consumed:?}");
    let delivered = rig.daemon.backend("guest").expect("guest VIF").stats();
    assert!(delivered.snapshot().rx.packets >= FRAMES as u64);
}

/// What testpmd 22.11's txonly engine (`app/test-pmd/txonly.c`) builds with the options above:
/// Ethernet II to `--eth-peer` from the port's MAC, IPv4 (IHL 5, TTL 64, no options, header
/// checksum filled in software) from/to `--tx-ip`, UDP from/to `--tx-udp` with checksum 0 or
/// valid; lengths from `--txpkts`.
fn check_txonly_frame(frame: &[u8]) -> Result<(), String> {
    if frame.len() != 128 {
        return Err(format!("length {} != 128", frame.len()));
    }
    let field = |range: std::ops::Range<usize>| &frame[range];
    let be16 = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);
    if field(0..6) != GUEST_MAC.as_bytes() || field(6..12) != PMD_MAC.as_bytes() {
        return Err("MACs".into());
    }
    if be16(12) != 0x0800 {
        return Err(format!("EtherType {:#06x}", be16(12)));
    }
    let ip = field(14..34);
    if ip[0] != 0x45 {
        return Err(format!("version/IHL {:#04x}", ip[0]));
    }
    if be16(16) != 128 - 14 {
        return Err(format!("IPv4 total length {}", be16(16)));
    }
    if ip[9] != 17 {
        return Err(format!("protocol {}", ip[9]));
    }
    if ip[12..16] != [192, 0, 2, 1] || ip[16..20] != [192, 0, 2, 2] {
        return Err("IPv4 addresses".into());
    }
    // RFC 1071: a header with a correct checksum sums to all ones.
    if checksum::data(ip) != 0xffff {
        return Err("IPv4 header checksum".into());
    }
    if (be16(34), be16(36), be16(38)) != (4000, 5000, 128 - 34) {
        return Err(format!(
            "UDP ports/length {} {} {}",
            be16(34),
            be16(36),
            be16(38)
        ));
    }
    let udp_checksum = be16(40);
    if udp_checksum != 0 {
        let src = std::net::Ipv4Addr::new(192, 0, 2, 1);
        let dst = std::net::Ipv4Addr::new(192, 0, 2, 2);
        let pseudo = checksum::pseudo_header_v4(&src, &dst, 17, 128 - 34);
        if checksum::combine(&[pseudo, checksum::data(&frame[34..])]) != 0xffff {
            return Err("UDP checksum".into());
        }
    }
    Ok(())
}

/// A frame from the guest to testpmd: EtherType 0x88b5 (IEEE 802 local experimental), then a
/// tag (`probe` or data), the sequence number and a counting payload.
fn guest_frame(seq: u16, len: usize, probe: bool) -> Vec<u8> {
    let mut frame: Vec<u8> = (0..len)
        .map(|i| (i * 13 + usize::from(seq)) as u8)
        .collect();
    frame[0..6].copy_from_slice(PMD_MAC.as_bytes());
    frame[6..12].copy_from_slice(GUEST_MAC.as_bytes());
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    frame[14] = u8::from(probe);
    frame[15..17].copy_from_slice(&seq.to_be_bytes());
    frame
}

fn is_probe(frame: &[u8]) -> bool {
    frame.get(14) == Some(&1)
}

#[test]
fn guest_frames_come_back_from_testpmd_macswap() {
    let mut rig = Rig::new();
    let pmd = rig.testpmd("macswap", &["--forward-mode=macswap"]);
    let hdr = VirtioNetHdr::default();

    // Until testpmd's port is up, frames to it are dropped: probe until one comes back.
    let deadline = Instant::now() + FIRST_FRAME;
    let mut seq = 0u16;
    loop {
        assert!(
            Instant::now() < deadline,
            "no probe came back within {FIRST_FRAME:?}\n--- testpmd ---\n{}",
            pmd.log_text()
        );
        rig.guest
            .send(0, &hdr, &guest_frame(seq, 60, true))
            .expect("send probe");
        seq = seq.wrapping_add(1);
        if let Ok((_, echo)) = rig.guest.recv_timeout(0, Duration::from_millis(200)) {
            if is_probe(&echo) {
                break;
            }
        }
    }

    // Minimum to maximum Ethernet frame (without FCS) for MTU 1500, and lengths in between.
    let lengths: Vec<usize> = (0..64).map(|i| 60 + (i * 1454) / 63).collect();
    assert_eq!(lengths.last(), Some(&1514));
    let sent: Vec<Vec<u8>> = lengths
        .iter()
        .enumerate()
        .map(|(i, &len)| guest_frame(i as u16, len, false))
        .collect();
    for frame in &sent {
        rig.guest.send(0, &hdr, frame).expect("send");
    }
    let mut received = Vec::with_capacity(sent.len());
    while received.len() < sent.len() {
        let frame = next_frame(&mut rig.guest, &pmd, NEXT_FRAME);
        // Late echoes of probes may still arrive.
        if !is_probe(&frame) {
            received.push(frame);
        }
    }
    for (n, (echo, frame)) in received.iter().zip(&sent).enumerate() {
        let mut expected = frame.clone();
        expected[0..6].copy_from_slice(GUEST_MAC.as_bytes());
        expected[6..12].copy_from_slice(PMD_MAC.as_bytes());
        assert_eq!(echo, &expected, "frame {n} ({} bytes)", frame.len());
    }
    drop(pmd);
    let pmd_vif = rig
        .daemon
        .backend("pmd")
        .expect("pmd VIF")
        .stats()
        .snapshot();
    assert!(pmd_vif.rx.packets >= sent.len() as u64, "{pmd_vif:?}");
    assert!(pmd_vif.tx.packets >= sent.len() as u64, "{pmd_vif:?}");
}

/// The report parsers of `testpmd.rs` (here, where `cargo test` runs them).
mod parsers {
    use super::testpmd::*;

    /// Cut from a testpmd 22.11.11 (Debian 12 `dpdk-dev`) txonly run on a net_virtio_user port,
    /// stats period 1 s, stopped with SIGINT.
    const LOG: &str = "\
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0
  TX-packets: 21321600   TX-errors: 0          TX-bytes:  1364582400

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:      1606027          Tx-bps:    822278192
  ############################################################################
Telling cores to stop...
Waiting for lcores to finish...

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 21321600       TX-dropped: 172388608     TX-total: 193710208
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 0              RX-dropped: 0             RX-total: 0
  TX-packets: 21321600       TX-dropped: 172388608     TX-total: 193710208
  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++
";

    #[test]
    fn rates_of_each_report_and_port() {
        assert_eq!(
            parse_rates(LOG),
            vec![PortRates {
                port: 0,
                rx_pps: 0,
                tx_pps: 1_606_027
            }]
        );
    }

    #[test]
    fn forward_totals_skip_the_accumulated_block() {
        assert_eq!(
            parse_forward_totals(LOG),
            vec![ForwardTotals {
                port: 0,
                rx_packets: 0,
                tx_packets: 21_321_600,
                tx_dropped: 172_388_608,
            }]
        );
    }

    #[test]
    fn garbage_parses_to_nothing() {
        assert!(parse_rates("Tx-pps: x\nNIC statistics for port q\nRx-pps:").is_empty());
        assert!(parse_forward_totals("Forward statistics for port\nTX-packets:").is_empty());
    }

    #[test]
    fn median_takes_the_lower_middle() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
