//! One frontend connection's view of a VIF's backend: the backend itself, plus exit events that
//! belong to the connection.
//!
//! A VIF outlives its connections (server mode listens again, client mode reconnects), so the
//! daemon builds a new `VhostUserDaemon` per connection over the same backend: the handler's
//! protocol state (`SET_OWNER`, acked features, vrings) is per connection and cannot be reset
//! otherwise. Dropping that `VhostUserDaemon` joins its vring worker threads, which only exit
//! through `VhostUserBackend::exit_event` (vhost-user-backend `event_loop.rs`); the worker never
//! consumes the exit eventfd, so each connection needs fresh ones. That is the connection's
//! concern, not the datapath's, so this wrapper supplies them and forwards everything else.
//! They are created before the connection's handler is built, so running out of file
//! descriptors refuses the connection instead of leaving a worker that can never be joined.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use vhost::vhost_user::message::{
    VhostTransferStateDirection, VhostTransferStatePhase, VhostUserProtocolFeatures,
    VhostUserShMemConfig, VhostUserSharedMsg,
};
use vhost::vhost_user::{Backend, GpuBackend};
use vhost_user_backend::VhostUserBackend;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use super::status::VifStatus;

/// One worker's exit event, handed out once.
type ExitPair = Option<(EventConsumer, EventNotifier)>;

/// A backend as seen by one connection. Cheap to clone (the handler clones it per worker).
///
/// It also observes the connection for the VIF's [`VifStatus`]: `SET_FEATURES` marks the
/// device started after DRIVER_OK (see `status.rs`), and each worker event's duration goes into
/// the per-batch processing time histogram. Timing here, around the backend's `handle_event`,
/// keeps the datapath itself free of metrics code: two vDSO clock reads per batch.
pub struct SessionBackend<B> {
    inner: Arc<B>,
    exit_events: Arc<Mutex<Vec<ExitPair>>>,
    status: Arc<VifStatus>,
    /// Whether this connection's frontend has started the device yet.
    started: Arc<AtomicBool>,
}

impl<B: VhostUserBackend> SessionBackend<B> {
    /// Wraps `inner` for one connection, with one exit event per worker thread, reporting to
    /// `status`.
    pub fn new(inner: Arc<B>, status: Arc<VifStatus>) -> io::Result<SessionBackend<B>> {
        let workers = inner.queues_per_thread().len();
        let mut exit_events = Vec::with_capacity(workers);
        for _ in 0..workers {
            let pair = new_event_consumer_and_notifier(EventFlag::NONBLOCK | EventFlag::CLOEXEC)?;
            exit_events.push(Some(pair));
        }
        Ok(SessionBackend {
            inner,
            exit_events: Arc::new(Mutex::new(exit_events)),
            status,
            started: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl<B> Clone for SessionBackend<B> {
    fn clone(&self) -> Self {
        SessionBackend {
            inner: Arc::clone(&self.inner),
            exit_events: Arc::clone(&self.exit_events),
            status: Arc::clone(&self.status),
            started: Arc::clone(&self.started),
        }
    }
}

impl<B: VhostUserBackend> VhostUserBackend for SessionBackend<B> {
    type Bitmap = B::Bitmap;
    type Vring = B::Vring;

    fn num_queues(&self) -> usize {
        self.inner.num_queues()
    }

    fn max_queue_size(&self) -> usize {
        self.inner.max_queue_size()
    }

    fn features(&self) -> u64 {
        self.inner.features()
    }

    fn acked_features(&self, features: u64) {
        self.inner.acked_features(features);
        let first = !self.started.swap(true, Ordering::AcqRel);
        self.status.device_started(first);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.inner.protocol_features()
    }

    fn reset_device(&self) {
        self.inner.reset_device()
    }

    fn set_event_idx(&self, enabled: bool) {
        self.inner.set_event_idx(enabled)
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.inner.get_config(offset, size)
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        self.inner.set_config(offset, buf)
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap<B::Bitmap>>) -> io::Result<()> {
        self.inner.update_memory(mem)
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        self.inner.set_backend_req_fd(backend)
    }

    fn get_shared_object(&self, uuid: VhostUserSharedMsg) -> io::Result<File> {
        self.inner.get_shared_object(uuid)
    }

    fn set_gpu_socket(&self, gpu_backend: GpuBackend) -> io::Result<()> {
        self.inner.set_gpu_socket(gpu_backend)
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        self.inner.queues_per_thread()
    }

    /// The handler asks once per worker when the connection's `VhostUserDaemon` is built, and
    /// keeps the notifier to stop that worker.
    fn exit_event(&self, thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        let mut events = self.exit_events.lock().unwrap_or_else(|e| e.into_inner());
        let pair = events.get_mut(thread_index).and_then(Option::take);
        if pair.is_none() {
            log::error!("no exit event left for worker {thread_index}; it cannot be stopped");
        }
        pair
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        self.inner.stop_vring(queue_index)
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[B::Vring],
        thread_id: usize,
    ) -> io::Result<()> {
        let started = Instant::now();
        let result = self
            .inner
            .handle_event(device_event, evset, vrings, thread_id);
        self.status
            .batch_times()
            .record(thread_id, started.elapsed());
        result
    }

    fn set_device_state_fd(
        &self,
        direction: VhostTransferStateDirection,
        phase: VhostTransferStatePhase,
        file: File,
    ) -> io::Result<Option<File>> {
        self.inner.set_device_state_fd(direction, phase, file)
    }

    fn check_device_state(&self) -> io::Result<()> {
        self.inner.check_device_state()
    }

    fn get_shmem_config(&self) -> io::Result<VhostUserShMemConfig> {
        self.inner.get_shmem_config()
    }
}
