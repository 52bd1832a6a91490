//! Flow logs of the real daemon: guests send known flows, the daemon stops cleanly, and the
//! file holds one JSON record per flow and verdict with the right counts.

mod control_support;
mod daemon_support;

use control_support::{arp_request, exchange, guest, sample, scrape, start_daemon, vif_table};
use daemon_support::Scratch;

/// A UDP/IPv4 frame from B (192.0.2.11:5000) to A (192.0.2.10:53) with 4 bytes of payload:
/// Ethernet II, IPv4 without options (header checksum filled in), UDP without checksum (0 is
/// allowed over IPv4, RFC 768). 46 bytes, padded to the 60-byte Ethernet minimum.
fn udp_b_to_a() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[
        0x52, 0x54, 0, 0, 0, 0x0a, 0x52, 0x54, 0, 0, 0, 0x0b, 0x08, 0x00,
    ]);
    let mut ip = [
        0x45, 0, 0, 32, 0, 1, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 11, 192, 0, 2, 10,
    ];
    let sum = ip
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 12, 0, 0, 1, 2, 3, 4]);
    f.resize(60, 0);
    f
}

#[test]
fn flows_are_logged_with_counts_and_verdicts() {
    let scratch = Scratch::new();
    let flow_log = scratch.join("flows.jsonl");
    let vifs = format!(
        "[flow_log]\nenabled = true\npath = \"{}\"\nsample_rate = 1\n\n{}{}",
        flow_log.display(),
        vif_table("a", 0x0a, ""),
        vif_table("b", 0x0b, "")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);
    // Three copies of one broadcast flow from A (flooded); A's MAC is learned on the way.
    let arp = arp_request(0x0a, 11);
    for _ in 0..3 {
        exchange(&mut a, &mut b, &arp, log);
    }
    // Two frames of one unicast flow from B to A's learned MAC (forwarded).
    let udp = udp_b_to_a();
    for _ in 0..2 {
        exchange(&mut b, &mut a, &udp, log);
    }
    let text = scrape(daemon.metrics);
    assert!(
        sample(&text, "vif_flowlog_records_total", &[]).is_some(),
        "{text}"
    );
    // A clean stop drains every cache into the file.
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));

    let written = std::fs::read_to_string(&flow_log).expect("flow log written");
    let records: Vec<serde_json::Value> = written
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(records.len(), 2, "{written}");
    let from = |vif: &str| {
        records
            .iter()
            .find(|r| r["vif"] == vif)
            .unwrap_or_else(|| panic!("no record of {vif}: {written}"))
    };
    let arp_record = from("a");
    assert_eq!(arp_record["verdict"], "flooded");
    assert_eq!(arp_record["packets"], 3);
    assert_eq!(arp_record["bytes"], 180);
    assert_eq!(arp_record["ethertype"], "0x0806");
    assert_eq!(arp_record["dst_mac"], "ff:ff:ff:ff:ff:ff");
    assert_eq!(arp_record["src"], "192.0.2.10");
    let udp_record = from("b");
    assert_eq!(udp_record["verdict"], "forwarded");
    assert_eq!(udp_record["reason"], serde_json::Value::Null);
    assert_eq!(udp_record["packets"], 2);
    assert_eq!(udp_record["bytes"], 120);
    assert_eq!(
        (
            udp_record["proto"].as_u64(),
            udp_record["src_port"].as_u64(),
            udp_record["dst_port"].as_u64()
        ),
        (Some(17), Some(5000), Some(53))
    );
    assert_eq!(
        (udp_record["src"].as_str(), udp_record["dst"].as_str()),
        (Some("192.0.2.11"), Some("192.0.2.10"))
    );
    assert_eq!(udp_record["end"], "shutdown");
    assert_eq!(udp_record["sample_rate"], 1);
    let first = udp_record["first_seen"].as_str().unwrap();
    let last = udp_record["last_seen"].as_str().unwrap();
    assert!(first <= last && first.ends_with('Z'), "{first} {last}");
}
