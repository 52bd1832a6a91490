//! A virtual guest: a vhost-user frontend with memfd guest memory that drives a backend as a
//! guest's virtio-net driver would. Tests, benchmarks and fuzzers of the backend use it; no VM
//! is needed.
//!
//! ```no_run
//! use std::time::Duration;
//! use vmm_integration::guest::{GuestConfig, VirtualGuest};
//! use vif_core::offload::VirtioNetHdr;
//!
//! let mut guest = VirtualGuest::connect("/run/vif/web-1.sock", GuestConfig::default())?;
//! guest.post_rx_buffers(0, 256, 1536)?;
//! guest.send(0, &VirtioNetHdr::default(), &[0u8; 60])?;
//! let (hdr, frame) = guest.recv_timeout(0, Duration::from_secs(1))?;
//! # let _ = (hdr, frame);
//! # Ok::<(), vmm_integration::guest::GuestError>(())
//! ```
//!
//! - [`memory`]: the memfd RAM and its bump allocator.
//! - [`vring`]: one split virtqueue from the driver side (free list, suppression, waits).
//! - [`handshake`]: the vhost-user negotiation and vring start.
//! - `net/`: virtio-net operations on queue pairs (RX queue `2 * qp`, TX queue `2 * qp + 1`,
//!   VIRTIO 1.2 § 5.1.2).
//! - [`raw`]: hostile access to a ring for tests of the backend's defences.
//!
//! Connection modes: [`VirtualGuest::connect`] dials a listening backend; [`VirtualGuest::listen`]
//! waits for a backend started in client mode (QEMU's `server=on`). Either way
//! [`VirtualGuest::reconnect`] sets the device up again on a new connection, fresh or resuming
//! the rings. Every wait takes a deadline; nothing blocks forever.

pub mod config;
pub mod error;
pub mod handshake;
pub mod memory;
mod net;
pub mod raw;
pub mod vring;

use std::io;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::Frontend;
use vhost::VhostBackend;
use vif_core::mac::MacAddr;

pub use config::{feature, GuestConfig, NetConfig, TxLayout};
pub use error::GuestError;
pub use handshake::Negotiated;
pub use memory::GuestRam;
pub use net::{PreparedFrame, RxBurst, MAX_TX_LEN};
pub use raw::{RawQueue, VringDesc};
pub use vring::RingStats;

use handshake::{enable_vring, negotiate, set_mem_table, start_vring};
use net::NetQueue;

/// How [`VirtualGuest::reconnect`] treats the rings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// Reset every ring to empty, as a rebooted driver would; buffers in flight are forgotten.
    Fresh,
    /// Keep the rings; the new backend starts at `used.idx` (QEMU's
    /// `virtio_queue_restore_last_avail_idx`), so chains available but unused are seen again.
    Resume,
}

#[derive(Debug)]
enum Endpoint {
    /// We dialled the backend's listening socket.
    Client(PathBuf),
    /// The backend dials us (it runs in client mode).
    Server {
        path: PathBuf,
        listener: UnixListener,
    },
}

/// A listening socket a backend in client mode connects to.
#[derive(Debug)]
pub struct GuestListener {
    path: PathBuf,
    listener: UnixListener,
    cfg: GuestConfig,
}

impl GuestListener {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for a backend to connect, then sets the device up.
    pub fn accept(&self, timeout: Duration) -> Result<VirtualGuest, GuestError> {
        let listener = self
            .listener
            .try_clone()
            .map_err(|source| GuestError::Listen {
                path: self.path.clone(),
                source,
            })?;
        let stream = accept_until(&self.path, &listener, timeout)?;
        let endpoint = Endpoint::Server {
            path: self.path.clone(),
            listener,
        };
        VirtualGuest::start(endpoint, stream, self.cfg.clone())
    }
}

/// A guest with a virtio-net device backed by a vhost-user backend.
pub struct VirtualGuest {
    cfg: GuestConfig,
    endpoint: Endpoint,
    frontend: Option<Frontend>,
    ram: GuestRam,
    /// Vrings by index: RX of pair `qp` at `2 * qp`, TX at `2 * qp + 1`.
    queues: Vec<NetQueue>,
    negotiated: Negotiated,
    /// Where each vring stopped, from `GET_VRING_BASE` in [`VirtualGuest::stop`].
    stopped_bases: Option<Vec<u16>>,
}

impl VirtualGuest {
    /// Connects to a backend listening on `path` (retrying until `reply_timeout` while the socket
    /// does not exist yet or refuses) and sets the device up.
    pub fn connect(path: impl AsRef<Path>, cfg: GuestConfig) -> Result<VirtualGuest, GuestError> {
        let path = path.as_ref().to_path_buf();
        let stream = connect_until(&path, cfg.reply_timeout)?;
        VirtualGuest::start(Endpoint::Client(path), stream, cfg)
    }

