//! `VhostUserBackend` for one VIF: event dispatch only.
//!
//! # Threads and events
//! One worker thread per queue pair (`queues_per_thread`: `0b11 << 2i`), each with its own
//! `VringEpollHandler`. A worker's state ([`TxPath`], [`RxPath`], its RX backlog, its local
//! counters) sits in its own `Mutex`, indexed by the thread id, so workers never contend; the
//! vhost-user handler thread never takes it. Device-wide changes (new features, reset) bump a
//! generation counter, and a worker resets itself when it sees a new one.
//!
//! The kick fds of a pair arrive as thread-local ids [`EVT_RX_KICK`] and [`EVT_TX_KICK`]; the
//! library reserves `num_queues` for its exit and ring-enable events, [`NetBackend::evt_wake`]
//! (`num_queues + 1`) is the worker's own wake eventfd and [`NetBackend::evt_refill`]
//! (`num_queues + 2`) its TX refill timer.
//!
//! # Policy
//! The VIF's [`VifPolicy`] (ACLs, port security, conntrack, rate limits) is applied by its own
//! workers: TX frames in the pipeline before the switch, received frames on delivery. A TX
//! chain over the rate limit stays in the ring; the worker stops the pass, keeps guest kicks
//! off and arms its [`RefillTimer`] for when the bucket has the tokens.
//!
//! # Cross-VIF delivery: per-port inboxes, not direct ring writes
//! VIF A's worker copies a frame into VIF B's bounded inbox ([`crate::inbox`]) and, once per
//! burst, writes B's wake eventfd; B's worker (registered for [`NetBackend::evt_wake`]) writes
//! B's RX ring itself. We chose this over writing B's vring from A's thread because:
//! - counters stay single-writer: B's RX counters are only touched by B's thread;
//! - isolation: A never takes B's vring lock nor touches B's guest memory, so a stuck, slow or
//!   broken B (or B's frontend holding its vring lock during a message) never blocks A — A sees
//!   a full inbox and counts a drop;
//! - it is the seam uplinks need anyway (an uplink's thread feeds the same inbox).
//!
//! The cost is one extra copy per frame; the inbox arenas are pre-allocated, and the eventfd
//! write happens once per burst per destination (at most once per drain of B), so there is no
//! syscall and no allocation per packet.
//!
//! **The daemon must call [`NetBackend::register_listeners`] right after creating each
//! `VhostUserDaemon`** (or use [`NetBackend::new_daemon`], which does both): without it frames
//! from other VIFs are only delivered when B's own guest kicks, and a budget-limited pass is not
//! re-armed.
//!
//! # Budget, notifications, busy polling
//! A wake-up processes at most [`crate::tx::TX_BUDGET`] TX chains and [`crate::rx::RX_BUDGET`] RX
//! chains; when a budget runs out the worker writes its own wake eventfd and returns, so the
//! other fds on its epoll get a turn, and resumes without waiting for the guest. TX kicks are
//! disabled while a pass runs and re-enabled (`EVENT_IDX` avail_event) when the ring is empty,
//! re-checking for a race; used buffers are signalled once per pass, when `needs_notification`
//! says the guest asked. With [`NetBackend::set_busy_poll`] the worker never re-enables kicks and
//! re-arms itself after every pass: for operators who dedicate a core.
//!
//! # Reconnect
//! The daemon serves the same `NetBackend` again after a frontend leaves. [`NetBackend::disconnected`]
//! (or `RESET_DEVICE`) takes the port off the segment (its MACs leave the FDB, frames to it are
//! refused) and invalidates the workers' state; the next `SET_FEATURES` puts it back.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{
    VhostUserBackend, VhostUserDaemon, VringEpollHandler, VringRwLock, VringT,
};
use vif_core::acl::Direction;
use vif_core::model::VifSpec;
use vif_core::stats::{DropReason, QueueStats, StatsBatch, VifStats};
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::device::{Negotiated, NetDevice, RX_QUEUE, TX_QUEUE};
use crate::inbox::{FrameArena, Inbox, VifPort};
use crate::pipeline::Pipeline;
use crate::policy::{clock_ns, RefillTimer, VifPolicy};
use crate::port::PortId;
use crate::rx::RxPath;
use crate::switch::{Segment, SwitchError};
use crate::tx::{TxContext, TxPath};

