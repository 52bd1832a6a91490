//! One supervisor thread per VIF: it owns the VIF's vhost-user socket and keeps a frontend
//! connection going for the daemon's lifetime.
//!
//! - Server mode: wait for a connection, serve it, and when the frontend goes away (VM shut
//!   down, QEMU restarted) listen again. The socket stays bound the whole time.
//! - Client mode: connect to the VMM's socket, retrying with exponential backoff
//!   ([`BACKOFF_INITIAL`] doubling to [`BACKOFF_MAX`]) so that a restarted daemon reattaches to
//!   running VMs; after a disconnect, connect again. Logging is per state change, not per retry.
//!
//! Each connection gets its own `VhostUserDaemon` over the VIF's one backend (see
//! [`super::session`]), so counters and the switch port survive reconnects. A connection that
//! fails (a misbehaving frontend, a protocol error) ends that connection only: the thread logs it
//! and goes back to listening or connecting, and other VIFs never notice.
//!
//! Stopping: [`StopSignal::request`] (see [`super::stop`]) wakes the thread wherever it waits (epoll on an eventfd, or
//! the connection's `ShutdownHandle`), and [`VifSupervisor::join`] then removes the socket.

use std::io;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::bitmap::BitmapReplace;
use vhost_user_backend::{
    Error as DaemonLibError, VhostUserBackend, VhostUserDaemon, VringEpollHandler,
};
use vm_memory::mmap::NewBitmap;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::Epoll;

use super::session::SessionBackend;
use super::socket::BoundSocket;
use super::status::{LinkState, VifStatus};
use super::stop::{Fired, StopSignal, Waiter};

/// First wait before retrying a connect (client mode) or a failed connection setup.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Longest wait between retries; also bounds how long a VM waits for a restarted daemon.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A client-mode session shorter than this, or one that ended in an error, is followed by a
/// back-off before reconnecting: a frontend that accepts and then drops us (or that we refuse)
/// must not make us reconnect hundreds of times a second.
pub const HEALTHY_SESSION: Duration = Duration::from_secs(1);

/// Why a VIF's supervisor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("vif {vif}: cannot create the stop eventfd: {source}")]
    StopEvent {
        vif: String,
        #[source]
        source: io::Error,
    },
    #[error("vif {vif}: cannot create the epoll instance: {source}")]
    Epoll {
        vif: String,
        #[source]
        source: io::Error,
    },
    #[error("vif {vif}: cannot duplicate the listener of {path:?}: {source}")]
    Listener {
        vif: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("vif {vif}: socket path {path:?} is not UTF-8 (vhost-user-backend takes a &str)")]
    NonUtf8Path { vif: String, path: PathBuf },
    #[error("vif {vif}: cannot spawn the supervisor thread: {source}")]
    Spawn {
        vif: String,
        #[source]
        source: io::Error,
    },
}

/// What a VIF's backend needs to hear about connections, beyond `VhostUserBackend`.
pub trait ConnectionHooks {
    type Error: std::fmt::Display;

    /// A connection's handler was built: register extra fds on its vring workers' epolls
    /// (before any frontend message arrives).
    fn session_created<T: VhostUserBackend>(
        &self,
        handlers: &[Arc<VringEpollHandler<T>>],
    ) -> Result<(), Self::Error>;

    /// A connected frontend went away (or was cut at shutdown); its vring workers have been
    /// joined. Not called for connection attempts that never connected.
    fn session_ended(&self);
}

/// Why one connection could not be set up (the VIF keeps trying).
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot create exit events: {0}")]
    ExitEvents(io::Error),
    #[error("cannot build the vhost-user handler: {0}")]
    Handler(DaemonLibError),
    #[error("cannot attach the backend to the handler: {0}")]
    Hooks(String),
    #[error("{0}")]
    Connect(DaemonLibError),
}

/// Where a VIF's frontend is.
#[derive(Debug)]
pub enum Endpoint {
    /// Server mode: accept on this socket.
    Listen(BoundSocket),
    /// Client mode: connect to the VMM's socket at this path.
    Connect(PathBuf),
}

/// A running VIF supervisor.
pub struct VifSupervisor {
    vif: String,
    stop: Arc<StopSignal>,
    thread: Option<JoinHandle<()>>,
    /// Kept here so the socket file is removed once the thread has ended.
    socket: Option<BoundSocket>,
    status: Arc<VifStatus>,
}

impl VifSupervisor {
    /// Starts serving `backend` at `endpoint` in a new thread, with a status of its own.
    pub fn spawn<B>(
        vif: &str,
        backend: Arc<B>,
        endpoint: Endpoint,
    ) -> Result<VifSupervisor, SupervisorError>
    where
        B: VhostUserBackend + ConnectionHooks + 'static,
        B::Bitmap: BitmapReplace + NewBitmap + Clone + Send + Sync,
        B::Vring: Clone + Send + Sync,
    {
        let workers = backend.queues_per_thread().len();
        let status = VifStatus::new(Instant::now(), workers, Arc::default());
        VifSupervisor::spawn_with_status(vif, backend, endpoint, Arc::new(status))
    }

