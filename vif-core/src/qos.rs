//! Rate limiting: token buckets with Firecracker's parameters, and a [`RateLimiter`] of a
//! bytes/s and a packets/s bucket. The clock is always a parameter (`now`, nanoseconds of any
//! monotonic clock), so tests inject time and never sleep (STYLE.md § 6).
//!
//! # Bucket semantics (Firecracker `src/vmm/src/rate_limiter/mod.rs`)
//!
//! A bucket holds up to `size` tokens and refills from empty to full in `refill_time`; it
//! starts full. `one_time_burst` extra tokens are spent first and never refill. A request for
//! more than `size` tokens at once (a 64 KiB GSO frame against a small byte bucket) is
//! allowed when the bucket is full, empties it and leaves a debt that later refills repay
//! first ("over-consumption"), so the long-run rate holds. Fractions of a token carry over
//! between refills exactly instead of being rounded away. Arithmetic is in `u128`, so no input
//! overflows.
//!
//! Two deliberate differences: a refused request consumes nothing (Firecracker keeps the part
//! of the one-time burst it took), and over-consumption is repaid through the bucket's clock
//! rather than a separate timer. [`TokenBucket::time_until`] tells the caller when a request
//! would pass, so the daemon can arm its refill timer (`EVT_TX_REFILL`).
//!
//! # Datapath use
//!
//! On TX, [`RateDecision::Throttle`] means: leave the descriptor chain in the ring, count
//! `vif_tx_throttled_total`, arm a timer for `retry_in_ns` (STYLE.md § 6). On RX nothing can
//! be pushed back, so the caller drops the frame with `DropReason::RateLimited`. A limiter is
//! `&mut self` and belongs to one worker; a VIF with several queue pairs gives each queue its
//! own limiter with a share of the rate, or guards one with a lock taken once per burst.

use serde::{Deserialize, Serialize};

use crate::model::names::check_name;
use crate::model::NameError;

const NS_PER_MS: u64 = 1_000_000;

/// Why a QoS policy is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QosError {
    #[error("qos name {name:?} {reason}")]
    InvalidName { name: String, reason: NameError },
    #[error("qos {qos}: {field} is {value}, must be {bound}")]
    OutOfRange {
        qos: String,
        field: &'static str,
        value: u64,
        bound: &'static str,
    },
}

/// One bucket as configured (Firecracker's `TokenBucketConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSpec {
    /// Tokens (bytes or packets) the bucket holds.
    pub size: u64,
    /// Extra tokens available once, at start.
    #[serde(default)]
    pub one_time_burst: u64,
    /// Milliseconds to refill from empty to full: the rate is `size / refill_time_ms` per ms.
    pub refill_time_ms: u64,
}

/// The limits of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Bytes (frames as the guest sees them, without the virtio-net header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<BucketSpec>,
    /// Packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<BucketSpec>,
}

/// A named QoS policy, referenced by `VifSpec::qos`. Directions are the guest's: `tx` is what
/// it sends, `rx` what it receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QosSpec {
    pub name: String,
    #[serde(default)]
    pub tx: RateLimitSpec,
    #[serde(default)]
    pub rx: RateLimitSpec,
}

/// Longest refill time: one day. Longer is a typo, and the bound keeps ms → ns exact.
pub const MAX_REFILL_TIME_MS: u64 = 86_400_000;

impl QosSpec {
    pub fn validate(&self) -> Result<(), QosError> {
        check_name(&self.name).map_err(|reason| QosError::InvalidName {
            name: self.name.clone(),
            reason,
        })?;
        let buckets = [
            ("tx.bandwidth", self.tx.bandwidth),
            ("tx.ops", self.tx.ops),
            ("rx.bandwidth", self.rx.bandwidth),
            ("rx.ops", self.rx.ops),
        ];
        for (field, bucket) in buckets {
            let Some(bucket) = bucket else { continue };
            let out_of_range = |value, bound| QosError::OutOfRange {
                qos: self.name.clone(),
                field,
                value,
                bound,
            };
            if bucket.size == 0 {
                return Err(out_of_range(0, "above 0 (omit the bucket for no limit)"));
            }
            if !(1..=MAX_REFILL_TIME_MS).contains(&bucket.refill_time_ms) {
                return Err(out_of_range(
                    bucket.refill_time_ms,
                    "refill_time_ms in 1..=86400000",
                ));
            }
        }
        Ok(())
    }
}

