//! Restarting a daemon that exits on its own: the policy, and the supervisor thread that applies
//! it. The thread polls the child under the state lock (see the parent module for why), waits
//! out the backoff on the condvar so a stop cuts it short, and gives up after `max_restarts`.

use std::process::Child;
use std::time::{Duration, Instant};

use super::{Launcher, Shared, POLL_MAX, POLL_MIN};

/// Restart a daemon that exits on its own, waiting `initial_backoff` doubling to `max_backoff`
/// between attempts; the backoff starts over once a daemon has stayed up for `stable_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub stable_after: Duration,
    /// Give up after this many consecutive restarts; `None` never gives up.
    pub max_restarts: Option<u32>,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            stable_after: Duration::from_secs(10),
            max_restarts: None,
        }
    }
}

/// The supervisor thread: restart the daemon when it exits, until `stopping`.
pub(super) fn supervise(launcher: &Launcher, shared: &Shared, policy: RestartPolicy) {
    let mut backoff = policy.initial_backoff;
    let mut consecutive: u32 = 0;
    let mut interval = POLL_MIN;
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        let exited = match state.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => None,
            Some(Ok(Some(status))) => Some(status),
            Some(Err(e)) => {
                log::error!("cannot wait for the daemon: {e}; supervision stops");
                return;
            }
            None => return,
        };
        let Some(status) = exited else {
            // Poll slowly: a condvar wakeup on `stopping` cuts the wait short.
            state = match shared.changed.wait_timeout(state, interval) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
            interval = (interval * 2).min(POLL_MAX);
            continue;
        };
        state.child = None;
        state.last_exit = Some(status);
        if state.started_at.elapsed() >= policy.stable_after {
            backoff = policy.initial_backoff;
            consecutive = 0;
        }
        if policy.max_restarts.is_some_and(|max| consecutive >= max) {
            log::error!("daemon exited ({status}); giving up after {consecutive} restarts");
            return;
        }
        log::warn!("daemon exited ({status}); restarting in {backoff:?}");
        let until = Instant::now() + backoff;
        while !state.stopping {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        if state.stopping {
            return;
        }
        match launcher.start_child() {
            Ok(child) => {
                log::info!("restarted daemon (pid {})", child.id());
                state.child = Some(child);
                state.started_at = Instant::now();
                state.restarts = state.restarts.saturating_add(1);
            }
            Err(e) => log::error!("cannot restart the daemon: {e}"),
        }
        consecutive = consecutive.saturating_add(1);
        backoff = (backoff * 2).min(policy.max_backoff);
        interval = POLL_MIN;
        shared.changed.notify_all();
    }
}
