//! One flow record as a JSON line:
//!
//! ```json
//! {"vif":"web-1","direction":"egress","src_mac":"52:54:00:00:00:01","dst_mac":"52:54:00:00:00:02",
//!  "ethertype":"0x0800","vlan":null,"vni":null,"src":"192.0.2.1","dst":"192.0.2.2","proto":17,
//!  "src_port":1000,"dst_port":53,"packets":3,"bytes":138,
//!  "first_seen":"2026-11-25T15:01:14.123456Z","last_seen":"2026-11-25T15:01:15.000001Z",
//!  "verdict":"forwarded","reason":null,"end":"idle","sample_rate":1}
//! ```
//!
//! `src`/`dst` are null for non-IP frames (ARP fills them with the protocol addresses);
//! `src_port`/`dst_port` hold the ICMP type and code for ICMP. `bytes` count frames as the guest
//! sent them (Ethernet header included, no virtio-net header). `sample_rate` says how many flows
//! each logged flow stands for. Times are UTC, RFC 3339 with microseconds.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::cache::Exported;

/// The record as serialized.
#[derive(Debug, Serialize)]
pub struct FlowRecord<'a> {
    pub vif: &'a str,
    pub direction: &'static str,
    pub src_mac: String,
    pub dst_mac: String,
    pub ethertype: String,
    pub vlan: Option<u16>,
    pub vni: Option<u32>,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub verdict: &'static str,
    pub reason: Option<&'static str>,
    pub end: &'static str,
    pub sample_rate: u32,
}

/// Converts the monotonic instants of the datapath to wall-clock time: one pair of readings
/// taken when the exporter starts. Steps of the wall clock afterwards (NTP) do not move
/// records, which keeps first/last ordering and durations exact.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            instant: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    pub fn wall(&self, at: Instant) -> SystemTime {
        if at >= self.instant {
            self.wall + at.duration_since(self.instant)
        } else {
            self.wall - self.instant.duration_since(at)
        }
    }
}

impl<'a> FlowRecord<'a> {
    pub fn new(vif: &'a str, record: &Exported, clock: &Clock, sample_rate: u32) -> FlowRecord<'a> {
        let entry = &record.entry;
        let key = &entry.key;
        FlowRecord {
            vif,
            direction: "egress",
            src_mac: key.src_mac.to_string(),
            dst_mac: key.dst_mac.to_string(),
            ethertype: key.ethertype.to_string(),
            vlan: key.vlan.map(|v| v.get()),
            vni: key.vni.map(|v| v.get()),
            src: key.src_ip().map(|ip| ip.to_string()),
            dst: key.dst_ip().map(|ip| ip.to_string()),
            proto: key.ip_proto,
            src_port: key.src_port,
            dst_port: key.dst_port,
            packets: entry.packets,
            bytes: entry.bytes,
            first_seen: rfc3339(clock.wall(entry.first)),
            last_seen: rfc3339(clock.wall(entry.last)),
            verdict: entry.verdict.as_str(),
            reason: entry.verdict.reason().map(|r| r.as_str()),
            end: record.end.as_str(),
            sample_rate,
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ` (RFC 3339 § 5.6), UTC. Times before 1970 print as the epoch.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = doy - (153 * mp + 2) / 5 + 1; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 }; // [1, 12]
    let year = if m <= 2 { y + 1 } else { y };
    (
        year,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_dates() {
        // Fixtures: `date -u -d @SECONDS +%FT%T` from GNU coreutils.
        let at = |secs: u64, micros: u32| {
            UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros))
        };
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(at(951_782_400, 7)), "2000-02-29T00:00:00.000007Z");
        assert_eq!(
            rfc3339(at(1_764_083_874, 123_456)),
            "2025-11-25T15:17:54.123456Z"
        );
        assert_eq!(rfc3339(at(4_102_444_799, 0)), "2099-12-31T23:59:59.000000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    /// The naive reference: count days forward from 1970 year by year, month by month.
    fn naive(days: i64) -> (i64, u32, u32) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut year, mut left) = (1970, days);
        loop {
            let len = if leap(year) { 366 } else { 365 };
            if left < len {
                break;
            }
            left -= len;
            year += 1;
        }
        let months = [
            31,
            if leap(year) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut month = 1;
        for len in months {
            if left < len {
                break;
            }
            left -= len;
            month += 1;
        }
        (year, month, left as u32 + 1)
    }

    proptest! {
        #[test]
        fn civil_matches_naive(days in 0i64..100_000) {
            prop_assert_eq!(civil_from_days(days), naive(days));
        }
    }

    #[test]
    fn clock_maps_instants_both_ways() {
        let clock = Clock::now();
        let later = clock.instant + Duration::from_secs(2);
        assert_eq!(clock.wall(later), clock.wall + Duration::from_secs(2));
        if let Some(earlier) = clock.instant.checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.wall(earlier), clock.wall - Duration::from_secs(1));
        }
    }
}
