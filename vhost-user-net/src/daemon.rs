//! The daemon: one vhost-user socket per VIF, many VIFs per process.
//!
//! [`Daemon::start`] turns a checked [`DaemonConfig`] into running VIFs: it binds every
//! server-mode socket first (so a socket in use refuses the whole start before anything is
//! served), builds one [`NetBackend`] per VIF on its segment, and hands each to a
//! [`supervisor::VifSupervisor`] thread. [`Daemon::run`] then runs the daemon's own events on
//! rust-vmm's `event-manager` in the calling thread (signals, FDB ageing, the control socket and
//! the metrics endpoint) until SIGINT or SIGTERM, and shuts down: every supervisor is told to
//! stop at once, then each is joined and its socket removed.
//!
//! - [`socket`]: binding, stale-socket recovery, removal of only our own files;
//! - [`supervisor`]: per-VIF thread, server and client mode, reconnect and backoff;
//! - [`session`]: a backend's view for one connection (its exit events);
//! - [`stop`]: stopping a supervisor wherever it waits;
//! - [`events`]: signalfd and the FDB ageing timer as event-manager subscribers;
//! - [`status`]: a VIF's link state, provisioning times and batch-time histogram;
//! - [`runtime`]: starting and removing VIFs while running, for the control socket;
//! - [`policy`]: the policy library (`[[acl]]`, `[[qos]]`) and changing a running VIF's policy;
//! - [`services`]: the control socket and metrics endpoint;
//! - [`vfs`]: SR-IOV VIFs (no socket: a VF handed to the VMM), at start and while running;
//! - [`uplinks`]: the uplinks' counters for the metrics.

pub mod events;
pub mod policy;
pub mod runtime;
pub mod services;
pub mod session;
pub mod socket;
pub mod status;
pub mod stop;
pub mod supervisor;
pub mod uplinks;
pub mod vfs;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use vif_core::model::{UplinkSpec, VifId};

use crate::backend::{BackendError, NetBackend};
use crate::config::policy::{PolicyConfigError, PolicyLibrary};
use crate::config::{default_socket_dir, DaemonConfig, VifConfig};
use crate::control::server::ControlError;
use crate::metrics::MetricsError;
use crate::policy::PolicyError;
use crate::switch::Segment;
use crate::uplink::sriov::{self, DaemonVfLink, SriovError, SriovManager, VfAssignment};
use crate::uplink::vlan::{VlanError, VlanUplinks};
use crate::uplink::vxlan::{VxlanError, VxlanUplinks};
use events::{FdbAgeing, ShutdownOnSignal, SignalFd, FDB_AGEING_TICK};
use runtime::VifRecord;
use services::Services;
use socket::SocketError;
use supervisor::{ConnectionHooks, SupervisorError, VifSupervisor};

