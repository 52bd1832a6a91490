//! [`CompiledAcl`]: an immutable compiled ACL that any number of workers classify against
//! through `&self`, with per-rule hit counters.
//!
//! # Counters
//!
//! Each rule, each direction's default and the monitor-mode "would deny" count have one
//! `AtomicU64` per worker shard; a worker passes its queue index and increments its own shard
//! with a relaxed `fetch_add`. Shards are padded to whole cache lines, so workers of different
//! queues never write the same line (no false sharing), and the `fetch_add` of an owned line is
//! cheap. A plain load-and-store would be cheaper still but would lose counts if two threads
//! were ever given the same shard; `fetch_add` never loses one. Readers sum the shards (control
//! path, allocates). Counters belong to one compiled rule set: after a swap, the new set counts
//! from zero (rule indices may mean other rules), and the daemon reads the old set's totals from
//! the `Arc` that [`super::AclSlot::swap`] returns.

use std::sync::atomic::{AtomicU64, Ordering};

use super::compile::{Tree, TreeStats};
use super::error::AclError;
use super::key::AclKey;
use super::rule::{AclSpec, Action, DefaultActions, Mode};
use super::Direction;
use crate::model::vif::MAX_QUEUE_PAIRS;
use crate::stats::DropReason;

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decider {
    /// The rule at this position in the spec's list.
    Rule(u32),
    /// No rule matched: the direction's default action.
    Default,
}

/// A rule set's answer for one packet, before monitor mode and conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Classification {
    pub action: Action,
    pub decider: Decider,
}

/// What the policy engine decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AclVerdict {
    /// No ACL is attached for the direction.
    Unfiltered,
    /// A rule or the default allowed it.
    Allow(Decider),
    /// It belongs to a tracked flow (or is its return traffic): rules were not consulted.
    Tracked,
    /// Denied in monitor mode: counted as "would deny", and passed.
    WouldDeny(Decider),
    /// Denied.
    Deny(Decider),
    /// The rules allowed a new flow of a stateful ACL but the conntrack table is full, and the
    /// policy refuses flows it cannot track (`conntrack.rs`).
    ConntrackFull,
}

impl AclVerdict {
    /// True when the frame goes on.
    pub const fn passes(&self) -> bool {
        matches!(
            self,
            AclVerdict::Unfiltered
                | AclVerdict::Allow(_)
                | AclVerdict::Tracked
                | AclVerdict::WouldDeny(_)
        )
    }

    /// The drop counter for a refused frame; `None` when it passes. A full conntrack table is
    /// counted as an ACL deny (there is no separate reason yet) and in the conntrack's own
    /// `full` counter.
    pub const fn drop_reason(&self) -> Option<DropReason> {
        match self {
            AclVerdict::Deny(_) | AclVerdict::ConntrackFull => Some(DropReason::AclDeny),
            _ => None,
        }
    }
}

/// How to compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    /// Counter shards: one per worker that classifies concurrently (workers beyond share, by
    /// index modulo). Defaults to the most queue pairs a VIF may have.
    pub counter_shards: usize,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            counter_shards: usize::from(MAX_QUEUE_PAIRS),
        }
    }
}

/// Eight counters: one cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct CounterLine([AtomicU64; 8]);

/// Counter slots after the rules'.
const DEFAULT_INGRESS: usize = 0;
const DEFAULT_EGRESS: usize = 1;
const WOULD_DENY: usize = 2;
const EXTRA_SLOTS: usize = 3;

/// The per-shard counters; see the module docs.
#[derive(Debug)]
struct HitCounters {
    lines: Box<[CounterLine]>,
    lines_per_shard: usize,
    shards: usize,
    rules: usize,
}

impl HitCounters {
    fn new(rules: usize, shards: usize) -> HitCounters {
        let shards = shards.max(1);
        let lines_per_shard = (rules + EXTRA_SLOTS).div_ceil(8);
        let lines = (0..shards * lines_per_shard)
            .map(|_| CounterLine::default())
            .collect();
        HitCounters {
            lines,
            lines_per_shard,
            shards,
            rules,
        }
    }

