//! The rule compiler: turns a rule list into a decision tree that classifies a packet in a
//! number of steps that grows with the log of the rule count, not with the count.
//!
//! # Geometry
//!
//! Every rule becomes a box in an 8-dimensional space (EtherType, address family, source and
//! destination address, protocol, source and destination port, "has L4 header"): an unset field
//! spans the whole axis, a prefix is an interval, an ICMP type and code sit on the port axes as
//! the flow key puts them. A packet is a point; a rule matches when the point is in its box and,
//! for the one field that is not an interval (TCP flags under a mask), `flags & mask == value`.
//! Boxes are kept sorted by (priority, list position), so the first box that holds the point is
//! the winner.
//!
//! # Tree (HyperSplit, Qi et al., INFOCOM 2009)
//!
//! Each inner node cuts its region in two along one axis at one threshold; a rule goes to each
//! side its box overlaps (so wide rules are copied). A leaf lists at most [`LEAF_RULES`] boxes,
//! checked in priority order. The cut is chosen per node among the box edges on every axis, as
//! the one that minimises the larger side's rule count (ties: fewer copies). Two prunings keep
//! the tree small: in a region, a box that covers it whole (and has no flags condition) matches
//! every point there, so the boxes after it are dropped; and a node whose every cut keeps every
//! rule on both sides becomes a leaf. Depth is capped at [`MAX_DEPTH`] and the total of leaf
//! entries at a budget proportional to the rule count, past which nodes become leaves: the tree
//! then degrades toward longer leaf scans, never toward unbounded memory.
//!
//! Tuple-space search (OVS, VPP) was the alternative: one hash probe per distinct mask shape.
//! With prefixes of any length and port ranges, random rule sets have hundreds of shapes at
//! 1,000 rules, and a miss probes them all; a tree's cost follows its depth instead.

use super::fields::addr_bits;
use super::key::{AclKey, PacketFamily};
use super::rule::{Rule, RuleFamily};

/// Axes of the rule space, in point order.
const ETHERTYPE: usize = 0;
const FAMILY: usize = 1;
const SRC: usize = 2;
const DST: usize = 3;
const PROTO: usize = 4;
const SRC_PORT: usize = 5;
const DST_PORT: usize = 6;
const L4: usize = 7;
const DIMS: usize = 8;

/// The largest value on each axis.
const AXIS_MAX: [u128; DIMS] = [
    0xffff,
    PacketFamily::V6 as u128,
    u128::MAX,
    u128::MAX,
    0xff,
    0xffff,
    0xffff,
    1,
];

/// Most boxes a leaf holds before the builder tries to cut it.
pub(crate) const LEAF_RULES: usize = 4;
/// Deepest path; beyond it nodes become leaves.
pub(crate) const MAX_DEPTH: usize = 48;
/// Leaf entries allowed per rule (plus a floor) before the builder stops cutting.
const LEAF_BUDGET_PER_RULE: usize = 48;
const LEAF_BUDGET_FLOOR: usize = 1 << 16;

/// A packet as a point on the axes.
pub(crate) type Point = [u128; DIMS];

/// Where `key` sits on each axis. Fields a packet lacks are 0 (addresses of a non-IP frame,
/// ports of a later fragment); the family and L4 axes keep them apart from real zeros.
pub(crate) fn point(key: &AclKey) -> Point {
    let flow = &key.flow;
    let family = key.family();
    let (src, dst, proto) = match family {
        PacketFamily::None => (0, 0, 0),
        _ => (
            flow.src_ip().map_or(0, addr_bits),
            flow.dst_ip().map_or(0, addr_bits),
            u128::from(flow.ip_proto),
        ),
    };
    let l4 = key.has_l4();
    let (src_port, dst_port) = if l4 {
        (u128::from(flow.src_port), u128::from(flow.dst_port))
    } else {
        (0, 0)
    };
    [
        u128::from(flow.ethertype.0),
        family as u128,
        src,
        dst,
        proto,
        src_port,
        dst_port,
        u128::from(l4),
    ]
}

/// One rule as a box, plus its flags condition.
#[derive(Debug, Clone)]
pub(crate) struct RuleBox {
    lo: Point,
    hi: Point,
    flags_mask: u8,
    flags_value: u8,
    /// The rule's position in the spec's list.
    pub(crate) index: u32,
}