    /// Listens on `path` (a stale socket file there is removed) for a backend in client mode.
    pub fn listen(path: impl AsRef<Path>, cfg: GuestConfig) -> Result<GuestListener, GuestError> {
        let path = path.as_ref().to_path_buf();
        let listen_err = |source| GuestError::Listen {
            path: path.clone(),
            source,
        };
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(listen_err(e)),
        }
        let listener = UnixListener::bind(&path).map_err(listen_err)?;
        listener.set_nonblocking(true).map_err(listen_err)?;
        Ok(GuestListener {
            path,
            listener,
            cfg,
        })
    }

    fn start(
        endpoint: Endpoint,
        stream: UnixStream,
        cfg: GuestConfig,
    ) -> Result<VirtualGuest, GuestError> {
        let mut ram = GuestRam::new(cfg.mem_base, cfg.mem_size)?;
        let mut frontend = frontend_from(stream, &cfg)?;
        let negotiated = negotiate(&mut frontend, &cfg)?;
        let event_idx = negotiated.has(feature::EVENT_IDX);
        let queues = (0..cfg.queue_pairs.saturating_mul(2))
            .map(|index| NetQueue::new(index, cfg.queue_size, &mut ram, event_idx))
            .collect::<Result<Vec<_>, _>>()?;
        let mut guest = VirtualGuest {
            cfg,
            endpoint,
            frontend: None,
            ram,
            queues,
            negotiated,
            stopped_bases: None,
        };
        guest.start_device(frontend, None)?;
        Ok(guest)
    }

    /// Memory table, then every vring from `bases` (0 when `None`), then enable.
    fn start_device(
        &mut self,
        mut frontend: Frontend,
        bases: Option<&[u16]>,
    ) -> Result<(), GuestError> {
        set_mem_table(&mut frontend, &self.ram)?;
        for (i, queue) in self.queues.iter().enumerate() {
            let base = bases.and_then(|b| b.get(i).copied()).unwrap_or(0);
            start_vring(&mut frontend, &self.ram, &queue.ring, base)?;
        }
        for queue in &self.queues {
            enable_vring(&mut frontend, &self.negotiated, queue.ring.index(), true)?;
        }
        self.frontend = Some(frontend);
        Ok(())
    }

    /// Stops every vring as QEMU's `vhost_dev_stop` does: `GET_VRING_BASE` on each, after which
    /// the backend no longer touches it (vhost-user spec, "Ring states"). Returns the bases by
    /// vring index; a later [`Reconnect::Resume`] starts the new backend from them rather than
    /// from `used.idx`. The connection stays open but the device is stopped.
    pub fn stop(&mut self) -> Result<Vec<u16>, GuestError> {
        let frontend = self.frontend.as_mut().ok_or(GuestError::NotConnected)?;
        let mut bases = Vec::with_capacity(self.queues.len());
        for queue in &self.queues {
            let index = queue.ring.index();
            let base = frontend
                .get_vring_base(usize::from(index))
                .map_err(error::vhost_err("GET_VRING_BASE"))?;
            let base = u16::try_from(base)
                .map_err(|_| GuestError::VringBaseOutOfRange { queue: index, base })?;
            bases.push(base);
        }
        self.stopped_bases = Some(bases.clone());
        Ok(bases)
    }

    /// Drops the connection (the backend sees a hang-up); rings and memory stay.
    pub fn disconnect(&mut self) {
        self.frontend = None;
    }

    pub fn is_connected(&self) -> bool {
        self.frontend.is_some()
    }

    /// Drops the current connection if any, gets a new one (dial the same path, or accept on
    /// the same listener within `reply_timeout`) and sets the device up again.
    pub fn reconnect(&mut self, mode: Reconnect) -> Result<(), GuestError> {
        self.frontend = None;
        let stream = match &self.endpoint {
            Endpoint::Client(path) => connect_until(path, self.cfg.reply_timeout)?,
            Endpoint::Server { path, listener } => {
                accept_until(path, listener, self.cfg.reply_timeout)?
            }
        };
        let mut frontend = frontend_from(stream, &self.cfg)?;
        let negotiated = negotiate(&mut frontend, &self.cfg)?;
        let mut bases = vec![0u16; self.queues.len()];
        let stopped_bases = self.stopped_bases.take();
        match mode {
            Reconnect::Fresh => {
                let event_idx = negotiated.has(feature::EVENT_IDX);
                for queue in &mut self.queues {
                    queue.reset(&self.ram, event_idx)?;
                }
            }
            Reconnect::Resume => {
                if negotiated.acked_features != self.negotiated.acked_features {
                    return Err(GuestError::FeaturesChanged {
                        before: self.negotiated.acked_features,
                        after: negotiated.acked_features,
                    });
                }
                match stopped_bases {
                    Some(stopped) => bases = stopped,
                    None => {
                        for (base, queue) in bases.iter_mut().zip(&mut self.queues) {
                            *base = queue.ring.resume_base(&self.ram)?;
                        }
                    }
                }
            }
        }
        self.negotiated = negotiated;
        self.start_device(frontend, Some(&bases))
    }

    /// Waits up to `timeout` for a backend to connect to this guest's listening socket (server
    /// mode only), then [`VirtualGuest::reconnect`]s: for a daemon restarted in client mode.
    pub fn accept_reconnect(
        &mut self,
        mode: Reconnect,
        timeout: Duration,
    ) -> Result<(), GuestError> {
        let saved = self.cfg.reply_timeout;
        self.cfg.reply_timeout = timeout;
        let result = self.reconnect(mode);
        self.cfg.reply_timeout = saved;
        result
    }

    /// Features sent in `SET_FEATURES`.
    pub fn features(&self) -> u64 {
        self.negotiated.acked_features
    }

    /// Whether every bit of `mask` was negotiated.
    pub fn has_feature(&self, mask: u64) -> bool {
        self.negotiated.has(mask)
    }

    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.negotiated.acked_protocol_features
    }

    pub fn net_config(&self) -> Option<NetConfig> {
        self.negotiated.net_config
    }

    /// The device MAC from the config space (with `VIRTIO_NET_F_MAC` and `CONFIG`).
    pub fn mac(&self) -> Option<MacAddr> {
        self.negotiated.net_config.and_then(|config| config.mac)
    }

    pub fn queue_pairs(&self) -> u16 {
        self.cfg.queue_pairs
    }

    pub fn config(&self) -> &GuestConfig {
        &self.cfg
    }

    /// Guest RAM, for tests that read or plant bytes.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// The vhost-user connection, for protocol-level tests (e.g. `GET_VRING_BASE`, odd
    /// messages); `None` while disconnected.
    pub fn frontend(&mut self) -> Option<&mut Frontend> {
        self.frontend.as_mut()
    }

    /// Counters of vring `queue`.
    pub fn ring_stats(&self, queue: u16) -> Result<RingStats, GuestError> {
        Ok(self.queue(queue)?.ring.stats())
    }

    fn queue(&self, queue: u16) -> Result<&NetQueue, GuestError> {
        self.queues
            .get(usize::from(queue))
            .ok_or(GuestError::QueueOutOfRange {
                queue,
                queues: self.queues.len() as u16,
            })
    }

    /// Hostile access to vring `queue` (see [`raw`]).
    pub fn raw_queue(&mut self, queue: u16) -> Result<RawQueue<'_>, GuestError> {
        let queues = self.queues.len() as u16;
        let net_queue = self
            .queues
            .get_mut(usize::from(queue))
            .ok_or(GuestError::QueueOutOfRange { queue, queues })?;
        Ok(RawQueue::new(&mut net_queue.ring, &mut self.ram))
    }
}