/// Why the daemon cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("vif {vif}: {source}")]
    Socket {
        vif: VifId,
        #[source]
        source: SocketError,
    },
    #[error("vif {vif}: cannot build the backend: {source}")]
    Backend {
        vif: VifId,
        #[source]
        source: BackendError,
    },
    #[error(transparent)]
    Policy(#[from] PolicyConfigError),
    #[error("vif {vif}: {source}")]
    PolicyApply {
        vif: VifId,
        #[source]
        source: PolicyError,
    },
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error("cannot set up the event manager: {0:?}")]
    EventManager(event_manager::Error),
    #[error("cannot arm the FDB ageing timer: {0}")]
    Timer(#[source] std::io::Error),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    FlowLog(#[from] crate::flowlog::FlowLogError),
    #[error("vif {vif}: {source}")]
    Vlan {
        vif: VifId,
        #[source]
        source: VlanError,
    },
    #[error("vif {vif}: {source}")]
    Vxlan {
        vif: VifId,
        #[source]
        source: VxlanError,
    },
    #[error(transparent)]
    Sriov(#[from] SriovError),
}

/// The datapath's contract (see `backend.rs`): wake listeners on every new handler, and leave
/// the segment when the frontend goes.
impl ConnectionHooks for NetBackend {
    type Error = BackendError;

    fn session_created<T: vhost_user_backend::VhostUserBackend>(
        &self,
        handlers: &[Arc<vhost_user_backend::VringEpollHandler<T>>],
    ) -> Result<(), BackendError> {
        self.register_listeners(handlers)
    }

    fn session_ended(&self) {
        self.disconnected();
    }
}

/// A running daemon. Dropping it stops every VIF and removes the sockets it created.
pub struct Daemon {
    supervisors: Vec<VifSupervisor>,
    /// One per segment name, shared by the VIFs on it.
    segments: BTreeMap<String, Arc<Segment>>,
    vifs: BTreeMap<VifId, VifRecord>,
    services: Services,
    /// The parent interfaces of VLAN VIFs: one AF_PACKET socket each, shared by their VIDs.
    vlans: VlanUplinks,
    /// The VXLAN tunnel endpoints: one per (local address, port), shared by their VNIs.
    vxlans: VxlanUplinks,
    /// SR-IOV VFs handed to VMMs (such VIFs have no socket, backend or supervisor); open when
    /// the config has SR-IOV VIFs or a previous daemon left VFs to collect.
    sriov: Option<SriovManager<DaemonVfLink>>,
    /// The SR-IOV VIFs' configs, by id (see [`vfs`]).
    vf_vifs: BTreeMap<VifId, VifConfig>,
    /// The `[[acl]]` and `[[qos]]` tables VIFs refer to, as last configured.
    policies: PolicyLibrary,
    /// Each new VIF's conntrack settings (`[conntrack]`).
    conntrack: vif_core::acl::ConntrackConfig,
}

fn is_sriov(vif: &VifConfig) -> bool {
    matches!(vif.spec.uplink, UplinkSpec::SriovVf(_))
}

/// The segment a VIF's uplink puts it on. Local uplinks name theirs; an overlay or VLAN is one
/// broadcast domain per VNI or per (parent, VLAN id); an SR-IOV VF is a segment of its own.
pub fn segment_name(vif: &VifId, uplink: &UplinkSpec) -> String {
    match uplink {
        UplinkSpec::Local(local) => local.segment.clone(),
        UplinkSpec::Vxlan(vxlan) => format!("vxlan-{}", vxlan.vni),
        UplinkSpec::Vlan(vlan) => format!("vlan-{}-{}", vlan.parent, vlan.vid),
        UplinkSpec::SriovVf(_) => format!("sriov-{vif}"),
    }
}

impl Daemon {
    /// Binds the sockets, builds the backends and starts one supervisor per VIF, then binds the
    /// control socket and the metrics endpoint (served by [`Self::run`]). On any error,
    /// whatever was started is stopped and the sockets bound so far are removed.
    pub fn start(config: &DaemonConfig) -> Result<Daemon, DaemonError> {
        // The provisioning clock of the file's VIFs starts with the start.
        let requested_at = Instant::now();
        let mut endpoints = Vec::with_capacity(config.vifs.len());
        for vif in config.vifs.iter().filter(|vif| !is_sriov(vif)) {
            endpoints.push(Daemon::endpoint(vif)?);
        }
        // SR-IOV state lives beside the default sockets (one lock per run directory).
        let run_dir = default_socket_dir();
        let sriov = if config.vifs.iter().any(is_sriov) || sriov::has_state(&run_dir) {
            Some(SriovManager::open_system(&run_dir)?)
        } else {
            None
        };
        let mut daemon = Daemon {
            supervisors: Vec::with_capacity(config.vifs.len()),
            segments: BTreeMap::new(),
            vifs: BTreeMap::new(),
            services: Services::bind(config)?,
            vlans: VlanUplinks::new(),
            vxlans: VxlanUplinks::new(),
            sriov,
            vf_vifs: BTreeMap::new(),
            policies: config.policy.clone(),
            conntrack: config.conntrack,
        };
        let socket_vifs = config.vifs.iter().filter(|vif| !is_sriov(vif));
        for (vif, endpoint) in socket_vifs.zip(endpoints) {
            daemon.spawn_vif(vif, endpoint, requested_at)?;
        }
        for vif in config.vifs.iter().filter(|vif| is_sriov(vif)) {
            daemon.allocate_vf(vif)?;
        }
        // VFs a crashed daemon left to VIFs no longer configured go back to the host.
        if let Some(sriov) = daemon.sriov.as_mut() {
            sriov.collect_garbage();
        }
        Ok(daemon)
    }

    /// The sockets this daemon bound (server-mode VIFs).
    pub fn socket_paths(&self) -> Vec<PathBuf> {
        self.supervisors
            .iter()
            .filter_map(|s| s.socket_path().map(PathBuf::from))
            .collect()
    }

    pub fn backend(&self, vif: &str) -> Option<&Arc<NetBackend>> {
        self.vifs.get(vif).map(|record| &record.backend)
    }

    /// The VF handed to SR-IOV VIF `vif`, with its VMM arguments
    /// ([`VfAssignment::qemu_args`], [`VfAssignment::cloud_hypervisor_args`]).
    pub fn vf_assignment(&self, vif: &str) -> Option<&VfAssignment> {
        self.sriov.as_ref()?.assignment(vif)
    }

    /// Puts a VIF's uplink port on its segment: the VLAN port of its (parent, VID), or the
    /// VXLAN port of its VNI. Called by `spawn_vif` once the segment exists.
    pub(super) fn attach_uplink(
        &mut self,
        vif: &VifConfig,
        segment: &Arc<Segment>,
    ) -> Result<(), DaemonError> {
        if let UplinkSpec::Vlan(vlan) = &vif.spec.uplink {
            self.vlans
                .attach(vlan, segment)
                .map_err(|source| DaemonError::Vlan {
                    vif: vif.spec.id.clone(),
                    source,
                })?;
        }
        if let UplinkSpec::Vxlan(vxlan) = &vif.spec.uplink {
            self.vxlans
                .attach(vxlan, segment)
                .map_err(|source| DaemonError::Vxlan {
                    vif: vif.spec.id.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Prepares the VF of SR-IOV VIF `vif` and logs what the VMM needs: the VIF has no
    /// vhost-user socket; the guest drives the VF itself.
    fn allocate_vf(&mut self, vif: &VifConfig) -> Result<(), DaemonError> {
        Daemon::warn_unenforced_policy(vif);
        self.assign_vf(vif)
    }

    /// Runs the daemon's events in this thread until a shutdown signal arrives, then shuts
    /// down. Returns the signal that stopped it.
    pub fn run(self, signals: SignalFd) -> Result<libc::c_int, DaemonError> {
        let exit = Rc::new(Cell::new(None));
        let mut manager = EventManager::<Box<dyn MutEventSubscriber>>::new()
            .map_err(DaemonError::EventManager)?;
        manager.add_subscriber(Box::new(ShutdownOnSignal::new(signals, Rc::clone(&exit))));
        // Shared with the control socket, which adds and removes VIFs, and the metrics; all of
        // them run in this thread, one event at a time.
        let daemon = Rc::new(RefCell::new(self));
        let source = Rc::clone(&daemon);
        let segments = Box::new(move || source.borrow().segments.values().cloned().collect());
        let ageing =
            FdbAgeing::with_source(segments, FDB_AGEING_TICK).map_err(DaemonError::Timer)?;
        manager.add_subscriber(Box::new(ageing));
        services::add_subscribers(&daemon, &mut manager)?;

        let mut reported_down = BTreeSet::new();
        let signal = loop {
            if let Some(signal) = exit.get() {
                break signal;
            }
            if let Err(e) = manager.run() {
                log::error!("event manager failed: {e:?}; shutting down");
                break libc::SIGTERM;
            }
            for supervisor in &daemon.borrow().supervisors {
                if supervisor.is_finished() && reported_down.insert(supervisor.vif().to_owned()) {
                    // Only a bug ends a supervisor early; the other VIFs keep running.
                    log::error!(
                        "vif {}: supervisor ended; the VIF is down",
                        supervisor.vif()
                    );
                }
            }
        };
        // The subscribers hold the other references; dropping them closes the control socket
        // and the metrics endpoint.
        drop(manager);
        daemon.borrow_mut().stop_all();
        Ok(signal)
    }

    /// Stops every VIF: all are told at once, so slow ones do not delay the others' stop, then
    /// each is joined and its socket removed.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for supervisor in &self.supervisors {
            supervisor.request_stop();
        }
        for supervisor in self.supervisors.drain(..) {
            let vif = supervisor.vif().to_owned();
            supervisor.join();
            log::debug!("vif {vif}: stopped");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop_all();
    }
}
