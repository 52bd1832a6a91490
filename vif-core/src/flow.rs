//! The flow key: the fields the ACL engine matches and the switch steers on, taken from one
//! [`parse_frame`] pass, plus a fast deterministic hash of them.
//!
//! The fields follow Open vSwitch's flow (`lib/flow.h`): L2 addresses and VLANs, EtherType, the
//! IP addresses and protocol, the fragment state, and transport ports, with ICMP type and code
//! in the port slots. For ARP the sender and target protocol addresses fill the IP slots and the
//! opcode the protocol slot, as OVS does with `nw_proto`. A later fragment has no ports (0): ACLs
//! match it on L3 only. The VNI is not in the frame; the VXLAN uplink adds it with
//! [`FlowKey::with_vni`] after decapsulation.
//!
//! [`FlowKey::hash`] feeds the VXLAN UDP source port (RFC 7348 § 5) and queue steering: it must
//! be the same on every run and platform (no random seed), cheap, and well spread in its low
//! bits. It folds the fields as a few 64-bit words with the FxHash step (rotate, xor, multiply)
//! and finishes with the MurmurHash3 `fmix64` avalanche, since FxHash alone leaves low bits weak.
//! [`FlowKey::symmetric_hash`] gives both directions of a flow the same value.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::ids::{VlanId, Vni};
use crate::mac::MacAddr;
use crate::wire::arp::{ArpPacket, HTYPE_ETHERNET};
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::frame::{parse_frame, FrameLayout, IpFrag, L3Kind};
use crate::wire::ipv4::{IpProtocol, Ipv4Packet};
use crate::wire::ipv6::Ipv6Packet;
use crate::wire::{Result, WireError};

/// The network addresses of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum FlowIp {
    /// Not IP, or ARP for another protocol or hardware type.
    #[default]
    None,
    V4 {
        src: Ipv4Addr,
        dst: Ipv4Addr,
    },
    V6 {
        src: Ipv6Addr,
        dst: Ipv6Addr,
    },
}

/// The fields of one frame that ACLs match and the switch hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    /// VID of the outer tag: the S-tag of a QinQ frame, else the C-tag. `None` when untagged or
    /// priority-tagged (VID 0).
    pub vlan: Option<VlanId>,
    /// VID of the C-tag inside an S-tag.
    pub inner_vlan: Option<VlanId>,
    /// The EtherType after the tags.
    pub ethertype: EtherType,
    pub ip: FlowIp,
    /// IP: the upper-layer protocol number. ARP: the opcode when it fits a byte, else 0.
    pub ip_proto: u8,
    pub frag: IpFrag,
    /// TCP/UDP/SCTP source port; ICMP/ICMPv6 type. 0 otherwise.
    pub src_port: u16,
    /// TCP/UDP/SCTP destination port; ICMP/ICMPv6 code. 0 otherwise.
    pub dst_port: u16,
    pub vni: Option<Vni>,
}

impl FlowKey {
    /// Parses `frame` and extracts its key.
    pub fn extract(frame: &[u8]) -> Result<FlowKey> {
        let layout = parse_frame(frame)?;
        Self::extract_with_layout(frame, &layout)
    }