    #[inline]
    fn add(&self, worker: usize, slot: usize) {
        let line = (worker % self.shards) * self.lines_per_shard + slot / 8;
        if let Some(counter) = self.lines.get(line).and_then(|l| l.0.get(slot % 8)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn total(&self, slot: usize) -> u64 {
        (0..self.shards)
            .filter_map(|shard| {
                let line = shard * self.lines_per_shard + slot / 8;
                self.lines.get(line).and_then(|l| l.0.get(slot % 8))
            })
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Relaxed)))
    }
}

/// A compiled ACL. Immutable but for its counters; share it as `Arc<CompiledAcl>`.
#[derive(Debug)]
pub struct CompiledAcl {
    name: String,
    mode: Mode,
    stateful: bool,
    defaults: DefaultActions,
    /// By list position.
    actions: Box<[Action]>,
    tree: Tree,
    stats: TreeStats,
    counters: HitCounters,
}

impl CompiledAcl {
    /// Validates and compiles `spec` with default options.
    pub fn compile(spec: &AclSpec) -> Result<CompiledAcl, AclError> {
        Self::compile_with(spec, &CompileOptions::default())
    }

    pub fn compile_with(spec: &AclSpec, options: &CompileOptions) -> Result<CompiledAcl, AclError> {
        spec.validate()?;
        let (tree, stats) = Tree::build(&spec.rules);
        Ok(CompiledAcl {
            name: spec.name.clone(),
            mode: spec.mode,
            stateful: spec.stateful,
            defaults: spec.default_action,
            actions: spec.rules.iter().map(|rule| rule.action).collect(),
            tree,
            stats,
            counters: HitCounters::new(spec.rules.len(), options.counter_shards),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub const fn mode(&self) -> Mode {
        self.mode
    }

    pub const fn is_stateful(&self) -> bool {
        self.stateful
    }

    pub fn rule_count(&self) -> usize {
        self.actions.len()
    }

    /// Size of the compiled tree.
    pub const fn tree_stats(&self) -> TreeStats {
        self.stats
    }

    /// The rule set's answer for `key` in `direction`, without counting. Allocates nothing.
    #[inline]
    pub fn lookup(&self, direction: Direction, key: &AclKey) -> Classification {
        let winner = self.tree.lookup(key).and_then(|index| {
            let action = *self.actions.get(index as usize)?;
            Some(Classification {
                action,
                decider: Decider::Rule(index),
            })
        });
        winner.unwrap_or(Classification {
            action: match direction {
                Direction::Ingress => self.defaults.ingress,
                Direction::Egress => self.defaults.egress,
            },
            decider: Decider::Default,
        })
    }

    /// Classifies `key` for `direction`, counts the hit in `worker`'s shard, and applies the
    /// mode: in monitor mode a deny becomes [`AclVerdict::WouldDeny`]. Conntrack is the
    /// caller's (see [`super::Firewall`]).
    #[inline]
    pub fn classify(&self, direction: Direction, key: &AclKey, worker: usize) -> AclVerdict {
        let Classification { action, decider } = self.lookup(direction, key);
        let slot = match (decider, direction) {
            (Decider::Rule(index), _) => index as usize,
            (Decider::Default, Direction::Ingress) => self.counters.rules + DEFAULT_INGRESS,
            (Decider::Default, Direction::Egress) => self.counters.rules + DEFAULT_EGRESS,
        };
        self.counters.add(worker, slot);
        match (action, self.mode) {
            (Action::Allow, _) => AclVerdict::Allow(decider),
            (Action::Deny, Mode::Enforce) => AclVerdict::Deny(decider),
            (Action::Deny, Mode::Monitor) => {
                self.counters.add(worker, self.counters.rules + WOULD_DENY);
                AclVerdict::WouldDeny(decider)
            }
        }
    }

    /// Hits of each rule, by list position, summed over shards.
    pub fn rule_hits(&self) -> Vec<u64> {
        (0..self.counters.rules)
            .map(|slot| self.counters.total(slot))
            .collect()
    }

    /// Packets that matched no rule in `direction`.
    pub fn default_hits(&self, direction: Direction) -> u64 {
        let slot = match direction {
            Direction::Ingress => DEFAULT_INGRESS,
            Direction::Egress => DEFAULT_EGRESS,
        };
        self.counters.total(self.counters.rules + slot)
    }

    /// Packets a monitor-mode ACL would have denied.
    pub fn would_deny(&self) -> u64 {
        self.counters.total(self.counters.rules + WOULD_DENY)
    }
}
