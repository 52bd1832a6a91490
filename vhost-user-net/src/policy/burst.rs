//! [`PolicyBurst`]: a VIF's policy for one worker pass, judging frames one by one.
//!
//! TX (guest → network), in this order:
//! 1. the rate limit is asked whether the frame may go now, without taking tokens: a frame that
//!    must wait is judged again when it is retried, so nothing below may have counted it yet;
//! 2. the frame is parsed once (`parse_frame`) and its [`AclKey`] read through the layout;
//!    a frame the engine cannot parse is `Malformed` (an ACL or port security that cannot see
//!    the addresses must not let the frame through);
//! 3. port security → `Spoofed`; 4. the egress ACL (and conntrack) → `AclDeny`, monitor mode
//!    passes;
//! 5. the frame passed: its tokens are taken.
//!
//! RX (network → guest): the ingress ACL (and conntrack) first, then the rate limit; over the
//! limit is a `RateLimited` drop, since nothing can be pushed back to the sender.
//!
//! Denied frames take no tokens: a guest's budget is spent on what it actually sends.

use std::sync::MutexGuard;

use vif_core::acl::{AclKey, Direction, FirewallView};
use vif_core::qos::{RateDecision, RateLimiter};
use vif_core::stats::DropReason;
use vif_core::wire::frame::{parse_frame, FrameLayout};

/// What the policy says about one frame the guest sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxJudgement {
    Pass,
    Drop(DropReason),
    /// Over the rate limit: leave it in the ring, retry in `retry_in_ns` (at least 1).
    Throttle {
        retry_in_ns: u64,
    },
}

/// See the module docs. Built by `VifPolicy::burst`.
pub struct PolicyBurst<'a> {
    firewall: Option<FirewallView<'a>>,
    limiter: Option<MutexGuard<'a, Option<RateLimiter>>>,
    now_ns: u64,
    worker: usize,
    /// The wait of the last `Throttle`, for callers whose verdict type has no room for it.
    retry_in_ns: u64,
}

impl<'a> PolicyBurst<'a> {
    pub(super) fn new(
        firewall: Option<FirewallView<'a>>,
        limiter: Option<MutexGuard<'a, Option<RateLimiter>>>,
        now_ns: u64,
        worker: usize,
    ) -> PolicyBurst<'a> {
        PolicyBurst {
            firewall,
            limiter,
            now_ns,
            worker,
            retry_in_ns: 0,
        }
    }

    /// No policy at all: a burst with nothing to check (tests, VIFs without policy).
    pub fn none() -> PolicyBurst<'static> {
        PolicyBurst::new(None, None, 0, 0)
    }

    /// True when no frame can be refused or held: callers may skip the per-frame calls.
    pub fn is_idle(&self) -> bool {
        self.firewall.is_none() && self.limiter.is_none()
    }

    /// The `retry_in_ns` of the last [`TxJudgement::Throttle`].
    pub fn retry_in_ns(&self) -> u64 {
        self.retry_in_ns
    }

    fn limiter(&mut self) -> Option<&mut RateLimiter> {
        self.limiter.as_deref_mut().and_then(Option::as_mut)
    }

    /// Judges a frame the guest sends (`frame`: from the Ethernet header on).
    pub fn judge_tx(&mut self, frame: &[u8]) -> TxJudgement {
        let bytes = u64::try_from(frame.len()).unwrap_or(u64::MAX);
        let now = self.now_ns;
        if let Some(limiter) = self.limiter() {
            let wait = limiter.time_until_ready(bytes, now);
            if wait > 0 {
                self.retry_in_ns = wait;
                return TxJudgement::Throttle { retry_in_ns: wait };
            }
        }
        if let Some(firewall) = &self.firewall {
            let Some((layout, key)) = parse(frame) else {
                return TxJudgement::Drop(DropReason::Malformed);
            };
            if let Err(cause) = firewall.check_source(frame, &layout, &key) {
                return TxJudgement::Drop(cause.drop_reason());
            }
            let verdict = firewall.filter(Direction::Egress, &key, now, self.worker);
            if let Some(reason) = verdict.drop_reason() {
                return TxJudgement::Drop(reason);
            }
        }
        if let Some(limiter) = self.limiter() {
            // Asked above with the same clock and nothing taken since: this passes.
            let _ = limiter.consume(bytes, now);
        }
        TxJudgement::Pass
    }

    /// Judges a frame about to be delivered to the guest; `Err` is the drop's reason.
    pub fn judge_rx(&mut self, frame: &[u8]) -> Result<(), DropReason> {
        let now = self.now_ns;
        if let Some(firewall) = &self.firewall {
            let (_, key) = parse(frame).ok_or(DropReason::Malformed)?;
            let verdict = firewall.filter(Direction::Ingress, &key, now, self.worker);
            if let Some(reason) = verdict.drop_reason() {
                return Err(reason);
            }
        }
        if let Some(limiter) = self.limiter() {
            let bytes = u64::try_from(frame.len()).unwrap_or(u64::MAX);
            if limiter.consume(bytes, now) != RateDecision::Pass {
                return Err(DropReason::RateLimited);
            }
        }
        Ok(())
    }
}

/// The one parse of a judged frame.
fn parse(frame: &[u8]) -> Option<(FrameLayout, AclKey)> {
    let layout = parse_frame(frame).ok()?;
    let key = AclKey::extract_with_layout(frame, &layout).ok()?;
    Some((layout, key))
}