    /// Extracts the key of `frame` whose layout the caller already has. Reads only the fields
    /// of the key. A layout that does not describe `frame` gives an error, never a panic.
    pub fn extract_with_layout(frame: &[u8], layout: &FrameLayout) -> Result<FlowKey> {
        let ethernet = EthernetFrame::new_checked(frame)?;
        let outer = layout.s_tag.or(layout.c_tag);
        let mut key = FlowKey {
            src_mac: ethernet.src_addr(),
            dst_mac: ethernet.dst_addr(),
            vlan: outer.and_then(|tag| tag.vid),
            inner_vlan: layout.s_tag.and(layout.c_tag).and_then(|tag| tag.vid),
            ethertype: layout.ethertype,
            ip: FlowIp::None,
            ip_proto: 0,
            frag: layout.l3.frag,
            src_port: 0,
            dst_port: 0,
            vni: None,
        };
        let l3 = frame
            .get(layout.l3.offset..layout.l3.end)
            .ok_or(mismatch("l3 range"))?;
        match layout.l3.kind {
            L3Kind::Ipv4 => {
                let ip = Ipv4Packet::new_checked(l3)?;
                key.ip = FlowIp::V4 {
                    src: ip.src_addr(),
                    dst: ip.dst_addr(),
                };
                key.ip_proto = layout.l3.protocol.map_or(ip.protocol().0, |p| p.0);
            }
            L3Kind::Ipv6 => {
                let ip = Ipv6Packet::new_checked(l3)?;
                key.ip = FlowIp::V6 {
                    src: ip.src_addr(),
                    dst: ip.dst_addr(),
                };
                key.ip_proto = layout.l3.protocol.map_or(ip.next_header().0, |p| p.0);
            }
            L3Kind::Arp => {
                let arp = ArpPacket::new_checked(l3)?;
                key.ip_proto = u8::try_from(u16::from(arp.operation())).unwrap_or(0);
                if arp.hardware_type() == HTYPE_ETHERNET
                    && arp.protocol_type() == EtherType::IPV4
                    && arp.hardware_len() == 6
                    && arp.protocol_len() == 4
                {
                    key.ip = FlowIp::V4 {
                        src: ipv4_from(arp.sender_protocol_addr()),
                        dst: ipv4_from(arp.target_protocol_addr()),
                    };
                }
            }
            L3Kind::Other => {}
        }
        if let Some(l4) = layout.l4 {
            let end = l4.offset.checked_add(4).ok_or(mismatch("l4 offset"))?;
            let ports = frame.get(l4.offset..end).ok_or(mismatch("l4 offset"))?;
            match l4.proto {
                IpProtocol::TCP | IpProtocol::UDP | IpProtocol::SCTP => {
                    key.src_port = u16::from_be_bytes([ports[0], ports[1]]);
                    key.dst_port = u16::from_be_bytes([ports[2], ports[3]]);
                }
                IpProtocol::ICMP | IpProtocol::ICMPV6 => {
                    key.src_port = ports[0].into();
                    key.dst_port = ports[1].into();
                }
                _ => {}
            }
        }
        Ok(key)
    }

    /// The same key with the VXLAN network identifier the frame arrived on.
    pub const fn with_vni(mut self, vni: Vni) -> FlowKey {
        self.vni = Some(vni);
        self
    }

    pub fn src_ip(&self) -> Option<IpAddr> {
        match self.ip {
            FlowIp::None => None,
            FlowIp::V4 { src, .. } => Some(src.into()),
            FlowIp::V6 { src, .. } => Some(src.into()),
        }
    }

    pub fn dst_ip(&self) -> Option<IpAddr> {
        match self.ip {
            FlowIp::None => None,
            FlowIp::V4 { dst, .. } => Some(dst.into()),
            FlowIp::V6 { dst, .. } => Some(dst.into()),
        }
    }

    fn is_icmp(&self) -> bool {
        self.ip != FlowIp::None
            && matches!(
                IpProtocol(self.ip_proto),
                IpProtocol::ICMP | IpProtocol::ICMPV6
            )
    }

    /// The key of the reply direction: addresses and ports swapped. ICMP type and code stay.
    pub fn reversed(&self) -> FlowKey {
        let mut key = FlowKey {
            src_mac: self.dst_mac,
            dst_mac: self.src_mac,
            ip: match self.ip {
                FlowIp::None => FlowIp::None,
                FlowIp::V4 { src, dst } => FlowIp::V4 { src: dst, dst: src },
                FlowIp::V6 { src, dst } => FlowIp::V6 { src: dst, dst: src },
            },
            ..*self
        };
        if !self.is_icmp() {
            (key.src_port, key.dst_port) = (self.dst_port, self.src_port);
        }
        key
    }