impl RuleBox {
    fn new(rule: &Rule, index: u32) -> RuleBox {
        let mut lo = [0u128; DIMS];
        let mut hi = AXIS_MAX;
        let mut exact = |axis: usize, value: u128| {
            lo[axis] = value;
            hi[axis] = value;
        };
        if let Some(ethertype) = rule.ethertype {
            exact(ETHERTYPE, u128::from(ethertype.0 .0));
        }
        if let Some(protocol) = rule.protocol {
            exact(PROTO, u128::from(protocol.number()));
        }
        if let Some(icmp_type) = rule.icmp_type {
            exact(SRC_PORT, u128::from(icmp_type));
        }
        if let Some(icmp_code) = rule.icmp_code {
            exact(DST_PORT, u128::from(icmp_code));
        }
        if rule.has_l4_fields() {
            exact(L4, 1);
        }
        let (family_lo, family_hi) = match rule.family() {
            RuleFamily::Any => (PacketFamily::None, PacketFamily::V6),
            RuleFamily::AnyIp => (PacketFamily::V4, PacketFamily::V6),
            RuleFamily::V4 => (PacketFamily::V4, PacketFamily::V4),
            RuleFamily::V6 => (PacketFamily::V6, PacketFamily::V6),
        };
        (lo[FAMILY], hi[FAMILY]) = (family_lo as u128, family_hi as u128);
        for (axis, cidr) in [(SRC, rule.src), (DST, rule.dst)] {
            if let Some(cidr) = cidr {
                (lo[axis], hi[axis]) = cidr.range();
            }
        }
        for (axis, ports) in [(SRC_PORT, rule.src_ports), (DST_PORT, rule.dst_ports)] {
            if let Some(ports) = ports {
                (lo[axis], hi[axis]) = (u128::from(ports.lo()), u128::from(ports.hi()));
            }
        }
        let (flags_mask, flags_value) = rule
            .tcp_flags
            .map_or((0, 0), |f| (f.mask.0.bits(), f.value.0.bits()));
        RuleBox {
            lo,
            hi,
            flags_mask,
            flags_value,
            index,
        }
    }

    /// True when the box holds all of `region` and has no flags condition: it wins every point
    /// of the region that reaches it.
    fn covers(&self, region: &Region) -> bool {
        self.flags_mask == 0
            && (0..DIMS)
                .all(|axis| self.lo[axis] <= region.lo[axis] && region.hi[axis] <= self.hi[axis])
    }

    /// The box's extent on `axis`, clipped to `region`.
    fn clipped(&self, axis: usize, region: &Region) -> (u128, u128) {
        (
            self.lo[axis].max(region.lo[axis]),
            self.hi[axis].min(region.hi[axis]),
        )
    }
}

/// The axes that fit 16 bits, in the order [`MatchBox`] and [`PackedPoint`] store them.
const SMALL_AXES: [usize; 6] = [ETHERTYPE, FAMILY, PROTO, SRC_PORT, DST_PORT, L4];

/// How a split names its axis: an index into [`SMALL_AXES`], or one of these two.
const CODE_SRC: u8 = 6;
const CODE_DST: u8 = 7;

fn axis_code(axis: usize) -> u8 {
    match axis {
        SRC => CODE_SRC,
        DST => CODE_DST,
        _ => SMALL_AXES.iter().position(|&a| a == axis).unwrap_or(0) as u8,
    }
}

/// A packet point for lookup: the address axes as `u128`, the others as `u16`, so a point
/// is 48 bytes rather than 128.
#[derive(Debug, Clone, Copy)]
struct PackedPoint {
    small: [u16; 6],
    src: u128,
    dst: u128,
}

impl PackedPoint {
    fn new(point: &Point) -> PackedPoint {
        PackedPoint {
            // Every small axis is at most 0xffff (AXIS_MAX).
            small: SMALL_AXES.map(|axis| point[axis] as u16),
            src: point[SRC],
            dst: point[DST],
        }
    }

    /// The value on the axis a split stores as `code` ([`axis_code`]).
    #[inline]
    fn value(&self, code: u8) -> u128 {
        match code {
            CODE_SRC => self.src,
            CODE_DST => self.dst,
            small => self
                .small
                .get(usize::from(small))
                .map_or(0, |&v| u128::from(v)),
        }
    }
}

/// A [`RuleBox`] packed for lookup: 96 bytes, so a leaf's candidates cost few cache lines.
#[derive(Debug, Clone)]
struct MatchBox {
    src: (u128, u128),
    dst: (u128, u128),
    small_lo: [u16; 6],
    small_hi: [u16; 6],
    flags_mask: u8,
    flags_value: u8,
    index: u32,
}