impl std::fmt::Debug for VirtualGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualGuest")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.frontend.is_some())
            .field("ram", &self.ram)
            .field("negotiated", &self.negotiated)
            .finish_non_exhaustive()
    }
}

fn frontend_from(stream: UnixStream, cfg: &GuestConfig) -> Result<Frontend, GuestError> {
    // A backend that never answers must fail the request, not hang the test.
    stream
        .set_read_timeout(Some(cfg.reply_timeout))
        .map_err(|source| GuestError::SocketSetup {
            option: "SO_RCVTIMEO",
            source,
        })?;
    stream
        .set_write_timeout(Some(cfg.reply_timeout))
        .map_err(|source| GuestError::SocketSetup {
            option: "SO_SNDTIMEO",
            source,
        })?;
    Ok(Frontend::from_stream(
        stream,
        u64::from(cfg.queue_pairs) * 2,
    ))
}

/// Dials `path` until it accepts or `timeout` passes (the daemon may still be starting).
fn connect_until(path: &Path, timeout: Duration) -> Result<UnixStream, GuestError> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) && Instant::now() < deadline =>
            {
                // Polling for a socket that does not exist yet: nothing to wait on.
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(source) => {
                return Err(GuestError::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// Accepts on a non-blocking `listener` until `timeout`, sleeping in `poll(2)` on it.
fn accept_until(
    path: &Path,
    listener: &UnixListener,
    timeout: Duration,
) -> Result<UnixStream, GuestError> {
    use std::os::fd::AsRawFd;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

    let accept_err = |source| GuestError::Accept {
        path: path.to_path_buf(),
        source,
    };
    let epoll = Epoll::new().map_err(accept_err)?;
    epoll
        .ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, 0),
        )
        .map_err(accept_err)?;
    let deadline = Instant::now() + timeout;
    let mut events = [EpollEvent::default(); 1];
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).map_err(accept_err)?;
                return Ok(stream);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(accept_err(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(GuestError::AcceptTimeout {
                path: path.to_path_buf(),
                timeout,
            });
        }
        let millis =
            i32::try_from((deadline - now).as_millis().saturating_add(1)).unwrap_or(i32::MAX);
        match epoll.wait(millis, &mut events) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(accept_err(e)),
        }
    }
}