    /// Starts serving `backend` at `endpoint` in a new thread, reporting its connection state,
    /// provisioning stages and batch times to `status`.
    pub fn spawn_with_status<B>(
        vif: &str,
        backend: Arc<B>,
        endpoint: Endpoint,
        status: Arc<VifStatus>,
    ) -> Result<VifSupervisor, SupervisorError>
    where
        B: VhostUserBackend + ConnectionHooks + 'static,
        B::Bitmap: BitmapReplace + NewBitmap + Clone + Send + Sync,
        B::Vring: Clone + Send + Sync,
    {
        let stop = Arc::new(
            StopSignal::new().map_err(|source| SupervisorError::StopEvent {
                vif: vif.to_owned(),
                source,
            })?,
        );
        let epoll = Epoll::new().map_err(|source| SupervisorError::Epoll {
            vif: vif.to_owned(),
            source,
        })?;
        let waiter = Waiter::new(epoll, &stop).map_err(|source| SupervisorError::Epoll {
            vif: vif.to_owned(),
            source,
        })?;
        // The socket is bound (or the VMM's path known) before the thread runs: report that.
        status.set_state(match endpoint {
            Endpoint::Listen(_) => LinkState::Listening,
            Endpoint::Connect(_) => LinkState::Connecting,
        });
        let (socket, task) = match endpoint {
            Endpoint::Listen(bound) => {
                let listener = bound
                    .listener()
                    .map_err(|source| SupervisorError::Listener {
                        vif: vif.to_owned(),
                        path: bound.path().to_owned(),
                        source,
                    })?;
                (Some(bound), Task::Serve(listener))
            }
            Endpoint::Connect(path) => {
                let path_str = path
                    .to_str()
                    .ok_or_else(|| SupervisorError::NonUtf8Path {
                        vif: vif.to_owned(),
                        path: path.clone(),
                    })?
                    .to_owned();
                (None, Task::Connect(path_str))
            }
        };
        let context = Context {
            vif: vif.to_owned(),
            backend,
            stop: Arc::clone(&stop),
            waiter,
            status: Arc::clone(&status),
        };
        let thread = std::thread::Builder::new()
            .name(format!("vif-{vif}"))
            .spawn(move || match task {
                Task::Serve(listener) => context.serve(listener),
                Task::Connect(path) => context.connect(&path),
            })
            .map_err(|source| SupervisorError::Spawn {
                vif: vif.to_owned(),
                source,
            })?;
        Ok(VifSupervisor {
            vif: vif.to_owned(),
            stop,
            thread: Some(thread),
            socket,
            status,
        })
    }

    pub fn vif(&self) -> &str {
        &self.vif
    }

    /// The VIF's connection state and timings.
    pub fn status(&self) -> &Arc<VifStatus> {
        &self.status
    }

    /// The socket this daemon bound for the VIF (server mode only).
    pub fn socket_path(&self) -> Option<&Path> {
        self.socket.as_ref().map(BoundSocket::path)
    }

    /// Asks the thread to stop; [`Self::join`] waits for it.
    pub fn request_stop(&self) {
        self.stop.request();
    }

    /// Whether the thread has ended (it only ends on a stop request, or by a bug).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the thread, waits for it (its connection and vring workers end first), and removes
    /// the socket file.
    pub fn join(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.request();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                log::error!("vif {}: supervisor thread panicked", self.vif);
            }
        }
        // Dropping the bound socket removes the file if it is still ours.
        self.socket.take();
        self.status.set_state(LinkState::Stopped);
    }
}