impl MatchBox {
    fn new(rule: &RuleBox) -> MatchBox {
        MatchBox {
            src: (rule.lo[SRC], rule.hi[SRC]),
            dst: (rule.lo[DST], rule.hi[DST]),
            small_lo: SMALL_AXES.map(|axis| rule.lo[axis] as u16),
            small_hi: SMALL_AXES.map(|axis| rule.hi[axis] as u16),
            flags_mask: rule.flags_mask,
            flags_value: rule.flags_value,
            index: rule.index,
        }
    }

    /// True when the point is in the box and the flags match; cheap axes first.
    #[inline]
    fn matches(&self, point: &PackedPoint, tcp_flags: u8) -> bool {
        tcp_flags & self.flags_mask == self.flags_value
            && self
                .small_lo
                .iter()
                .zip(&self.small_hi)
                .zip(&point.small)
                .all(|((lo, hi), value)| lo <= value && value <= hi)
            && (self.src.0..=self.src.1).contains(&point.src)
            && (self.dst.0..=self.dst.1).contains(&point.dst)
    }
}

/// A node of the tree. Children of a split are laid out in preorder: the left child follows
/// its parent, so the common descent reads forward in memory.
#[derive(Debug, Clone, Copy)]
enum Node {
    /// Points whose value on `axis` ([`axis_code`]) is `>= threshold` go to `right`, others
    /// to the next node.
    Split {
        axis: u8,
        threshold: u128,
        right: u32,
    },
    /// Candidates `leaf_entries[start..end]`, in priority order.
    Leaf { start: u32, end: u32 },
}

/// An axis-aligned region of the rule space, bounds inclusive.
#[derive(Debug, Clone)]
struct Region {
    lo: Point,
    hi: Point,
}

/// The compiled rule set.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    /// Sorted by (priority, list position): position in this array is precedence.
    boxes: Box<[MatchBox]>,
    nodes: Box<[Node]>,
    leaf_entries: Box<[u32]>,
}

/// Counts kept while building.
struct Builder<'a> {
    boxes: &'a [RuleBox],
    nodes: Vec<Node>,
    leaf_entries: Vec<u32>,
    budget: usize,
    max_depth_reached: usize,
}

/// Shape of a built tree, for tests and the compile-time log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeStats {
    pub rules: usize,
    pub nodes: usize,
    pub leaf_entries: usize,
    pub depth: usize,
}

impl Tree {
    /// Builds the tree of a validated rule list. Never fails: past the budget the leaves grow.
    pub(crate) fn build(rules: &[Rule]) -> (Tree, TreeStats) {
        let mut boxes: Vec<RuleBox> = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| RuleBox::new(rule, u32::try_from(index).unwrap_or(u32::MAX)))
            .collect();
        // Stable sort: equal priorities keep list order.
        boxes.sort_by_key(|b| rules.get(b.index as usize).map_or(u32::MAX, |r| r.priority));
        let mut builder = Builder {
            boxes: &boxes,
            nodes: Vec::new(),
            leaf_entries: Vec::new(),
            budget: rules
                .len()
                .saturating_mul(LEAF_BUDGET_PER_RULE)
                .max(LEAF_BUDGET_FLOOR),
            max_depth_reached: 0,
        };
        let all: Vec<u32> = (0..boxes.len())
            .filter_map(|i| u32::try_from(i).ok())
            .collect();
        let region = Region {
            lo: [0; DIMS],
            hi: AXIS_MAX,
        };
        builder.build(all, region, 0);
        let stats = TreeStats {
            rules: rules.len(),
            nodes: builder.nodes.len(),
            leaf_entries: builder.leaf_entries.len(),
            depth: builder.max_depth_reached,
        };
        let tree = Tree {
            nodes: builder.nodes.into_boxed_slice(),
            leaf_entries: builder.leaf_entries.into_boxed_slice(),
            boxes: boxes.iter().map(MatchBox::new).collect(),
        };
        (tree, stats)
    }

    /// The list position of the winning rule for `key`, if any rule matches.
    #[inline]
    pub(crate) fn lookup(&self, key: &AclKey) -> Option<u32> {
        let point = PackedPoint::new(&point(key));
        let tcp_flags = key.tcp_flags.bits();
        let mut at = 0usize;
        // Each step moves to a later node (preorder), so the walk ends within nodes.len() steps.
        loop {
            match *self.nodes.get(at)? {
                Node::Split {
                    axis,
                    threshold,
                    right,
                } => {
                    let value = point.value(axis);
                    at = if value >= threshold {
                        right as usize
                    } else {
                        at + 1
                    };
                }
                Node::Leaf { start, end } => {
                    let candidates = self.leaf_entries.get(start as usize..end as usize)?;
                    return candidates
                        .iter()
                        .filter_map(|&position| self.boxes.get(position as usize))
                        .find(|b| b.matches(&point, tcp_flags))
                        .map(|b| b.index);
                }
            }
        }
    }
}

