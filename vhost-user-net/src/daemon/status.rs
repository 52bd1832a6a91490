//! What a VIF's supervisor knows about its connection, for the control socket and the metrics:
//! the link state, how many frontends it served, how long provisioning took, and the per-batch
//! processing time of its workers.
//!
//! Written by the VIF's supervisor thread, its connection's handler thread and its vring workers;
//! read by the main thread. Everything is an atomic: no lock is shared with the datapath.
//!
//! # Provisioning latency
//! Measured from the moment the daemon was asked for the VIF (config load at start, or the
//! control request) to two stages, each recorded once per VIF (a reconnect is not provisioning):
//! - **socket ready**: server mode, the supervisor is accepting on the bound socket; client mode,
//!   the first connection to the VMM's socket succeeded;
//! - **driver OK**: the first `VHOST_USER_SET_FEATURES`. A vhost-user backend never sees the
//!   guest's status register, but frontends start the backend *because* the driver wrote
//!   DRIVER_OK (VIRTIO 1.2 § 3.1.1 step 8): QEMU's `virtio_net_set_status` calls
//!   `vhost_net_start`, whose first message is `SET_FEATURES` with the driver's accepted
//!   features, and Cloud Hypervisor's `activate` does the same. The rings are enabled a few
//!   messages later (`SET_VRING_KICK`, `SET_VRING_ENABLE`), microseconds after.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::histogram::{BatchTimes, ProvisioningHistogram, ProvisioningTimes};

/// Where a VIF's vhost-user connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Server mode, waiting for a frontend.
    Listening,
    /// Client mode, dialling the VMM's socket for the first time.
    Connecting,
    /// A frontend is connected.
    Connected,
    /// Client mode, the frontend went away: dialling again.
    Reconnecting,
    /// The supervisor has ended (VIF removed or daemon stopping).
    Stopped,
}

impl LinkState {
    const ALL: [LinkState; 5] = [
        LinkState::Listening,
        LinkState::Connecting,
        LinkState::Connected,
        LinkState::Reconnecting,
        LinkState::Stopped,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LinkState::Listening => "listening",
            LinkState::Connecting => "connecting",
            LinkState::Connected => "connected",
            LinkState::Reconnecting => "reconnecting",
            LinkState::Stopped => "stopped",
        }
    }
}

/// Nanoseconds value meaning "not reached yet".
const NOT_YET: u64 = u64::MAX;

/// A VIF's connection status and timings. See the module docs.
#[derive(Debug)]
pub struct VifStatus {
    requested_at: Instant,
    state: AtomicU8,
    connections: AtomicU64,
    socket_ready_ns: AtomicU64,
    driver_ok_ns: AtomicU64,
    batch_times: BatchTimes,
    provisioning: Arc<ProvisioningTimes>,
}

impl VifStatus {
    /// A VIF requested at `requested_at`, with `workers` vring worker threads; stage latencies
    /// are also observed into the daemon-wide `provisioning` histograms.
    pub fn new(
        requested_at: Instant,
        workers: usize,
        provisioning: Arc<ProvisioningTimes>,
    ) -> VifStatus {
        VifStatus {
            requested_at,
            state: AtomicU8::new(LinkState::Connecting as u8),
            connections: AtomicU64::new(0),
            socket_ready_ns: AtomicU64::new(NOT_YET),
            driver_ok_ns: AtomicU64::new(NOT_YET),
            batch_times: BatchTimes::new(workers),
            provisioning,
        }
    }

    pub fn state(&self) -> LinkState {
        let raw = self.state.load(Ordering::Acquire);
        LinkState::ALL
            .into_iter()
            .find(|s| *s as u8 == raw)
            .unwrap_or(LinkState::Stopped)
    }

    pub fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// A frontend connected: marks the link connected.
    pub fn connected(&self) {
        self.set_state(LinkState::Connected);
    }

    /// A connection's frontend started the device (`SET_FEATURES`; see the module docs);
    /// `first_in_connection` counts the connection. Connections that never start the device (a
    /// readiness probe, a VMM that gives up during negotiation) are not counted.
    pub fn device_started(&self, first_in_connection: bool) {
        if first_in_connection {
            self.connections.fetch_add(1, Ordering::Relaxed);
        }
        self.driver_started();
    }

    /// Frontend connections that started the device so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The socket is ready (see the module docs); only the first call counts.
    pub fn socket_ready(&self) {
        self.reach(&self.socket_ready_ns, |p| &p.socket_ready);
    }

    /// The frontend started the device after DRIVER_OK (see the module docs); only the first
    /// call counts.
    pub fn driver_started(&self) {
        self.reach(&self.driver_ok_ns, |p| &p.driver_ok);
    }

    fn reach(
        &self,
        slot: &AtomicU64,
        histogram: impl Fn(&ProvisioningTimes) -> &ProvisioningHistogram,
    ) {
        let elapsed = self.requested_at.elapsed();
        let ns = u64::try_from(elapsed.as_nanos())
            .unwrap_or(NOT_YET - 1)
            .min(NOT_YET - 1);
        // Only the first arrival stores and observes.
        if slot
            .compare_exchange(NOT_YET, ns, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            histogram(&self.provisioning).record(elapsed);
        }
    }

    /// Time from the request to socket readiness, once reached.
    pub fn socket_ready_after(&self) -> Option<Duration> {
        read_stage(&self.socket_ready_ns)
    }

    /// Time from the request to the first DRIVER_OK, once reached.
    pub fn driver_ok_after(&self) -> Option<Duration> {
        read_stage(&self.driver_ok_ns)
    }

    pub fn requested_at(&self) -> Instant {
        self.requested_at
    }

    /// The per-batch processing time of the VIF's workers.
    pub fn batch_times(&self) -> &BatchTimes {
        &self.batch_times
    }
}

fn read_stage(slot: &AtomicU64) -> Option<Duration> {
    match slot.load(Ordering::Acquire) {
        NOT_YET => None,
        ns => Some(Duration::from_nanos(ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_recorded_once() {
        let provisioning = Arc::new(ProvisioningTimes::default());
        let status = VifStatus::new(Instant::now(), 1, Arc::clone(&provisioning));
        assert_eq!(status.state(), LinkState::Connecting);
        assert!(status.socket_ready_after().is_none());
        status.socket_ready();
        let first = status.socket_ready_after().unwrap();
        status.socket_ready();
        assert_eq!(status.socket_ready_after(), Some(first));
        assert_eq!(provisioning.socket_ready.snapshot().count(), 1);
        assert_eq!(provisioning.driver_ok.snapshot().count(), 0);
        status.driver_started();
        status.driver_started();
        assert_eq!(provisioning.driver_ok.snapshot().count(), 1);
        assert!(status.driver_ok_after().unwrap() >= first);
    }

    #[test]
    fn states_round_trip() {
        let status = VifStatus::new(Instant::now(), 1, Arc::default());
        for state in LinkState::ALL {
            status.set_state(state);
            assert_eq!(status.state(), state);
        }
        status.connected();
        assert_eq!(status.state(), LinkState::Connected);
        status.device_started(true);
        status.device_started(false);
        status.device_started(true);
        assert_eq!(status.connections(), 2);
        assert!(status.driver_ok_after().is_some());
    }
}