/// Thread-local event id of the pair's receive queue kick (the guest added RX buffers).
pub const EVT_RX_KICK: u16 = RX_QUEUE as u16;
/// Thread-local event id of the pair's transmit queue kick.
pub const EVT_TX_KICK: u16 = TX_QUEUE as u16;
/// Passes over a starved RX ring per wake-up before waiting for the guest's kick.
const MAX_RX_RETRIES: usize = 4;
/// `port_id` value while the port is not on its segment.
const NO_PORT: u32 = u32::MAX;

type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// Why a VIF's backend cannot be built or served.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("queue pairs {queue_pairs} out of range [1, {max}]")]
    QueuePairs { queue_pairs: u16, max: u16 },
    #[error("cannot create the wake eventfd of worker {worker}: {source}")]
    WakeEventFd { worker: usize, source: io::Error },
    #[error("cannot register the wake eventfd of worker {worker}: {source}")]
    RegisterWake { worker: usize, source: io::Error },
    #[error("cannot create the TX refill timer of worker {worker}: {source}")]
    RefillTimer { worker: usize, source: io::Error },
    #[error("VIF {vif}: {source}")]
    Switch { vif: String, source: SwitchError },
    #[error("VIF {vif}: cannot create the vhost-user daemon: {reason}")]
    Daemon { vif: String, reason: String },
}

/// One worker thread's state.
struct Worker {
    generation: u64,
    tx: TxPath,
    rx: RxPath,
    backlog: FrameArena,
    tx_broken: bool,
    rx_broken: bool,
    /// A TX pass stopped on its budget: run again on the next wake-up.
    tx_rearm: bool,
    /// Armed while the rate limit holds a TX chain back.
    refill: RefillTimer,
}

impl Worker {
    fn new(refill: RefillTimer) -> Worker {
        Worker {
            generation: 0,
            tx: TxPath::new(),
            rx: RxPath::new(),
            backlog: FrameArena::new(),
            tx_broken: false,
            rx_broken: false,
            tx_rearm: false,
            refill,
        }
    }

    fn reset(&mut self, generation: u64) {
        self.refill.cancel();
        self.generation = generation;
        self.backlog.clear();
        self.tx_broken = false;
        self.rx_broken = false;
        self.tx_rearm = false;
    }
}

/// The vhost-user-net backend of one VIF.
pub struct NetBackend {
    spec: VifSpec,
    device: NetDevice,
    segment: Arc<Segment>,
    port: Arc<VifPort>,
    port_id: AtomicU32,
    /// Serialises attach/detach (handler thread and daemon).
    attach_lock: Mutex<()>,
    mem: RwLock<Option<Memory>>,
    acked: AtomicU64,
    generation: AtomicU64,
    busy_poll: AtomicBool,
    stats: Arc<VifStats>,
    policy: Arc<VifPolicy>,
    workers: Box<[Mutex<Worker>]>,
}

impl NetBackend {
    /// A backend without policy; [`NetBackend::policy`] can be given one later.
    pub fn new(spec: &VifSpec, segment: Arc<Segment>) -> Result<Arc<NetBackend>, BackendError> {
        let policy = VifPolicy::new(spec.mac, vif_core::acl::ConntrackConfig::default());
        NetBackend::with_policy(spec, segment, Arc::new(policy))
    }