/// The result of [`TokenBucket::reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketReduction {
    Success,
    /// Not enough tokens; nothing was consumed.
    Failure,
    /// More than `size` tokens were taken from a full bucket; the excess is owed, repaid by
    /// the next `debt_ns` of refill.
    OverConsumption {
        debt_ns: u64,
    },
}

/// A token bucket; see the module docs.
///
/// Refill is exact: `carry` keeps the fraction of a token earned but not yet whole, in units
/// of 1/`refill_time_ns` token (token-nanoseconds per `size`), so polling often loses nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    size: u64,
    one_time_burst: u64,
    refill_time_ns: u64,
    budget: u64,
    /// The instant up to which refill has been credited. Past `now` while a debt is owed.
    last_update: u64,
    /// Partial token earned at `last_update`, in token-ns / `size` units (< `refill_time_ns`
    /// after a refill, < `size` after a debt).
    carry: u64,
}

impl TokenBucket {
    /// A full bucket at `now`; `None` when `size` or `refill_time_ms` is 0 (no limit), as in
    /// Firecracker. Refill times past a day are clamped to a day.
    pub fn new(
        size: u64,
        one_time_burst: u64,
        refill_time_ms: u64,
        now: u64,
    ) -> Option<TokenBucket> {
        if size == 0 || refill_time_ms == 0 {
            return None;
        }
        Some(TokenBucket {
            size,
            one_time_burst,
            refill_time_ns: refill_time_ms.min(MAX_REFILL_TIME_MS) * NS_PER_MS,
            budget: size,
            last_update: now,
            carry: 0,
        })
    }

    pub fn from_spec(spec: &BucketSpec, now: u64) -> Option<TokenBucket> {
        Self::new(spec.size, spec.one_time_burst, spec.refill_time_ms, now)
    }

    pub const fn size(&self) -> u64 {
        self.size
    }

    /// Tokens left at the last update (without refill since).
    pub const fn budget(&self) -> u64 {
        self.budget
    }

    pub const fn one_time_burst(&self) -> u64 {
        self.one_time_burst
    }

    /// Takes `tokens` at `now`: from the one-time burst first, then the budget.
    pub fn reduce(&mut self, tokens: u64, now: u64) -> BucketReduction {
        let from_burst = tokens.min(self.one_time_burst);
        let need = tokens - from_burst;
        if need == 0 {
            self.one_time_burst -= from_burst;
            return BucketReduction::Success;
        }
        self.refill(now);
        if need > self.size {
            if self.budget < self.size {
                return BucketReduction::Failure;
            }
            // Owe the excess: refill credits nothing until it is repaid. Rounding the debt up
            // to whole nanoseconds overcharges by less than one nanosecond's refill, which
            // `carry` gives back.
            let owed = u128::from(need - self.size) * u128::from(self.refill_time_ns);
            let debt_ns = owed.div_ceil(u128::from(self.size));
            let surplus = debt_ns * u128::from(self.size) - owed;
            self.one_time_burst -= from_burst;
            self.budget = 0;
            let debt_ns = u64::try_from(debt_ns).unwrap_or(u64::MAX);
            self.last_update = now.saturating_add(debt_ns);
            self.carry = u64::try_from(surplus).unwrap_or(0);
            return BucketReduction::OverConsumption { debt_ns };
        }
        if need > self.budget {
            return BucketReduction::Failure;
        }
        self.one_time_burst -= from_burst;
        self.budget -= need;
        BucketReduction::Success
    }

