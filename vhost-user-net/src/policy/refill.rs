//! [`RefillTimer`]: re-arms a worker whose guest transmit was held back by its rate limit.
//!
//! When a TX chain must wait for tokens, the worker leaves it in the ring, keeps the guest's
//! kicks off (a kick could not make it go sooner) and arms this one-shot timerfd for the time the
//! bucket says; the timerfd sits on the worker's epoll (`VringEpollHandler::register_listener`),
//! so the worker runs TX again when the tokens are there: no busy loop, no sleep, no thread.
//!
//! The expiry is never `read(2)`: [`RefillTimer::fired`] disarms the timer instead, which
//! resets its expiration count (`timerfd_settime(2)`), so the fd is no longer readable. A read
//! of a blocking timerfd could stall the worker if the same epoll batch had re-armed it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use vmm_sys_util::timerfd::TimerFd;

/// Shortest wait armed: below this the bucket is nearly full again, and a zero `it_value`
/// would disarm the timer rather than fire it (`timerfd_settime(2)`).
const MIN_WAIT: Duration = Duration::from_micros(50);
/// Longest wait armed at once; a longer one is re-armed when it fires (the bucket answers
/// again then). Keeps a bogus huge wait from parking the queue for days.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// One worker's refill timer.
#[derive(Debug)]
pub struct RefillTimer {
    timer: TimerFd,
    armed: bool,
}

impl RefillTimer {
    pub fn new() -> io::Result<RefillTimer> {
        Ok(RefillTimer {
            timer: TimerFd::new()?,
            armed: false,
        })
    }

    /// Fires once, `retry_in_ns` from now (clamped to [`MIN_WAIT`]..=[`MAX_WAIT`]).
    pub fn arm(&mut self, retry_in_ns: u64) {
        let wait = Duration::from_nanos(retry_in_ns).clamp(MIN_WAIT, MAX_WAIT);
        match self.timer.reset(wait, None) {
            Ok(()) => self.armed = true,
            Err(error) => {
                // Only an invalid fd fails here; the next guest kick retries the queue.
                log::warn!("cannot arm the TX refill timer: {error}");
                self.armed = false;
            }
        }
    }

    /// The timer's event arrived: disarm it (see the module docs). True if it was armed, i.e.
    /// the held queue should run.
    pub fn fired(&mut self) -> bool {
        let _ = self.timer.clear();
        std::mem::take(&mut self.armed)
    }

    /// Forgets a pending refill (device reset).
    pub fn cancel(&mut self) {
        if self.armed {
            let _ = self.timer.clear();
            self.armed = false;
        }
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }
}

impl AsRawFd for RefillTimer {
    fn as_raw_fd(&self) -> RawFd {
        self.timer.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

    fn readable(epoll: &Epoll, timeout_ms: i32) -> bool {
        let mut events = [EpollEvent::default(); 1];
        epoll.wait(timeout_ms, &mut events).unwrap() == 1
    }

    /// The fd becomes readable when armed and stops being readable once `fired` disarms it,
    /// without a read; deadlines only bound the test.
    #[test]
    fn fires_once_and_fired_clears_readiness() {
        let mut timer = RefillTimer::new().unwrap();
        let epoll = Epoll::new().unwrap();
        epoll
            .ctl(
                ControlOperation::Add,
                timer.as_raw_fd(),
                EpollEvent::new(EventSet::IN, 1),
            )
            .unwrap();
        assert!(!readable(&epoll, 0));
        timer.arm(0);
        assert!(timer.is_armed());
        assert!(readable(&epoll, 5_000), "armed timer never fired");
        assert!(timer.fired());
        assert!(!readable(&epoll, 0), "still readable after fired()");
        assert!(!timer.fired(), "a second event is not a refill");
        timer.arm(u64::MAX);
        timer.cancel();
        assert!(!timer.is_armed());
    }
}
