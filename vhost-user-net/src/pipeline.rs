//! The per-frame decision: validate → policy (rate limit, port security, egress ACL) → switch
//! lookup → [`Verdict`].
//!
//! The pipeline decides and never moves frames: [`crate::tx`] acts on the verdict (hands the
//! frame to a port, floods it, counts the drop, or leaves the chain in the ring on `Throttle`).
//! [`Pipeline::classify_guest`] runs the sending VIF's policy ([`crate::policy`]) before the
//! switch sees the frame, so a spoofed or denied frame never teaches the FDB its source MAC.
//! The receiving VIF's ingress policy runs in its own worker, on delivery ([`crate::rx`]).
//! Uplinks (VXLAN, VLAN, SR-IOV) are [`crate::port::Port`]s on the segment and use
//! [`Pipeline::classify`].
//!
//! Input is a frame already copied out of guest memory into a backend-owned buffer, so what is
//! parsed here cannot change under us (STYLE.md § 2).

use vif_core::wire::ethernet::EthernetFrame;

use crate::policy::{PolicyBurst, TxJudgement};
use crate::port::PortId;
use crate::switch::Burst;
use vif_core::stats::DropReason;

/// The minimum frame the pipeline looks at: an Ethernet header (IEEE 802.3 § 3.1.1).
pub const MIN_FRAME_LEN: usize = vif_core::wire::ethernet::HEADER_LEN;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver to exactly this port.
    Forward(PortId),
    /// Deliver to every port of the segment but the ingress one (broadcast, multicast, unknown
    /// unicast).
    Flood,
    /// Count and discard.
    Drop(DropReason),
    /// Over the rate limit: leave the frame in the guest's ring and retry later (STYLE.md § 6);
    /// `PolicyBurst::retry_in_ns` says when.
    Throttle,
}

/// The decision chain for frames entering a segment from one port.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    ingress: PortId,
}

impl Pipeline {
    pub fn new(ingress: PortId) -> Pipeline {
        Pipeline { ingress }
    }

    pub fn ingress(&self) -> PortId {
        self.ingress
    }

    /// [`Pipeline::classify`] for a frame a guest sent, after its VIF's `policy` (one parse of
    /// the frame, in [`PolicyBurst::judge_tx`]) let it through.
    pub fn classify_guest(
        &self,
        frame: &[u8],
        burst: &mut Burst<'_>,
        policy: &mut PolicyBurst<'_>,
    ) -> Verdict {
        if !policy.is_idle() {
            match policy.judge_tx(frame) {
                TxJudgement::Pass => {}
                TxJudgement::Drop(reason) => return Verdict::Drop(reason),
                TxJudgement::Throttle { .. } => return Verdict::Throttle,
            }
        }
        self.classify(frame, burst)
    }

    /// Decides where `frame` goes, learning its source MAC on the way.
    pub fn classify(&self, frame: &[u8], burst: &mut Burst<'_>) -> Verdict {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return Verdict::Drop(DropReason::Malformed);
        };
        let src = ethernet.src_addr();
        let dst = ethernet.dst_addr();
        // A group source address is invalid on the wire (IEEE 802.3 § 3.2.3: the source is an
        // individual address); drop rather than let a guest poison the FDB or spoof a group.
        if src.is_multicast() {
            return Verdict::Drop(DropReason::Malformed);
        }
        burst.learn(src, self.ingress);
        if dst.is_multicast() {
            return Verdict::Flood;
        }
        match burst.lookup(dst) {
            // The destination lives behind the ingress port: forwarding it back would be a
            // hairpin, and the frame already reached its segment of the network.
            Some(port) if port == self.ingress => Verdict::Drop(DropReason::Hairpin),
            Some(port) => Verdict::Forward(port),
            None => Verdict::Flood,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::port::{Enqueued, FrameRef, Port};
    use crate::switch::Segment;
    use std::sync::Arc;
    use std::time::Instant;
    use vif_core::mac::MacAddr;

    struct NullPort;
    impl Port for NullPort {
        fn name(&self) -> &str {
            "null"
        }
        fn enqueue(&self, _: FrameRef<'_>, _: u16) -> Result<Enqueued, DropReason> {
            Ok(Enqueued::Queued)
        }
        fn wake(&self, _: u16) {}
    }

    fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
        let mut bytes = vec![0u8; 60];
        bytes[0..6].copy_from_slice(dst.as_bytes());
        bytes[6..12].copy_from_slice(src.as_bytes());
        bytes[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        bytes
    }

    #[test]
    fn unknown_then_known_unicast() {
        let segment = Segment::new("seg");
        let a = segment.attach(Arc::new(NullPort)).unwrap();
        let b = segment.attach(Arc::new(NullPort)).unwrap();
        let (mac_a, mac_b) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let now = Instant::now();
        let from_a = Pipeline::new(a);
        let from_b = Pipeline::new(b);
        {
            let mut burst = segment.begin_burst(now);
            assert_eq!(
                from_a.classify(&frame(mac_b, mac_a), &mut burst),
                Verdict::Flood
            );
        }
        {
            let mut burst = segment.begin_burst(now);
            assert_eq!(
                from_b.classify(&frame(mac_a, mac_b), &mut burst),
                Verdict::Forward(a)
            );
        }
        let mut burst = segment.begin_burst(now);
        assert_eq!(
            from_a.classify(&frame(mac_b, mac_a), &mut burst),
            Verdict::Forward(b)
        );
        assert_eq!(
            from_a.classify(&frame(MacAddr::BROADCAST, mac_a), &mut burst),
            Verdict::Flood
        );
    }

    #[test]
    fn rejects_short_and_group_source() {
        let segment = Segment::new("seg");
        let a = segment.attach(Arc::new(NullPort)).unwrap();
        let mut burst = segment.begin_burst(Instant::now());
        let pipeline = Pipeline::new(a);
        assert_eq!(
            pipeline.classify(&[0u8; 13], &mut burst),
            Verdict::Drop(DropReason::Malformed)
        );
        assert_eq!(
            pipeline.classify(
                &frame(MacAddr([2, 0, 0, 0, 0, 2]), MacAddr::BROADCAST),
                &mut burst
            ),
            Verdict::Drop(DropReason::Malformed)
        );
    }

    #[test]
    fn no_hairpin_to_a_mac_learned_on_ingress() {
        let segment = Segment::new("seg");
        let a = segment.attach(Arc::new(NullPort)).unwrap();
        let _b = segment.attach(Arc::new(NullPort)).unwrap();
        let (mac1, mac2) = (MacAddr([2, 0, 0, 0, 0, 1]), MacAddr([2, 0, 0, 0, 0, 2]));
        let pipeline = Pipeline::new(a);
        segment.begin_burst(Instant::now()).learn(mac2, a);
        let mut burst = segment.begin_burst(Instant::now());
        assert!(matches!(
            pipeline.classify(&frame(mac2, mac1), &mut burst),
            Verdict::Drop(_)
        ));
    }
}