    /// Gives `tokens` back, e.g. when a frame that consumed them was not sent after all.
    pub fn replenish(&mut self, tokens: u64) {
        self.budget = self.budget.saturating_add(tokens).min(self.size);
    }

    /// Nanoseconds from `now` until `reduce(tokens)` would not fail; 0 when it would pass now.
    pub fn time_until(&self, tokens: u64, now: u64) -> u64 {
        // An over-sized request waits for a full bucket.
        let need = tokens.saturating_sub(self.one_time_burst).min(self.size);
        if need == 0 {
            return 0;
        }
        let mut after = self.clone();
        after.refill(now);
        if need <= after.budget {
            return 0;
        }
        // Whole tokens missing, in token-ns / size units, less the carried fraction.
        let missing = u128::from(need - after.budget) * u128::from(self.refill_time_ns);
        let wait = missing
            .saturating_sub(u128::from(after.carry))
            .div_ceil(u128::from(self.size));
        let ready = after
            .last_update
            .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX));
        ready.saturating_sub(now)
    }

    /// Credits the refill earned between `last_update` and `now`.
    fn refill(&mut self, now: u64) {
        if now <= self.last_update {
            return;
        }
        let earned =
            u128::from(now - self.last_update) * u128::from(self.size) + u128::from(self.carry);
        let tokens = earned / u128::from(self.refill_time_ns);
        self.last_update = now;
        let room = self.size - self.budget;
        if tokens >= u128::from(room) {
            // Full: what would overflow is lost, as in any token bucket.
            self.budget = self.size;
            self.carry = 0;
        } else {
            // tokens < room, and the remainder < refill_time_ns: both fit a u64.
            self.budget += tokens as u64;
            self.carry = (earned % u128::from(self.refill_time_ns)) as u64;
        }
    }
}

/// What a limiter says about one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    Pass,
    /// Not now; tokens suffice in `retry_in_ns` (at least 1).
    Throttle {
        retry_in_ns: u64,
    },
}

/// A bytes/s and a packets/s bucket; either may be absent (no limit).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RateLimiter {
    bandwidth: Option<TokenBucket>,
    ops: Option<TokenBucket>,
}

impl RateLimiter {
    pub fn new(spec: &RateLimitSpec, now: u64) -> RateLimiter {
        RateLimiter {
            bandwidth: spec.bandwidth.and_then(|b| TokenBucket::from_spec(&b, now)),
            ops: spec.ops.and_then(|b| TokenBucket::from_spec(&b, now)),
        }
    }

    pub const fn is_unlimited(&self) -> bool {
        self.bandwidth.is_none() && self.ops.is_none()
    }

    /// Takes `bytes` and one packet at `now`, from both buckets or from neither.
    pub fn consume(&mut self, bytes: u64, now: u64) -> RateDecision {
        let wait = self.time_until_ready(bytes, now);
        if wait > 0 {
            return RateDecision::Throttle { retry_in_ns: wait };
        }
        // Both buckets said they would pass, so neither reduce fails.
        if let Some(bucket) = &mut self.bandwidth {
            bucket.reduce(bytes, now);
        }
        if let Some(bucket) = &mut self.ops {
            bucket.reduce(1, now);
        }
        RateDecision::Pass
    }

    /// Nanoseconds until a frame of `bytes` would pass; 0 when it would now.
    pub fn time_until_ready(&self, bytes: u64, now: u64) -> u64 {
        let bandwidth = self
            .bandwidth
            .as_ref()
            .map_or(0, |b| b.time_until(bytes, now));
        let ops = self.ops.as_ref().map_or(0, |b| b.time_until(1, now));
        bandwidth.max(ops)
    }

    pub const fn bandwidth(&self) -> Option<&TokenBucket> {
        self.bandwidth.as_ref()
    }

    pub const fn ops(&self) -> Option<&TokenBucket> {
        self.ops.as_ref()
    }
}

#[cfg(test)]
mod tests;