    /// A backend applying `policy` (built for this VIF's MAC).
    pub fn with_policy(
        spec: &VifSpec,
        segment: Arc<Segment>,
        policy: Arc<VifPolicy>,
    ) -> Result<Arc<NetBackend>, BackendError> {
        let max = vif_core::model::vif::MAX_QUEUE_PAIRS;
        if !(1..=max).contains(&spec.queue_pairs) {
            return Err(BackendError::QueuePairs {
                queue_pairs: spec.queue_pairs,
                max,
            });
        }
        let device = NetDevice::from_spec(spec);
        let pairs = usize::from(spec.queue_pairs);
        let inboxes = (0..pairs)
            .map(|worker| {
                EventFd::new(EFD_NONBLOCK)
                    .map(Inbox::new)
                    .map_err(|source| BackendError::WakeEventFd { worker, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let workers = (0..pairs)
            .map(|worker| {
                RefillTimer::new()
                    .map(|timer| Mutex::new(Worker::new(timer)))
                    .map_err(|source| BackendError::RefillTimer { worker, source })
            })
            .collect::<Result<Box<[_]>, _>>()?;
        Ok(Arc::new(NetBackend {
            spec: spec.clone(),
            device,
            segment,
            port: Arc::new(VifPort::new(spec.id.as_str(), inboxes)),
            port_id: AtomicU32::new(NO_PORT),
            attach_lock: Mutex::new(()),
            mem: RwLock::new(None),
            acked: AtomicU64::new(0),
            generation: AtomicU64::new(1),
            busy_poll: AtomicBool::new(false),
            stats: Arc::new(VifStats::new(spec.queue_pairs)),
            policy,
            workers,
        }))
    }

    pub fn spec(&self) -> &VifSpec {
        &self.spec
    }

    pub fn device(&self) -> &NetDevice {
        &self.device
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }

    pub fn stats(&self) -> Arc<VifStats> {
        self.stats.clone()
    }

    /// The VIF's policy, to change while it runs.
    pub fn policy(&self) -> &Arc<VifPolicy> {
        &self.policy
    }

    /// The features the frontend acked (0 before `SET_FEATURES`).
    pub fn negotiated(&self) -> Negotiated {
        Negotiated::from_bits(self.acked.load(Ordering::Acquire))
    }

    /// The port's id on its segment while a frontend is connected.
    pub fn port_id(&self) -> Option<PortId> {
        match self.port_id.load(Ordering::Acquire) {
            NO_PORT => None,
            id => Some(PortId(id)),
        }
    }

    /// Busy polling: workers re-arm themselves after every pass instead of waiting for kicks.
    pub fn set_busy_poll(&self, enabled: bool) {
        self.busy_poll.store(enabled, Ordering::Release);
    }

    /// The id of the worker wake event: the first id `register_listener` accepts.
    pub fn evt_wake(&self) -> u16 {
        // num_queues <= 2 * 16: fits.
        (self.device.num_queues() + 1) as u16
    }

    /// The id of the worker's TX refill timer.
    pub fn evt_refill(&self) -> u16 {
        self.evt_wake().saturating_add(1)
    }

    /// Registers each worker's wake eventfd and refill timer on that worker's epoll. Call once per
    /// `VhostUserDaemon`, right after creating it (see the module docs).
    /// Generic over the handler's backend so a wrapper around `Arc<NetBackend>` works too.
    pub fn register_listeners<T: VhostUserBackend>(
        &self,
        handlers: &[Arc<VringEpollHandler<T>>],
    ) -> Result<(), BackendError> {
        for (worker, handler) in handlers.iter().enumerate() {
            let Some(inbox) = self.port.inbox(worker) else {
                continue;
            };
            use std::os::fd::AsRawFd;
            handler
                .register_listener(
                    inbox.wake_fd().as_raw_fd(),
                    EventSet::IN,
                    u64::from(self.evt_wake()),
                )
                .map_err(|source| BackendError::RegisterWake { worker, source })?;
            let Some(state) = self.workers.get(worker) else {
                continue;
            };
            let refill = state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .refill
                .as_raw_fd();
            handler
                .register_listener(refill, EventSet::IN, u64::from(self.evt_refill()))
                .map_err(|source| BackendError::RegisterWake { worker, source })?;
        }
        Ok(())
    }

    /// Creates a `VhostUserDaemon` serving this backend, with the wake listeners registered.
    pub fn new_daemon(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<VhostUserDaemon<Arc<NetBackend>>, BackendError> {
        let memory = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let daemon = VhostUserDaemon::new(name.to_owned(), self.clone(), memory).map_err(|e| {
            BackendError::Daemon {
                vif: self.spec.id.to_string(),
                reason: e.to_string(),
            }
        })?;
        self.register_listeners(&daemon.get_epoll_handlers())?;
        Ok(daemon)
    }

    /// Feeds sampled records of the frames this VIF transmits to `log`, one cache per worker.
    /// Call before the VIF is served (the daemon does, right after [`Self::new`]).
    pub fn enable_flow_log(&self, log: &crate::flowlog::FlowLog) {
        for worker in self.workers.iter() {
            let mut worker = worker.lock().unwrap_or_else(|e| e.into_inner());
            worker.tx.flows = Some(log.sampler(self.spec.id.as_str()));
        }
    }

    /// The frontend went away: leave the segment and forget per-connection state. Idempotent;
    /// the next `SET_FEATURES` attaches the port again.
    pub fn disconnected(&self) {
        let _guard = self.attach_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.port.set_serving(false);
        if let Some(id) = self.port_id() {
            self.segment.detach(id);
            self.port_id.store(NO_PORT, Ordering::Release);
        }
        self.acked.store(0, Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Puts the port (back) on its segment, with no MACs learned.
    fn attach(&self) {
        let _guard = self.attach_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(id) = self.port_id() {
            self.segment.detach(id);
        }
        match self.segment.attach(self.port.clone()) {
            Ok(id) => {
                self.port_id.store(id.0, Ordering::Release);
                self.port.set_serving(true);
            }
            Err(error) => {
                self.port_id.store(NO_PORT, Ordering::Release);
                log::error!("VIF {}: {error}", self.spec.id);
            }
        }
    }

    fn memory(&self) -> Option<Memory> {
        self.mem.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs TX passes on the pair's transmit queue until it is empty or the budget runs out.
    fn run_tx(
        &self,
        worker: &mut Worker,
        thread_id: usize,
        vring: &VringRwLock,
        mem: &GuestMemoryMmap,
    ) {
        worker.tx_rearm = false;
        if worker.tx_broken {
            return;
        }
        let Some(port) = self.port_id() else {
            return;
        };
        let busy_poll = self.busy_poll.load(Ordering::Acquire);
        let ctx = TxContext {
            negotiated: self.negotiated(),
            mtu: self.device.mtu,
            segment: &self.segment,
            pipeline: Pipeline::new(port),
            flow_hint: u16::try_from(thread_id).unwrap_or(0),
            now: Instant::now(),
        };
        let mut state = vring.get_mut();
        if !state.get_queue().ready() || !state.is_enabled() {
            return;
        }
        loop {
            let _ = state.disable_notification();
            let outcome =
                worker
                    .tx
                    .process_with(state.get_queue_mut(), mem, &ctx, Some(&self.policy));
            if outcome.chains > 0 {
                let stats = self.stats.queue_pair(thread_id).map(|pair| &pair.tx);
                signal(&mut state, &mut worker.tx.batch, stats);
            }
            if outcome.broken {
                worker.tx_broken = true;
                log::warn!(
                    "VIF {}: TX queue {thread_id} avail index jumped past the ring; queue stopped until reset",
                    self.spec.id
                );
                break;
            }
            if let Some(retry_in_ns) = outcome.throttled {
                // Kicks stay off: the held chain goes when the timer fires, not sooner.
                worker.refill.arm(retry_in_ns);
                break;
            }
            if outcome.budget_exhausted || busy_poll {
                worker.tx_rearm = true;
                self.wake_self(thread_id);
                break;
            }
            // Re-enable kicks, then look again: a chain added in between would get no kick.
            match state.enable_notification() {
                Ok(true) => continue,
                _ => break,
            }
        }
    }

    /// Delivers the backlog into the pair's receive queue.
    fn run_rx(
        &self,
        worker: &mut Worker,
        thread_id: usize,
        vring: &VringRwLock,
        mem: &GuestMemoryMmap,
    ) {
        if worker.backlog.is_empty() {
            return;
        }
        let mut state = vring.get_mut();
        if worker.rx_broken || !state.get_queue().ready() || !state.is_enabled() {
            // § "Ring states": a disabled ring must not be given packets.
            drop_backlog(
                &mut worker.backlog,
                &mut worker.rx.batch,
                DropReason::PortDown,
            );
            return;
        }
        let negotiated = self.negotiated();
        let now = clock_ns(Instant::now());
        let mut policy = self.policy.burst(Direction::Ingress, now, thread_id);
        for _ in 0..MAX_RX_RETRIES {
            let outcome = worker.rx.deliver_with(
                state.get_queue_mut(),
                mem,
                &mut worker.backlog,
                negotiated,
                &mut policy,
            );
            if outcome.chains > 0 {
                let stats = self.stats.queue_pair(thread_id).map(|pair| &pair.rx);
                signal(&mut state, &mut worker.rx.batch, stats);
            }
            if outcome.broken {
                worker.rx_broken = true;
                drop_backlog(
                    &mut worker.backlog,
                    &mut worker.rx.batch,
                    DropReason::QueueError,
                );
                log::warn!(
                    "VIF {}: RX queue {thread_id} avail index jumped past the ring; queue stopped until reset",
                    self.spec.id
                );
                return;
            }
            if outcome.budget_exhausted {
                self.wake_self(thread_id);
                return;
            }
            if !outcome.starved {
                // Buffers suffice: no RX kicks needed until we starve again.
                let _ = state.disable_notification();
                return;
            }
            // Starved: ask for a kick when buffers arrive; if some did meanwhile, go again.
            let more = matches!(state.enable_notification(), Ok(true));
            if !more {
                return;
            }
        }
        // Buffers are there but the retries ran out; the guest decided its kick against the old
        // avail_event, so none will come: come back on our own.
        self.wake_self(thread_id);
    }

    fn wake_self(&self, thread_id: usize) {
        if let Some(inbox) = self.port.inbox(thread_id) {
            inbox.wake();
        }
    }

    fn publish(&self, worker: &mut Worker, thread_id: usize) {
        if let Some(pair) = self.stats.queue_pair(thread_id) {
            publish_batch(&pair.tx, &mut worker.tx.batch);
            publish_batch(&pair.rx, &mut worker.rx.batch);
        }
    }
}

impl Drop for NetBackend {
    fn drop(&mut self) {
        if let Some(id) = self.port_id() {
            self.segment.detach(id);
        }
    }
}

fn publish_batch(stats: &QueueStats, batch: &mut StatsBatch) {
    if !batch.is_empty() {
        stats.publish(batch);
    }
}

fn drop_backlog(backlog: &mut FrameArena, batch: &mut StatsBatch, reason: DropReason) {
    for _ in 0..backlog.len() {
        batch.record_drop(reason);
    }
    backlog.clear();
}

/// Publishes the pass's counters, then signals used buffers if the guest asked (`EVENT_IDX`
/// used_event or no `NO_INTERRUPT`). Publishing first means a guest that sees the buffers also
/// sees the counters that describe them.
fn signal(
    state: &mut vhost_user_backend::VringState<Memory>,
    batch: &mut StatsBatch,
    stats: Option<&QueueStats>,
) {
    let notify = state.needs_notification().unwrap_or(true);
    if notify {
        batch.record_notification_sent();
    } else {
        batch.record_notification_suppressed();
    }
    if let Some(stats) = stats {
        publish_batch(stats, batch);
    }
    if notify {
        // Fails only if the call eventfd is gone (frontend leaving): nothing to do.
        let _ = state.signal_used_queue();
    }
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        self.device.num_queues()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.device.queue_size)
    }

    fn features(&self) -> u64 {
        self.device.features()
    }

    fn acked_features(&self, features: u64) {
        // The handler already refused bits we did not offer; mask anyway.
        self.acked
            .store(features & self.device.features(), Ordering::Release);
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.attach();
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.device.protocol_features()
    }

    fn reset_device(&self) {
        self.disconnected();
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The library sets EVENT_IDX on every vring before calling this; the datapath reads it
        // from the queue (`needs_notification`, `enable_notification`).
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.device.read_config(offset, size)
    }

    fn update_memory(&self, mem: Memory) -> io::Result<()> {
        *self.mem.write().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn queues_per_thread(&self) -> Vec<u64> {
        self.device.queues_per_thread()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // A fresh pair per worker per daemon: the library keeps the notifier and fires it when
        // the connection ends (`serve`) or on `VringEpollHandler::send_exit_event`.
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        // Never return an error for anything a guest did: the library ends the worker thread on
        // `Err`. Everything guest-triggered is a counted drop inside the paths.
        let Some(worker) = self.workers.get(thread_id) else {
            return Ok(());
        };
        let mut worker = worker.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Acquire);
        if worker.generation != generation {
            worker.reset(generation);
        }
        let (Some(rx_vring), Some(tx_vring)) = (vrings.get(RX_QUEUE), vrings.get(TX_QUEUE)) else {
            return Ok(());
        };
        let Some(memory) = self.memory() else {
            return Ok(());
        };
        let mem = memory.memory();
        let worker = &mut *worker;
        let inbox = self.port.inbox(thread_id);
        match device_event {
            EVT_RX_KICK => {}
            EVT_TX_KICK => self.run_tx(worker, thread_id, tx_vring, &mem),
            event if event == self.evt_wake() => {
                if let Some(inbox) = inbox {
                    inbox.consume_wake();
                }
                if worker.tx_rearm {
                    self.run_tx(worker, thread_id, tx_vring, &mem);
                }
            }
            event if event == self.evt_refill() => {
                if worker.refill.fired() {
                    self.run_tx(worker, thread_id, tx_vring, &mem);
                }
            }
            _ => return Ok(()),
        }
        // Every event also moves frames from the inbox to the guest: an RX kick means new
        // buffers, a wake means new frames, and a TX pass may have been a long time.
        if worker.backlog.is_empty() {
            if let Some(inbox) = inbox {
                inbox.take(&mut worker.backlog);
            }
        }
        self.run_rx(worker, thread_id, rx_vring, &mem);
        // Frames pushed while the backlog was being delivered owed no wake-up (one was already
        // pending): look again, and come back for them, or a guest that only receives stalls.
        if worker.backlog.is_empty() {
            if let Some(inbox) = inbox {
                inbox.take(&mut worker.backlog);
                if !worker.backlog.is_empty() {
                    self.wake_self(thread_id);
                }
            }
        }
        self.publish(worker, thread_id);
        Ok(())
    }
}