    /// A 32-bit hash of every field; see the module docs.
    pub fn hash(&self) -> u32 {
        self.hash_with_seed(0)
    }

    /// [`Self::hash`] perturbed by `seed`, for a second independent table.
    pub fn hash_with_seed(&self, seed: u64) -> u32 {
        let mut h = mix(SEED_BASE ^ seed, mac_word(self.src_mac));
        h = mix(h, mac_word(self.dst_mac));
        h = mix(h, self.meta_word());
        h = mix(h, u64::from(self.src_port) << 16 | u64::from(self.dst_port));
        match self.ip {
            FlowIp::None => {}
            FlowIp::V4 { src, dst } => {
                h = mix(h, u64::from(src.to_bits()) << 32 | u64::from(dst.to_bits()));
            }
            FlowIp::V6 { src, dst } => {
                for half in [src.to_bits(), dst.to_bits()] {
                    h = mix(h, (half >> 64) as u64);
                    h = mix(h, half as u64);
                }
            }
        }
        avalanche(h)
    }

    /// A hash equal for a key and its [`Self::reversed`] key: the endpoints are put in a fixed
    /// order first. ICMP type and code are left out, so an echo request and its reply agree.
    pub fn symmetric_hash(&self) -> u32 {
        let mut key = *self;
        if key.is_icmp() {
            (key.src_port, key.dst_port) = (0, 0);
        }
        let reversed = key.reversed();
        if key.endpoint_order() <= reversed.endpoint_order() {
            key.hash()
        } else {
            reversed.hash()
        }
    }

    /// The source endpoint, then the destination: what `symmetric_hash` orders by.
    fn endpoint_order(&self) -> (FlowIp, u16, MacAddr, u16, MacAddr) {
        (
            self.ip,
            self.src_port,
            self.src_mac,
            self.dst_port,
            self.dst_mac,
        )
    }

    /// VLANs, EtherType, protocol, fragment state and VNI in one word. Each field has its own
    /// bits; the VNI's presence bit keeps `Some(0)` apart from `None`.
    fn meta_word(&self) -> u64 {
        let vid = |vlan: Option<VlanId>| u64::from(vlan.map_or(0, VlanId::get));
        let frag = match self.frag {
            IpFrag::No => 0,
            IpFrag::First => 1,
            IpFrag::Later => 2,
        };
        let vni = self.vni.map_or(0, |vni| u64::from(vni.get()) | 1 << 24);
        vid(self.vlan)
            ^ vid(self.inner_vlan) << 12
            ^ u64::from(self.ethertype.0) << 24
            ^ u64::from(self.ip_proto) << 40
            ^ frag << 48
            ^ vni.rotate_left(50)
    }
}

/// The FxHash multiplier (rustc's `FxHasher`): odd, with bits spread over the word.
const FX_K: u64 = 0x517c_c1b7_2722_0a95;
/// A non-zero start so an all-zero key does not hash through zeros.
const SEED_BASE: u64 = 0x9e37_79b9_7f4a_7c15;

#[inline]
fn mix(h: u64, word: u64) -> u64 {
    (h.rotate_left(5) ^ word).wrapping_mul(FX_K)
}

/// MurmurHash3's `fmix64`, folded to 32 bits: every input bit reaches every output bit.
#[inline]
fn avalanche(mut h: u64) -> u32 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h ^ (h >> 32)) as u32
}

fn mac_word(mac: MacAddr) -> u64 {
    let b = mac.0;
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// An IPv4 address from a slice `ArpPacket` sized by `plen`, which the caller checked is 4.
fn ipv4_from(bytes: &[u8]) -> Ipv4Addr {
    match bytes {
        [a, b, c, d] => Ipv4Addr::new(*a, *b, *c, *d),
        _ => Ipv4Addr::UNSPECIFIED,
    }
}

fn mismatch(field: &'static str) -> WireError {
    WireError::BadField {
        header: "flow",
        field,
        value: 0,
        bound: "inside the frame (layout from another frame?)",
    }
}

#[cfg(test)]
mod tests;
