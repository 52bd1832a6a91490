//! A VIF's policy as the datapath applies it: its `vif_core::acl::Firewall` (ACLs, port
//! security, conntrack) and its two rate limiters, replaceable while traffic flows.
//!
//! [`VifPolicy`] is shared by the VIF's workers and the daemon thread. Workers take a
//! [`PolicyBurst`] once per TX or RX pass ([`VifPolicy::burst`]): one atomic flag and, when
//! policies are set, lock-free firewall snapshots and the direction's limiter lock. Per frame
//! nothing is allocated and no other lock is taken than the conntrack shard a stateful ACL
//! needs. The daemon thread changes policies through [`VifPolicy::apply`] and the setters:
//! everything is compiled first, so a refused policy changes nothing, then each part is
//! swapped atomically (`AclSlot::swap`, the limiter under its lock); a part that did not change
//! is left alone, so its hit counters and token buckets carry on.
//!
//! The firewall is created with the first ACL or port security a VIF gets, with the daemon's
//! conntrack settings (its table is allocated up front), and stays for the VIF's life: flows it
//! tracks outlive ACL swaps, as `vif_core::acl::firewall` documents.
//!
//! Rate limiters are per VIF and direction, not per queue: a multi-queue guest gets the
//! configured rate whichever queues its flows hash to. A worker holds its direction's limiter
//! for one burst, so a rate-limited VIF's queues take turns at burst granularity.
//!
//! Time is [`clock_ns`]: nanoseconds of the monotonic clock since the first call, read once per
//! burst by the caller.

mod burst;
mod refill;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use vif_core::acl::{
    AclError, AclSpec, CompiledAcl, ConntrackConfig, Direction, Firewall, PortSecurity,
    PortSecuritySpec,
};
use vif_core::mac::MacAddr;
use vif_core::qos::{QosError, QosSpec, RateLimiter};

pub use burst::{PolicyBurst, TxJudgement};
pub use refill::RefillTimer;

/// Nanoseconds of the monotonic clock since the process first asked; the `now` of the policy
/// engine and the token buckets.
pub fn clock_ns(now: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// The policies of one VIF, resolved from the config's names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedPolicy {
    /// Frames delivered to the guest.
    pub ingress: Option<AclSpec>,
    /// Frames the guest sends.
    pub egress: Option<AclSpec>,
    pub qos: Option<QosSpec>,
    pub port_security: Option<PortSecuritySpec>,
}

impl ResolvedPolicy {
    pub fn acl(&self, direction: Direction) -> Option<&AclSpec> {
        match direction {
            Direction::Ingress => self.ingress.as_ref(),
            Direction::Egress => self.egress.as_ref(),
        }
    }

    fn acl_mut(&mut self, direction: Direction) -> &mut Option<AclSpec> {
        match direction {
            Direction::Ingress => &mut self.ingress,
            Direction::Egress => &mut self.egress,
        }
    }
}

/// Why a policy cannot be applied to a VIF. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("acl.{direction}: {source}")]
    Acl {
        direction: &'static str,
        #[source]
        source: AclError,
    },
    #[error("qos: {0}")]
    Qos(#[from] QosError),
    #[error("{0}")]
    PortSecurity(AclError),
    #[error("conntrack: {0}")]
    Conntrack(AclError),
}

/// The name of a direction in config keys and messages.
pub const fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Ingress => "ingress",
        Direction::Egress => "egress",
    }
}

/// One direction's token buckets; `limited` lets unlimited VIFs skip the lock.
#[derive(Debug, Default)]
struct Limit {
    limited: AtomicBool,
    limiter: Mutex<Option<RateLimiter>>,
}

impl Limit {
    fn lock(&self) -> MutexGuard<'_, Option<RateLimiter>> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, limiter: Option<RateLimiter>) {
        let limiter = limiter.filter(|l| !l.is_unlimited());
        let mut slot = self.lock();
        self.limited.store(limiter.is_some(), Ordering::Release);
        *slot = limiter;
    }
}

/// The policy engine of one VIF; see the module docs.
#[derive(Debug)]
pub struct VifPolicy {
    mac: MacAddr,
    conntrack: ConntrackConfig,
    firewall: OnceLock<Arc<Firewall>>,
    /// An ACL or port security is set: frames must be parsed and judged.
    filtering: AtomicBool,
    tx: Limit,
    rx: Limit,
    /// What is applied now; held while changing, so changes are serialised.
    current: Mutex<ResolvedPolicy>,
}

impl VifPolicy {
    /// No policy: every frame passes, nothing is parsed.
    pub fn new(mac: MacAddr, conntrack: ConntrackConfig) -> VifPolicy {
        VifPolicy {
            mac,
            conntrack,
            firewall: OnceLock::new(),
            filtering: AtomicBool::new(false),
            tx: Limit::default(),
            rx: Limit::default(),
            current: Mutex::new(ResolvedPolicy::default()),
        }
    }

    /// The firewall, once the VIF has had an ACL or port security (metrics read it).
    pub fn firewall(&self) -> Option<&Arc<Firewall>> {
        self.firewall.get()
    }

