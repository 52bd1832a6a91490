//! vif's SR-IOV rtnetlink requests against the bytes iproute2 sends for the same settings.
//!
//! The references are strace hex dumps captured once with iproute2 6.1 (the exact commands are
//! in `tests/data/sriov/README.md`). Only `nlmsg_seq` and `nlmsg_pid` (bytes 8..16) may differ:
//! iproute2 numbers its requests from the time of day, vif from its own counter.
//!
//! The last test sends a request to the running kernel's `lo`, which has no VFs, to show the
//! socket path end to end: the kernel must answer with an error (never an ack), and reading VF
//! info of an interface without VFs must give an empty list.

use std::path::PathBuf;

use vhost_user_net::uplink::sriov::netlink::{
    get_vfs_request, parse_vf_reports, set_vf_request, NetlinkError, RtNetlink, VfConfig, VfRate,
    VfVlan, RTM_GETLINK, RTM_NEWLINK,
};
use vif_core::mac::MacAddr;

/// `ifi_index` of `v0` in the capturing namespace.
const CAPTURED_IFINDEX: i32 = 3;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/sriov")
        .join(name)
}

/// The buffers of an `strace -e write=all` dump, in order: each ` * N bytes in buffer` starts
/// one, and each ` | OFFSET  xx xx …  ascii |` line adds its hex columns (fixed width: the
/// offset, two blanks, then 16 bytes as `xx ` with one extra blank after the eighth).
fn strace_buffers(name: &str) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(data(name)).unwrap();
    let mut buffers: Vec<Vec<u8>> = Vec::new();
    for line in text.lines() {
        if line.starts_with(" * ") && line.contains("bytes in buffer") {
            buffers.push(Vec::new());
        } else if let Some(dump) = line.strip_prefix(" | ") {
            let hex = dump.get(7..57).unwrap();
            let buffer = buffers.last_mut().unwrap();
            buffer.extend(
                hex.split_whitespace()
                    .map(|byte| u8::from_str_radix(byte, 16).unwrap()),
            );
        }
    }
    // Each dump says its length; check the parse against it.
    let lengths: Vec<usize> = text
        .lines()
        .filter_map(|l| l.strip_prefix(" * "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(
        buffers.iter().map(Vec::len).collect::<Vec<_>>(),
        lengths,
        "{name}: hex dump parse"
    );
    buffers
}

/// The `n`th message of type `msg_type` that iproute2 sent.
fn captured(name: &str, msg_type: u16, n: usize) -> Vec<u8> {
    strace_buffers(name)
        .into_iter()
        .filter(|b| b.get(4..6) == Some(&msg_type.to_ne_bytes()[..]))
        .nth(n)
        .unwrap_or_else(|| panic!("{name}: no message {n} of type {msg_type}"))
}

/// Asserts equality except for `nlmsg_seq` and `nlmsg_pid`.
fn assert_same_request(ours: &[u8], theirs: &[u8]) {
    assert_eq!(ours.len(), theirs.len(), "length");
    let mask = |b: &[u8]| {
        let mut b = b.to_vec();
        b[8..16].fill(0);
        b
    };
    assert_eq!(mask(ours), mask(theirs));
}

const GUEST_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

fn configure() -> VfConfig {
    VfConfig {
        vf: 3,
        mac: GUEST_MAC,
        vlan: Some(VfVlan { vid: 100, qos: 5 }),
        spoofchk: true,
        trust: Some(true),
        rate: Some(VfRate {
            min_mbps: 0,
            max_mbps: 1000,
        }),
    }
}

#[test]
fn configure_matches_iproute2() {
    let ours = set_vf_request(CAPTURED_IFINDEX, &configure()).unwrap();
    let theirs = captured("ip-link-set-vf-configure.strace", RTM_NEWLINK, 0);
    assert_eq!(theirs.len(), 136);
    assert_same_request(&ours, &theirs);
}

#[test]
fn release_matches_iproute2() {
    let ours = set_vf_request(CAPTURED_IFINDEX, &VfConfig::cleared(&configure())).unwrap();
    let theirs = captured("ip-link-set-vf-release.strace", RTM_NEWLINK, 0);
    assert_same_request(&ours, &theirs);
}

#[test]
fn minimal_matches_iproute2() {
    let minimal = VfConfig {
        vf: 3,
        mac: GUEST_MAC,
        vlan: None,
        spoofchk: false,
        trust: None,
        rate: None,
    };
    let ours = set_vf_request(CAPTURED_IFINDEX, &minimal).unwrap();
    let theirs = captured("ip-link-set-vf-minimal.strace", RTM_NEWLINK, 0);
    assert_same_request(&ours, &theirs);
}

#[test]
fn vf_info_request_matches_ip_s_link_show() {
    let ours = get_vfs_request("v0").unwrap();
    // The first RTM_GETLINK resolves the name (RTEXT_FILTER_SKIP_STATS); the second is the
    // one that asks for VF info with statistics.
    let theirs = captured("ip-s-link-show.strace", RTM_GETLINK, 1);
    assert_same_request(&ours, &theirs);
}

#[test]
fn kernel_refuses_vf_settings_on_lo_and_reports_no_vfs() {
    let mut rtnl = RtNetlink::open().unwrap();
    // lo has no ndo_set_vf_*: the request must come back as an error, not an ack.
    let lo = 1;
    match rtnl.set_vf(lo, &configure()) {
        Err(NetlinkError::Kernel { source, .. }) => {
            assert!(source.raw_os_error().is_some(), "{source}")
        }
        other => panic!("expected a kernel error, got {other:?}"),
    }
    assert_eq!(rtnl.vf_reports("lo").unwrap(), vec![]);
    // The reply parser agrees with itself on a reply without VFs.
    assert!(parse_vf_reports(&[0; 32]).is_err());
}
