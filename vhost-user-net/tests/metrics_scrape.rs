//! The metrics endpoint of the real daemon, scraped over TCP while virtual guests send known
//! traffic: the exposition is well-formed, carries the expected series with the right values,
//! and its counters never go backwards across a frontend reconnect.

mod control_support;
mod daemon_support;

use control_support::{
    arp_request, exchange, guest, http_get, sample, scrape, scrape_until, start_daemon, vif_table,
};
use daemon_support::Scratch;
use vmm_integration::guest::Reconnect;

/// Every line is a comment (HELP/TYPE) or `name{labels} value`; every family has HELP then
/// TYPE before its samples, once.
fn assert_well_formed(text: &str) {
    let mut families = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap().to_owned();
            assert!(families.insert(name.clone()), "family {name} twice");
            current = Some(name);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split(' ');
            assert_eq!(words.next(), current.as_deref(), "TYPE after its HELP");
            let kind = words.next().unwrap();
            assert!(matches!(kind, "counter" | "gauge" | "histogram"), "{line}");
        } else {
            let family = current.as_deref().expect("a sample before any HELP");
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            assert!(
                value == "+Inf" || value.parse::<f64>().is_ok(),
                "value of {line:?}"
            );
            let name = series.split('{').next().unwrap();
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|b| *b == family)
                .unwrap_or(name);
            assert_eq!(base, family, "{line:?} outside its family");
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line:?}"
                );
            }
        }
    }
}

const TWO_VIFS: &str = "labels = { tenant = \"acme\" }";

#[test]
fn scrape_shows_guest_traffic_with_labels() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}",
        vif_table("a", 0x0a, TWO_VIFS),
        vif_table("b", 0x0b, "")
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);
    const FRAMES: u64 = 5;
    for n in 0..FRAMES {
        exchange(&mut a, &mut b, &arp_request(0x0a, 20 + n as u8), log);
    }
    let a_tx = [("vif", "a"), ("tenant", "acme"), ("queue", "0")];
    let b_rx = [("vif", "b"), ("tenant", ""), ("queue", "0")];
    let text = scrape_until(daemon.metrics, "5 frames each way", |text| {
        sample(text, "vif_tx_packets_total", &a_tx) == Some(FRAMES as f64)
            && sample(text, "vif_rx_packets_total", &b_rx) == Some(FRAMES as f64)
    });
    assert_well_formed(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"))
    };
    assert_eq!(value("vif_tx_bytes_total", &a_tx), 300.0);
    assert_eq!(value("vif_rx_bytes_total", &b_rx), 300.0);
    let bcast = [("vif", "a"), ("queue", "0"), ("cast", "broadcast")];
    assert_eq!(value("vif_tx_cast_packets_total", &bcast), 5.0);
    // 60-byte frames: DPDK's undersize bin (no FCS on virtio frames).
    let bin = [("vif", "b"), ("queue", "0"), ("size", "undersize")];
    assert_eq!(value("vif_rx_size_packets_total", &bin), 5.0);
    let no_drops = [("vif", "a"), ("queue", "0"), ("reason", "malformed")];
    assert_eq!(value("vif_tx_drops_total", &no_drops), 0.0);
    assert_eq!(value("vif_link_up", &[("vif", "a")]), 1.0);
    assert_eq!(
        value("vif_frontend_connections_total", &[("vif", "b")]),
        1.0
    );
    let info = [("vif", "a"), ("segment", "lab"), ("mode", "server")];
    assert_eq!(value("vif_info", &info), 1.0);
    // A's MAC was learned on its segment.
    assert!(value("vif_segment_fdb_entries", &[("segment", "lab")]) >= 1.0);
    assert_eq!(value("vif_segment_vifs", &[("segment", "lab")]), 2.0);
    // Both provisioning stages were reached, and the batch histogram saw A's kicks.
    for stage in ["socket_ready", "driver_ok"] {
        let labels = [("vif", "a"), ("stage", stage)];
        assert!(value("vif_provisioning_seconds", &labels) >= 0.0);
        let count = value(
            "vif_provisioning_duration_seconds_count",
            &[("stage", stage)],
        );
        assert_eq!(count, 2.0, "two VIFs reached {stage}");
    }
    let batches = [("vif", "a"), ("queue", "0"), ("le", "+Inf")];
    assert!(value("vif_batch_duration_seconds_bucket", &batches) >= 1.0);
    assert!(text.contains("# TYPE vif_batch_duration_seconds histogram\n"));

    let (status, _) = http_get(daemon.metrics, "/");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
}

#[test]
fn counters_never_go_backwards_across_a_reconnect() {
    let scratch = Scratch::new();
    let vifs = format!("{}{}", vif_table("a", 0x0a, ""), vif_table("b", 0x0b, ""));
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);
    let a_tx = [("vif", "a"), ("queue", "0")];
    for n in 0..3 {
        exchange(&mut a, &mut b, &arp_request(0x0a, n), log);
    }
    scrape_until(daemon.metrics, "3 frames from a", |text| {
        sample(text, "vif_tx_packets_total", &a_tx) == Some(3.0)
    });

    // The VM goes away: the counters stay while no frontend is connected.
    a.disconnect();
    let down = scrape_until(daemon.metrics, "a's link down", |text| {
        sample(text, "vif_link_up", &[("vif", "a")]) == Some(0.0)
    });
    assert_eq!(sample(&down, "vif_tx_packets_total", &a_tx), Some(3.0));
    assert_eq!(sample(&down, "vif_tx_bytes_total", &a_tx), Some(180.0));

    // It comes back as a fresh driver and sends more: the counters continue from 3.
    a.reconnect(Reconnect::Fresh)
        .unwrap_or_else(|e| panic!("reconnect: {e}\n{}", log()));
    for n in 3..5 {
        exchange(&mut a, &mut b, &arp_request(0x0a, n), log);
    }
    let after = scrape_until(daemon.metrics, "5 frames from a", |text| {
        sample(text, "vif_tx_packets_total", &a_tx) == Some(5.0)
    });
    assert_eq!(sample(&after, "vif_tx_bytes_total", &a_tx), Some(300.0));
    assert_eq!(
        sample(&after, "vif_frontend_connections_total", &[("vif", "a")]),
        Some(2.0)
    );
    assert_eq!(sample(&after, "vif_link_up", &[("vif", "a")]), Some(1.0));
    // B's receive counters kept counting too.
    let b_rx = [("vif", "b"), ("queue", "0")];
    assert_eq!(sample(&after, "vif_rx_packets_total", &b_rx), Some(5.0));
    let _ = scrape(daemon.metrics);
    assert!(daemon.handle.stop().unwrap().is_some_and(|s| s.success()));
}