    /// What is applied now.
    pub fn current(&self) -> ResolvedPolicy {
        self.lock_current().clone()
    }

    fn lock_current(&self) -> MutexGuard<'_, ResolvedPolicy> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Snapshots for one pass of a worker: `direction` picks the limiter (egress: the guest's
    /// TX, ingress: its RX); `worker` is the queue pair, for the ACL counter shards.
    pub fn burst(&self, direction: Direction, now_ns: u64, worker: usize) -> PolicyBurst<'_> {
        let firewall = if self.filtering.load(Ordering::Acquire) {
            self.firewall.get().map(|firewall| firewall.view())
        } else {
            None
        };
        let limit = match direction {
            Direction::Egress => &self.tx,
            Direction::Ingress => &self.rx,
        };
        let limiter = limit.limited.load(Ordering::Acquire).then(|| limit.lock());
        PolicyBurst::new(firewall, limiter, now_ns, worker)
    }

    /// Makes `policy` the VIF's policy: everything is compiled first (an error changes nothing),
    /// then the parts that differ from the current ones are swapped in.
    pub fn apply(&self, policy: &ResolvedPolicy, now_ns: u64) -> Result<(), PolicyError> {
        let mut current = self.lock_current();
        let mut compiled: [Option<Option<Arc<CompiledAcl>>>; 2] = [None, None];
        for (slot, direction) in compiled
            .iter_mut()
            .zip([Direction::Ingress, Direction::Egress])
        {
            if policy.acl(direction) != current.acl(direction) {
                *slot = Some(compile(direction, policy.acl(direction))?);
            }
        }
        let security = if policy.port_security != current.port_security {
            Some(self.port_security(policy.port_security.as_ref())?)
        } else {
            None
        };
        if let Some(qos) = &policy.qos {
            qos.validate()?;
        }
        let needs_firewall = compiled.iter().flatten().any(Option::is_some)
            || security.as_ref().is_some_and(Option::is_some);
        let firewall = match self.firewall.get() {
            Some(firewall) => Some(firewall),
            None if needs_firewall => Some(self.create_firewall()?),
            None => None,
        };
        if let Some(firewall) = firewall {
            for (acl, direction) in compiled
                .into_iter()
                .zip([Direction::Ingress, Direction::Egress])
            {
                if let Some(acl) = acl {
                    firewall.acl(direction).swap(acl);
                }
            }
            if let Some(security) = security {
                firewall.set_port_security(security);
            }
        }
        if policy.qos != current.qos {
            let qos = policy.qos.as_ref();
            self.tx.set(qos.map(|q| RateLimiter::new(&q.tx, now_ns)));
            self.rx.set(qos.map(|q| RateLimiter::new(&q.rx, now_ns)));
        }
        *current = policy.clone();
        self.filtering.store(
            current.ingress.is_some()
                || current.egress.is_some()
                || current.port_security.is_some(),
            Ordering::Release,
        );
        Ok(())
    }

    /// Replaces one direction's ACL (`None` removes it).
    pub fn set_acl(
        &self,
        direction: Direction,
        acl: Option<&AclSpec>,
        now_ns: u64,
    ) -> Result<(), PolicyError> {
        let mut policy = self.current();
        *policy.acl_mut(direction) = acl.cloned();
        self.apply(&policy, now_ns)
    }

    /// Replaces the rate limits (`None` removes them); the buckets start full.
    pub fn set_qos(&self, qos: Option<&QosSpec>, now_ns: u64) -> Result<(), PolicyError> {
        let mut policy = self.current();
        policy.qos = qos.cloned();
        self.apply(&policy, now_ns)
    }

    fn port_security(
        &self,
        spec: Option<&PortSecuritySpec>,
    ) -> Result<Option<Arc<PortSecurity>>, PolicyError> {
        spec.map(|spec| PortSecurity::new(self.mac, spec).map(Arc::new))
            .transpose()
            .map_err(PolicyError::PortSecurity)
    }

    fn create_firewall(&self) -> Result<&Arc<Firewall>, PolicyError> {
        if let Some(firewall) = self.firewall.get() {
            return Ok(firewall);
        }
        let firewall = Firewall::new(self.conntrack).map_err(PolicyError::Conntrack)?;
        // Only `apply` creates it, under `current`'s lock: no other init can race this one.
        Ok(self.firewall.get_or_init(|| Arc::new(firewall)))
    }

    /// Sweeps expired conntrack entries (the daemon calls this off the datapath, e.g. per
    /// scrape); returns how many went.
    pub fn expire(&self, now_ns: u64) -> usize {
        self.firewall
            .get()
            .map_or(0, |firewall| firewall.conntrack().expire(now_ns))
    }
}

fn compile(
    direction: Direction,
    spec: Option<&AclSpec>,
) -> Result<Option<Arc<CompiledAcl>>, PolicyError> {
    spec.map(|spec| CompiledAcl::compile(spec).map(Arc::new))
        .transpose()
        .map_err(|source| PolicyError::Acl {
            direction: direction_name(direction),
            source,
        })
}

#[cfg(test)]
mod tests;