impl Builder<'_> {
    /// Builds the subtree for `rules` (positions, in priority order) over `region`; returns
    /// the index of its root.
    fn build(&mut self, mut rules: Vec<u32>, region: Region, depth: usize) -> usize {
        self.max_depth_reached = self.max_depth_reached.max(depth);
        if let Some(cover) = rules.iter().position(|&p| {
            self.boxes
                .get(p as usize)
                .is_some_and(|b| b.covers(&region))
        }) {
            rules.truncate(cover + 1);
        }
        let at = self.nodes.len();
        let cut = if rules.len() <= LEAF_RULES
            || depth >= MAX_DEPTH
            || self.leaf_entries.len() >= self.budget
        {
            None
        } else {
            self.best_cut(&rules, &region)
        };
        let Some((axis, threshold)) = cut else {
            let start = self.leaf_entries.len();
            self.leaf_entries.extend_from_slice(&rules);
            self.nodes.push(Node::Leaf {
                start: u32::try_from(start).unwrap_or(u32::MAX),
                end: u32::try_from(self.leaf_entries.len()).unwrap_or(u32::MAX),
            });
            return at;
        };
        let (mut left_region, mut right_region) = (region.clone(), region);
        left_region.hi[axis] = threshold - 1;
        right_region.lo[axis] = threshold;
        let side = |region: &Region| -> Vec<u32> {
            rules
                .iter()
                .copied()
                .filter(|&p| {
                    self.boxes.get(p as usize).is_some_and(|b| {
                        b.lo[axis] <= region.hi[axis] && region.lo[axis] <= b.hi[axis]
                    })
                })
                .collect()
        };
        let (left, right) = (side(&left_region), side(&right_region));
        drop(rules);
        self.nodes.push(Node::Split {
            axis: axis_code(axis),
            threshold,
            right: 0,
        });
        self.build(left, left_region, depth + 1);
        let right_at = self.build(right, right_region, depth + 1);
        if let Some(Node::Split { right, .. }) = self.nodes.get_mut(at) {
            *right = u32::try_from(right_at).unwrap_or(u32::MAX);
        }
        at
    }

    /// The cut (axis, threshold) that minimises the larger side, then the copies; `None` when
    /// every cut keeps every rule on both sides.
    fn best_cut(&self, rules: &[u32], region: &Region) -> Option<(usize, u128)> {
        let n = rules.len();
        let mut best: Option<((usize, usize), (usize, u128))> = None;
        let mut los = Vec::with_capacity(n);
        let mut his = Vec::with_capacity(n);
        let mut thresholds = Vec::with_capacity(2 * n);
        for axis in 0..DIMS {
            if region.lo[axis] == region.hi[axis] {
                continue;
            }
            los.clear();
            his.clear();
            thresholds.clear();
            for b in rules.iter().filter_map(|&p| self.boxes.get(p as usize)) {
                let (lo, hi) = b.clipped(axis, region);
                los.push(lo);
                his.push(hi);
                // A cut at t splits [lo, t - 1] from [t, hi]: useful where a box starts or
                // just after one ends, strictly inside the region.
                if lo > region.lo[axis] {
                    thresholds.push(lo);
                }
                if hi < region.hi[axis] {
                    thresholds.push(hi + 1);
                }
            }
            los.sort_unstable();
            his.sort_unstable();
            thresholds.sort_unstable();
            thresholds.dedup();
            for &t in &thresholds {
                let left = los.partition_point(|&lo| lo < t);
                let right = n - his.partition_point(|&hi| hi < t);
                if left == n && right == n {
                    continue;
                }
                let score = (left.max(right), left + right);
                if best.is_none_or(|(s, _)| score < s) {
                    best = Some((score, (axis, t)));
                }
            }
        }
        best.map(|(_, cut)| cut)
    }
}
