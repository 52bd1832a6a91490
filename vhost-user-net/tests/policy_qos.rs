//! Rate limits on the real daemon's datapath. What a guest sends over its limit is held back:
//! the descriptors stay in its TX ring (its completions lag), nothing is dropped, and everything
//! arrives in order once tokens are there; what it would receive over its limit is a counted
//! `rate_limited` drop.
//!
//! The buckets are chosen so that the assertions do not depend on timing: a bucket that
//! refills in a day holds frames until the test lifts the limit through the control socket,
//! and a batch published with one kick meets one bucket state. Deadlines only stop hung tests.

mod control_support;
mod daemon_support;
mod policy_support;

use std::time::Instant;

use control_support::{guest, ok, sample, scrape_until, start_daemon, vif_table};
use daemon_support::{Scratch, DEADLINE};
use policy_support::{counters_until, drops, receive, udp};
use vhost_user_net::control::protocol::Request;
use vif_core::offload::VirtioNetHdr;
use vmm_integration::guest::VirtualGuest;

const A: u8 = 0x0a;
const B: u8 = 0x0b;
/// One day: the longest refill a QoS table may have; nothing refills during a test.
const DAY_MS: u64 = 86_400_000;

/// `count` numbered UDP frames from A to B, sent as one batch with one kick.
fn send_numbered(a: &mut VirtualGuest, count: u16) -> Vec<Vec<u8>> {
    let frames: Vec<Vec<u8>> = (0..count)
        .map(|n| udp(A, B, 5000, 5001, &n.to_be_bytes()))
        .collect();
    let hdr = VirtioNetHdr::default();
    let sent = a
        .send_batch(0, frames.iter().map(|f| (&hdr, f.as_slice())))
        .expect("send batch");
    assert_eq!(sent, frames.len(), "the TX ring had room for the batch");
    frames
}

fn qos(name: &str, direction: &str, packets: u64, refill_time_ms: u64) -> String {
    format!(
        "[[qos]]\nname = \"{name}\"\n\
         {direction} = {{ ops = {{ size = {packets}, refill_time_ms = {refill_time_ms} }} }}\n"
    )
}

/// Polls `guest`'s TX ring until `want` chains are in flight (the device has not completed
/// them); returns the last count at the deadline.
fn in_flight_until(guest: &mut VirtualGuest, want: u16) -> u16 {
    let start = Instant::now();
    loop {
        guest.reap_tx(0).expect("reap");
        let now = guest.tx_in_flight(0).expect("in flight");
        if now == want || start.elapsed() > DEADLINE {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn tx_over_the_limit_stays_in_the_ring_until_tokens_and_arrives_in_order() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}{}",
        vif_table("a", A, "qos = \"eight\""),
        vif_table("b", B, ""),
        qos("eight", "tx", 8, DAY_MS)
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let frames = send_numbered(&mut a, 24);
    for (n, frame) in frames.iter().take(8).enumerate() {
        assert_eq!(&receive(&mut b, log), frame, "frame {n}");
    }
    // The other 16 wait in A's ring, not completed: backpressure, not loss.
    assert_eq!(in_flight_until(&mut a, 16), 16, "{}", log());
    let held = counters_until(&daemon.control, "a", "throttling", |c| c.tx.throttled > 0);
    assert_eq!(held.tx.packets, 8);
    assert_eq!(
        held.tx.drops.values().sum::<u64>(),
        0,
        "{:?}",
        held.tx.drops
    );
    scrape_until(daemon.metrics, "vif_tx_throttled_total", |text| {
        sample(text, "vif_tx_throttled_total", &[("vif", "a")]).is_some_and(|n| n > 0.0)
    });

    // Lift the limit: the refill timer (armed for at most a second) runs A's queue again.
    ok(
        &daemon.control,
        &Request::SetQos {
            vif: "a".into(),
            qos: None,
        },
    );
    for (n, frame) in frames.iter().enumerate().skip(8) {
        assert_eq!(&receive(&mut b, log), frame, "frame {n}");
    }
    a.wait_tx_done(0, DEADLINE).expect("every chain completed");
    let done = counters_until(&daemon.control, "a", "24 packets", |c| c.tx.packets == 24);
    assert_eq!(
        done.tx.drops.values().sum::<u64>(),
        0,
        "{:?}",
        done.tx.drops
    );
    let b_counters = counters_until(&daemon.control, "b", "24 received", |c| c.rx.packets == 24);
    assert_eq!(b_counters.rx.drops.values().sum::<u64>(), 0);
}

#[test]
fn held_frames_go_when_the_bucket_refills() {
    let scratch = Scratch::new();
    // 4 packets per 50 ms: the batch of 16 meets a bucket of 4 and waits for three refills.
    let vifs = format!(
        "{}{}{}",
        vif_table("a", A, "qos = \"four\""),
        vif_table("b", B, ""),
        qos("four", "tx", 4, 50)
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let frames = send_numbered(&mut a, 16);
    for (n, frame) in frames.iter().enumerate() {
        assert_eq!(&receive(&mut b, log), frame, "frame {n}");
    }
    a.wait_tx_done(0, DEADLINE).expect("every chain completed");
    let counters = counters_until(&daemon.control, "a", "16 packets", |c| c.tx.packets == 16);
    assert!(counters.tx.throttled > 0, "{counters:#?}");
    assert_eq!(counters.tx.drops.values().sum::<u64>(), 0);
}

#[test]
fn rx_over_the_limit_is_a_counted_drop() {
    let scratch = Scratch::new();
    let vifs = format!(
        "{}{}{}",
        vif_table("a", A, ""),
        vif_table("b", B, "qos = \"rx-four\""),
        qos("rx-four", "rx", 4, DAY_MS)
    );
    let daemon = start_daemon(&scratch, &vifs, &["a", "b"]);
    let log = || scratch.log();
    let mut a = guest(&scratch.join("a.sock"), log);
    let mut b = guest(&scratch.join("b.sock"), log);

    let frames = send_numbered(&mut a, 10);
    for (n, frame) in frames.iter().take(4).enumerate() {
        assert_eq!(&receive(&mut b, log), frame, "frame {n}");
    }
    let counters = counters_until(&daemon.control, "b", "six rate_limited drops", |c| {
        drops(&c.rx, "rate_limited") == 6
    });
    assert_eq!(counters.rx.packets, 4);
    // The sender is not held back: B's limit is B's.
    let sender = counters_until(&daemon.control, "a", "ten sent", |c| c.tx.packets == 10);
    assert_eq!(sender.tx.throttled, 0);
    scrape_until(daemon.metrics, "the drops in the metrics", |text| {
        sample(
            text,
            "vif_rx_drops_total",
            &[("vif", "b"), ("reason", "rate_limited")],
        ) == Some(6.0)
    });
}