impl Drop for VifSupervisor {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

enum Task {
    Serve(UnixListener),
    Connect(String),
}

struct Context<B> {
    vif: String,
    backend: Arc<B>,
    stop: Arc<StopSignal>,
    waiter: Waiter,
    status: Arc<VifStatus>,
}

/// A connection's `VhostUserDaemon`, built before connecting.
type Session<B> = VhostUserDaemon<SessionBackend<B>>;

impl<B> Context<B>
where
    B: VhostUserBackend + ConnectionHooks + 'static,
    B::Bitmap: BitmapReplace + NewBitmap + Clone + Send + Sync,
    B::Vring: Clone + Send + Sync,
{
    fn new_session(&self) -> Result<Session<B>, SessionError> {
        let backend = SessionBackend::new(Arc::clone(&self.backend), Arc::clone(&self.status))
            .map_err(SessionError::ExitEvents)?;
        let session = VhostUserDaemon::new(
            format!("vu-{}", self.vif),
            backend,
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(SessionError::Handler)?;
        self.backend
            .session_created(&session.get_epoll_handlers())
            .map_err(|e| SessionError::Hooks(e.to_string()))?;
        Ok(session)
    }

    /// Serves a connected session until the frontend leaves or a stop is requested. Dropping
    /// the session at the end joins its vring workers.
    /// Serves one connection until it ends; `true` if it ended as a normal hang-up.
    fn run_connected(&self, mut session: Session<B>) -> bool {
        self.stop.publish(session.shutdown_handle());
        self.status.connected();
        log::info!("vif {}: frontend connected", self.vif);
        let result = session.wait();
        self.stop.publish(None);
        drop(session);
        self.backend.session_ended();
        match result {
            Ok(()) => log::info!("vif {}: frontend disconnected", self.vif),
            // What serve() in vhost-user-backend also treats as a normal hang-up.
            Err(DaemonLibError::HandleRequest(
                VhostUserError::Disconnected | VhostUserError::PartialMessage,
            )) => log::info!("vif {}: frontend disconnected", self.vif),
            Err(e) if self.stop.is_requested() => {
                log::debug!("vif {}: connection closed for shutdown: {e}", self.vif);
                return true;
            }
            Err(e) => {
                log::warn!("vif {}: connection failed, dropped: {e}", self.vif);
                return false;
            }
        }
        true
    }

    /// Waits `delay` unless a stop comes first; `true` if stopping.
    fn pause(&self, delay: Duration) -> bool {
        match self.waiter.wait(Some(delay)) {
            Ok(fired) => fired.stop || self.stop.is_requested(),
            Err(e) => {
                log::error!("vif {}: epoll wait failed: {e}; stopping the VIF", self.vif);
                true
            }
        }
    }

    fn serve(self, listener: UnixListener) {
        if let Err(e) = self.waiter.watch_listener(&listener) {
            log::error!(
                "vif {}: cannot watch the socket: {e}; the VIF is down",
                self.vif
            );
            return;
        }
        // `Listener::from` keeps no path, so the library never unlinks the socket: the daemon
        // removes it at shutdown, and only if it is still ours (see `socket.rs`).
        let mut listener = Listener::from(listener);
        let mut backoff = BACKOFF_INITIAL;
        self.status.set_state(LinkState::Listening);
        self.status.socket_ready();
        log::info!("vif {}: listening", self.vif);
        loop {
            match self.waiter.wait(None) {
                Ok(Fired { stop: true, .. }) => return,
                Ok(Fired {
                    listener: false, ..
                }) => continue,
                Ok(_) => {}
                Err(e) => {
                    log::error!("vif {}: epoll wait failed: {e}; the VIF is down", self.vif);
                    return;
                }
            }
            if self.stop.is_requested() {
                return;
            }
            // The listener is readable, so the accept inside start() does not block.
            let started = self.new_session().and_then(|mut session| {
                session
                    .start(&mut listener)
                    .map(|()| session)
                    .map_err(SessionError::Connect)
            });
            match started {
                Ok(session) => {
                    backoff = BACKOFF_INITIAL;
                    self.run_connected(session);
                    self.status.set_state(LinkState::Listening);
                    log::info!("vif {}: listening again", self.vif);
                }
                Err(e) => {
                    // Back off so a persistent failure (fd exhaustion) does not spin on a
                    // listener that stays readable.
                    log::warn!("vif {}: cannot serve a connection: {e}", self.vif);
                    if self.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    fn connect(self, path: &str) {
        let mut backoff = BACKOFF_INITIAL;
        let mut announced = false;
        let mut pending: Option<Session<B>> = None;
        log::info!("vif {}: connecting to {path} (client mode)", self.vif);
        while !self.stop.is_requested() {
            // A session that failed to connect is reused: building one spawns vring workers.
            let session = match pending.take() {
                Some(session) => Ok(session),
                None => self.new_session(),
            };
            let attempt = session.and_then(|mut session| match session.start_client(path) {
                Ok(()) => Ok(session),
                Err(e) => {
                    pending = Some(session);
                    Err(SessionError::Connect(e))
                }
            });
            match attempt {
                Ok(session) => {
                    announced = false;
                    self.status.socket_ready();
                    let started = Instant::now();
                    let clean = self.run_connected(session);
                    self.status.set_state(LinkState::Reconnecting);
                    if self.stop.is_requested() {
                        return;
                    }
                    log::info!("vif {}: reconnecting to {path}", self.vif);
                    if clean && started.elapsed() >= HEALTHY_SESSION {
                        // A VMM that restarted is usually listening already: reconnect at once.
                        backoff = BACKOFF_INITIAL;
                        continue;
                    }
                    // A failed or very short session: the frontend refuses us (or we refuse
                    // it); back off as for an unreachable socket.
                    if self.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => {
                    if !announced {
                        log::info!(
                            "vif {}: {path} not reachable ({e}); retrying every {:?} up to {:?}",
                            self.vif,
                            BACKOFF_INITIAL,
                            BACKOFF_MAX
                        );
                        announced = true;
                    }
                    if self.pause(backoff) {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    use vhost::vhost_user::message::VhostUserProtocolFeatures;
    use vhost::vhost_user::Frontend;
    use vhost::VhostBackend;
    use vhost_user_backend::VringRwLock;
    use vmm_sys_util::epoll::EventSet;
    use vmm_sys_util::tempdir::TempDir;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(30);
    const VIRTIO_F_VERSION_1: u64 = 1 << 32;

    /// A device with two queues that does nothing, counting the connection hooks.
    #[derive(Default)]
    struct CountingBackend {
        created: AtomicUsize,
        ended: AtomicUsize,
    }

    impl VhostUserBackend for CountingBackend {
        type Bitmap = ();
        type Vring = VringRwLock;

        fn num_queues(&self) -> usize {
            2
        }
        fn max_queue_size(&self) -> usize {
            256
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1
        }
        fn protocol_features(&self) -> VhostUserProtocolFeatures {
            VhostUserProtocolFeatures::empty()
        }
        fn set_event_idx(&self, _enabled: bool) {}
        fn update_memory(&self, _mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
            Ok(())
        }
        fn handle_event(
            &self,
            _device_event: u16,
            _evset: EventSet,
            _vrings: &[VringRwLock],
            _thread_id: usize,
        ) -> io::Result<()> {
            Ok(())
        }
    }

    impl ConnectionHooks for CountingBackend {
        type Error = String;
        fn session_created<T: VhostUserBackend>(
            &self,
            handlers: &[Arc<VringEpollHandler<T>>],
        ) -> Result<(), String> {
            assert_eq!(
                handlers.len(),
                1,
                "one worker for the default queues_per_thread"
            );
            self.created.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn session_ended(&self) {
            self.ended.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Joins on another thread so a hung supervisor fails the test instead of hanging it.
    fn join_within(supervisor: VifSupervisor) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            supervisor.join();
            let _ = tx.send(());
        });
        rx.recv_timeout(DEADLINE)
            .expect("the supervisor must stop when asked");
    }

    fn frontend(path: &Path) -> Frontend {
        let stream = UnixStream::connect(path).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        Frontend::from_stream(stream, 2)
    }

    #[test]
    fn server_mode_serves_each_connection_with_a_fresh_session() {
        let dir = TempDir::new_with_prefix("/tmp/vif-supervisor-").unwrap();
        let path = dir.as_path().join("vif.sock");
        let backend = Arc::new(CountingBackend::default());
        let bound = BoundSocket::bind(&path).unwrap();
        let supervisor =
            VifSupervisor::spawn("t", Arc::clone(&backend), Endpoint::Listen(bound)).unwrap();
        for _ in 0..2 {
            let frontend = frontend(&path);
            // SET_OWNER fails on a claimed handler: success proves a fresh session.
            frontend.set_owner().unwrap();
            assert_eq!(frontend.get_features().unwrap(), VIRTIO_F_VERSION_1);
        }
        join_within(supervisor);
        assert_eq!(backend.created.load(Ordering::SeqCst), 2);
        assert_eq!(backend.ended.load(Ordering::SeqCst), 2);
        assert!(!path.exists(), "join removes the socket");
    }

    #[test]
    fn stop_cuts_a_live_connection() {
        let dir = TempDir::new_with_prefix("/tmp/vif-supervisor-").unwrap();
        let path = dir.as_path().join("vif.sock");
        let backend = Arc::new(CountingBackend::default());
        let bound = BoundSocket::bind(&path).unwrap();
        let supervisor =
            VifSupervisor::spawn("t", Arc::clone(&backend), Endpoint::Listen(bound)).unwrap();
        let frontend = frontend(&path);
        frontend.set_owner().unwrap();
        frontend.get_features().unwrap();
        join_within(supervisor);
        assert_eq!(backend.ended.load(Ordering::SeqCst), 1);
        assert!(frontend.get_features().is_err(), "the connection is closed");
    }

    #[test]
    fn client_mode_stops_while_retrying() {
        let dir = TempDir::new_with_prefix("/tmp/vif-supervisor-").unwrap();
        let path = dir.as_path().join("absent.sock");
        let backend = Arc::new(CountingBackend::default());
        let supervisor =
            VifSupervisor::spawn("t", Arc::clone(&backend), Endpoint::Connect(path)).unwrap();
        assert!(supervisor.socket_path().is_none());
        join_within(supervisor);
        assert_eq!(backend.ended.load(Ordering::SeqCst), 0, "never connected");
    }
}
