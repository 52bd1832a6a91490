//! The daemon's own events, as subscribers of rust-vmm's `event-manager` in the main thread:
//! SIGINT/SIGTERM through signalfd(2), and the FDB ageing tick through a timerfd.
//!
//! Signals are blocked in every thread (the mask is set before any thread is spawned and is
//! inherited), so they are only ever read from the signalfd: no async-signal-safety concerns,
//! and no vring worker is interrupted by a handler.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::timerfd::TimerFd;

use crate::switch::Segment;

/// How often learned MACs are checked for ageing. The ageing time itself is the switch's; a
/// one-second tick bounds how late an entry is forgotten.
pub const FDB_AGEING_TICK: Duration = Duration::from_secs(1);

/// The signals that stop the daemon.
pub const SHUTDOWN_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// A signalfd for [`SHUTDOWN_SIGNALS`], with the signals blocked in the calling thread.
pub struct SignalFd {
    file: File,
}

impl SignalFd {
    /// Blocks the shutdown signals in this thread and opens a signalfd for them. Call it before
    /// spawning any thread, so every thread inherits the mask and the signals queue on the fd.
    pub fn block_shutdown_signals() -> io::Result<SignalFd> {
        let set = vmm_sys_util::signal::create_sigset(&SHUTDOWN_SIGNALS)
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        for signal in SHUTDOWN_SIGNALS {
            vmm_sys_util::signal::block_signal(signal)
                .map_err(|e| io::Error::other(format!("cannot block signal {signal}: {e}")))?;
        }
        // SAFETY: `set` is a valid, initialized sigset_t that outlives the call; -1 asks for a
        // new descriptor. The return value is checked before use.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: signalfd returned a new descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(SignalFd {
            file: File::from(owned),
        })
    }

    /// Reads one pending signal; `None` when none is pending.
    pub fn read_signal(&mut self) -> io::Result<Option<libc::c_int>> {
        // One `struct signalfd_siginfo` per read (signalfd(2)); `ssi_signo` is its first field.
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        match self.file.read(&mut info) {
            Ok(len) if len == info.len() => {
                let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                Ok(Some(libc::c_int::try_from(signo).unwrap_or(0)))
            }
            Ok(len) => Err(io::Error::other(format!(
                "short signalfd read: {len} of {} bytes",
                info.len()
            ))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// Records the first shutdown signal in `exit`; the main loop stops when it is set.
pub struct ShutdownOnSignal {
    signals: SignalFd,
    exit: Rc<Cell<Option<libc::c_int>>>,
}

impl ShutdownOnSignal {
    pub fn new(signals: SignalFd, exit: Rc<Cell<Option<libc::c_int>>>) -> ShutdownOnSignal {
        ShutdownOnSignal { signals, exit }
    }
}

impl MutEventSubscriber for ShutdownOnSignal {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        loop {
            match self.signals.read_signal() {
                Ok(Some(signal)) => {
                    log::info!("received {}, shutting down", signal_name(signal));
                    if self.exit.get().is_none() {
                        self.exit.set(Some(signal));
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // A broken signalfd would leave the daemon unkillable but by SIGKILL;
                    // shutting down is the safe reading.
                    log::error!("cannot read the signalfd: {e}; shutting down");
                    self.exit.set(Some(libc::SIGTERM));
                    break;
                }
            }
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.signals, EventSet::IN)) {
            log::error!(
                "cannot watch the signalfd: {e:?}; SIGINT/SIGTERM will not stop the daemon"
            );
        }
    }
}

fn signal_name(signal: libc::c_int) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        other => format!("signal {other}"),
    }
}

/// The segments to age, asked at every tick: the control socket adds and removes segments.
pub type SegmentSource = Box<dyn Fn() -> Vec<Arc<Segment>>>;

/// Ages the forwarding databases of every segment on a periodic timerfd.
pub struct FdbAgeing {
    timer: TimerFd,
    segments: SegmentSource,
}

impl FdbAgeing {
    /// Arms a periodic timer with `tick` for a fixed set of `segments`.
    pub fn new(segments: Vec<Arc<Segment>>, tick: Duration) -> io::Result<FdbAgeing> {
        FdbAgeing::with_source(Box::new(move || segments.clone()), tick)
    }

    /// Arms a periodic timer with `tick` for the segments `source` returns at each tick.
    pub fn with_source(source: SegmentSource, tick: Duration) -> io::Result<FdbAgeing> {
        let mut timer = TimerFd::new()?;
        timer.reset(tick, Some(tick))?;
        Ok(FdbAgeing {
            timer,
            segments: source,
        })
    }
}

impl MutEventSubscriber for FdbAgeing {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // Readable means expired, so this read does not block; the count of missed ticks does
        // not matter: ageing compares timestamps with `now`.
        if let Err(e) = self.timer.wait() {
            log::warn!("FDB ageing timer read failed: {e}");
            return;
        }
        let now = Instant::now();
        for segment in (self.segments)() {
            segment.age_out(now);
        }
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.timer, EventSet::IN)) {
            log::error!("cannot watch the FDB ageing timer: {e:?}; learned MACs will not age");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, SubscriberOps};

    #[test]
    fn ageing_tick_runs_on_the_event_manager() {
        let mut manager = EventManager::<Box<dyn MutEventSubscriber>>::new().unwrap();
        let ageing = FdbAgeing::new(vec![Segment::new("t")], Duration::from_millis(1)).unwrap();
        manager.add_subscriber(Box::new(ageing));
        // The deadline only stops a hung test; one dispatched event is the assertion.
        let dispatched = manager.run_with_timeout(10_000).unwrap();
        assert_eq!(dispatched, 1);
    }
}
