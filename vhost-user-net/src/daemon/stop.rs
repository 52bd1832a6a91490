//! Stopping a supervisor thread from another thread, wherever it waits: in epoll (the stop
//! eventfd wakes it, in server mode together with the listener) or inside a live connection
//! (its `ShutdownHandle` cuts the socket, which ends the library's request loop).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use vhost_user_backend::ShutdownHandle;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_CLOEXEC, EFD_NONBLOCK};

/// Tells a supervisor thread to stop, from any thread.
pub struct StopSignal {
    stopping: AtomicBool,
    event: EventFd,
    /// The live connection, so a stop can cut it (its thread blocks in a socket read).
    session: Mutex<Option<ShutdownHandle>>,
}

impl StopSignal {
    pub(super) fn new() -> io::Result<StopSignal> {
        Ok(StopSignal {
            stopping: AtomicBool::new(false),
            event: EventFd::new(EFD_NONBLOCK | EFD_CLOEXEC)?,
            session: Mutex::new(None),
        })
    }

    /// Stops the supervisor: wakes its waits and shuts its live connection down. Idempotent.
    pub fn request(&self) {
        self.stopping.store(true, Ordering::Release);
        if let Err(e) = self.event.write(1) {
            log::error!("cannot signal a supervisor to stop: {e}");
        }
        if let Some(handle) = self.lock_session().as_ref() {
            handle.shutdown();
        }
    }

    pub fn is_requested(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Records the live connection. Taken under the same lock as [`Self::request`] reads it, so
    /// a stop that lands between `start` and here is not lost: it is applied now.
    pub(super) fn publish(&self, handle: Option<ShutdownHandle>) {
        let mut session = self.lock_session();
        *session = handle;
        if self.is_requested() {
            if let Some(handle) = session.as_ref() {
                handle.shutdown();
            }
        }
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Option<ShutdownHandle>> {
        // The slot holds a handle only; a panic elsewhere cannot leave it half-written.
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Epoll over the stop eventfd and, in server mode, the listener.
pub(super) struct Waiter {
    epoll: Epoll,
}

const TOKEN_STOP: u64 = 0;
const TOKEN_LISTENER: u64 = 1;

impl Waiter {
    pub(super) fn new(epoll: Epoll, stop: &StopSignal) -> io::Result<Waiter> {
        epoll.ctl(
            ControlOperation::Add,
            stop.event.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_STOP),
        )?;
        Ok(Waiter { epoll })
    }

    pub(super) fn watch_listener(&self, listener: &UnixListener) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Add,
            listener.as_raw_fd(),
            EpollEvent::new(EventSet::IN, TOKEN_LISTENER),
        )
    }

    /// Waits up to `timeout` (forever if `None`); returns which sources fired.
    pub(super) fn wait(&self, timeout: Option<Duration>) -> io::Result<Fired> {
        let timeout_ms = timeout.map_or(-1, |t| i32::try_from(t.as_millis()).unwrap_or(i32::MAX));
        let mut events = [EpollEvent::default(); 2];
        let count = loop {
            match self.epoll.wait(timeout_ms, &mut events) {
                Ok(count) => break count,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        let mut fired = Fired::default();
        for event in events.iter().take(count) {
            match event.data() {
                TOKEN_STOP => fired.stop = true,
                TOKEN_LISTENER => fired.listener = true,
                _ => {}
            }
        }
        Ok(fired)
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Fired {
    pub(super) stop: bool,
    pub(super) listener: bool,
}
