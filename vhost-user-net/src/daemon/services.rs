//! The daemon's own endpoints beside the VIF sockets: the control socket and the metrics
//! listener. Both are bound by [`Daemon::start`] (a configured address that cannot be bound
//! fails the start before any VMM is served) and served by [`Daemon::run`] as event-manager
//! subscribers in the main thread, next to the signal and FDB ageing subscribers.

use std::cell::RefCell;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};

use super::{Daemon, DaemonError};
use crate::config::DaemonConfig;
use crate::control::server::{ControlListener, ControlProtocol, CONTROL_LIMITS};
use crate::control::ControlConfig;
use crate::flowlog::FlowLog;
use crate::metrics::histogram::ProvisioningTimes;
use crate::metrics::http::MetricsHttp;
use crate::metrics::HTTP_LIMITS;
use crate::stream_server::StreamServer;

/// The endpoints and daemon-wide state the control plane and the metrics read.
pub struct Services {
    pub(super) started_at: Instant,
    pub(super) provisioning: Arc<ProvisioningTimes>,
    control: Option<ControlListener>,
    control_path: Option<PathBuf>,
    metrics: Option<TcpListener>,
    metrics_addr: Option<SocketAddr>,
    /// Running when `[flow_log]` is enabled; every new VIF's workers feed it.
    pub(super) flow_log: Option<FlowLog>,
}

impl Services {
    /// Binds the control socket and the metrics listener as `config` says.
    pub(super) fn bind(config: &DaemonConfig) -> Result<Services, DaemonError> {
        let control = bind_control(&config.control)?;
        let control_path = control.as_ref().map(|c| c.path().to_owned());
        let metrics = crate::metrics::bind(&config.metrics)?;
        let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
        if let Some(path) = &control_path {
            log::info!("control socket: {}", path.display());
        }
        if let Some(addr) = metrics_addr {
            log::info!("metrics: http://{addr}/metrics");
        }
        let flow_log = if config.flow_log.enabled {
            Some(FlowLog::start(&config.flow_log)?)
        } else {
            None
        };
        Ok(Services {
            started_at: Instant::now(),
            provisioning: Arc::default(),
            control,
            control_path,
            metrics,
            metrics_addr,
            flow_log,
        })
    }
}

fn bind_control(config: &ControlConfig) -> Result<Option<ControlListener>, DaemonError> {
    let Some(path) = config.path() else {
        return Ok(None);
    };
    match ControlListener::bind(&path) {
        Ok(listener) => Ok(Some(listener)),
        // The default path is best effort: another daemon on the same runtime directory has it.
        Err(e) if config.socket.is_none() && e.is_in_use() => {
            log::warn!(
                "{e}; running without a control socket (set [control] socket or --control-socket)"
            );
            Ok(None)
        }
        Err(e) => Err(DaemonError::Control(e)),
    }
}

impl Daemon {
    /// The control socket's path, when it is served.
    pub fn control_socket(&self) -> Option<&Path> {
        self.services.control_path.as_deref()
    }

    /// The metrics endpoint's address, when it is served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.services.metrics_addr
    }

    pub fn started_at(&self) -> Instant {
        self.services.started_at
    }

    /// The flow log, when `[flow_log]` is enabled.
    pub fn flow_log(&self) -> Option<&FlowLog> {
        self.services.flow_log.as_ref()
    }
}

/// Adds the control and metrics subscribers for the shared daemon to `manager`.
pub(super) fn add_subscribers(
    daemon: &Rc<RefCell<Daemon>>,
    manager: &mut EventManager<Box<dyn MutEventSubscriber>>,
) -> Result<(), DaemonError> {
    let (control, metrics) = {
        let mut shared = daemon.borrow_mut();
        (
            shared.services.control.take(),
            shared.services.metrics.take(),
        )
    };
    if let Some(listener) = control {
        let protocol = ControlProtocol::new(Rc::clone(daemon));
        let server = StreamServer::new("control socket", listener, protocol, CONTROL_LIMITS)
            .map_err(DaemonError::Timer)?;
        manager.add_subscriber(Box::new(server));
    }
    if let Some(listener) = metrics {
        let source = Rc::clone(daemon);
        let http = MetricsHttp::new(Box::new(move || source.borrow().scrape()));
        let server = StreamServer::new("metrics", listener, http, HTTP_LIMITS)
            .map_err(DaemonError::Timer)?;
        manager.add_subscriber(Box::new(server));
    }
    Ok(())
}
