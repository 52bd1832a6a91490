//! Neighbor Discovery (RFC 4861): the fixed fields of router/neighbor solicitation and
//! advertisement, a bounded walk over their options (§ 4.6), and a typed `NdpRepr`.
//!
//! This is what IPv6 anti-spoofing reads: the NS target, the NA target and its target
//! link-layer address, the source link-layer address of solicitations. An option of length 0 is
//! an error (§ 4.6: "nodes MUST silently discard an ND packet that contains an option with
//! length zero"), and it also ends the walk, which could otherwise spin in place. Unknown options
//! are skipped (§ 4.6); when an option repeats, the first one counts, as in Linux's
//! `ndisc_parse_options`. Redirect (§ 4.5) has accessors but no `NdpRepr` variant.

use std::net::Ipv6Addr;

use super::{Icmpv6Message, Icmpv6Packet};
use crate::mac::MacAddr;
use crate::wire::{ensure_len, Result, WireError};

mod field {
    use crate::wire::field::*;
    // Router advertisement (§ 4.2).
    pub const CUR_HOP_LIMIT: usize = 4;
    pub const RA_FLAGS: usize = 5;
    pub const ROUTER_LIFETIME: Field = 6..8;
    pub const REACHABLE_TIME: Field = 8..12;
    pub const RETRANS_TIME: Field = 12..16;
    // Neighbor advertisement flags (§ 4.4), then the target of NS, NA and redirect.
    pub const NA_FLAGS: usize = 4;
    pub const RESERVED: Field = 4..8;
    pub const TARGET: Field = 8..24;
}

const HEADER: &str = "ndp";
const OPTION: &str = "ndp option";

/// Length of the fixed part of `message`, where its options start (RFC 4861 § 4.1–4.5); 8 for
/// non-NDP types, the ICMPv6 header.
pub(super) const fn fixed_len(message: Icmpv6Message) -> usize {
    match message {
        Icmpv6Message::ROUTER_ADVERT => 16,
        Icmpv6Message::NEIGHBOR_SOLICIT | Icmpv6Message::NEIGHBOR_ADVERT => 24,
        Icmpv6Message::REDIRECT => 40,
        _ => 8,
    }
}

/// The R, S and O bits of a neighbor advertisement (RFC 4861 § 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NeighborFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

impl NeighborFlags {
    fn from_byte(byte: u8) -> Self {
        NeighborFlags {
            router: byte & 0x80 != 0,
            solicited: byte & 0x40 != 0,
            override_: byte & 0x20 != 0,
        }
    }

    fn to_byte(self) -> u8 {
        (u8::from(self.router) << 7)
            | (u8::from(self.solicited) << 6)
            | (u8::from(self.override_) << 5)
    }
}

/// The prefix information option (RFC 4861 § 4.6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// The L bit: the prefix is on-link.
    pub on_link: bool,
    /// The A bit: usable for stateless address autoconfiguration (RFC 4862).
    pub autonomous: bool,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// One NDP option. `Unknown` and `RedirectedHeader` carry the bytes after type and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOption<'a> {
    SourceLinkLayerAddr(MacAddr),
    TargetLinkLayerAddr(MacAddr),
    PrefixInfo(PrefixInfo),
    RedirectedHeader(&'a [u8]),
    Mtu(u32),
    Unknown { kind: u8, data: &'a [u8] },
}

impl NdpOption<'_> {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const REDIRECTED_HEADER: u8 = 4;
    pub const MTU: u8 = 5;

    /// Bytes this option takes on the wire (a multiple of 8 for the options vif emits).
    pub fn buffer_len(&self) -> usize {
        match self {
            NdpOption::SourceLinkLayerAddr(_) | NdpOption::TargetLinkLayerAddr(_) => 8,
            NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo(_) => 32,
            NdpOption::RedirectedHeader(data) | NdpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer`; returns its length. Fails, writing nothing,
    /// on a short buffer or a length that is not a multiple of 8 below 2048.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if !len.is_multiple_of(8) || len > 255 * 8 {
            return Err(WireError::BadField {
                header: OPTION,
                field: "length",
                value: len as u32,
                bound: "a multiple of 8 up to 2040",
            });
        }
        ensure_len(OPTION, buffer, len)?;
        let out = &mut buffer[..len];
        out.fill(0);
        out[1] = (len / 8) as u8;
        match *self {
            NdpOption::SourceLinkLayerAddr(mac) | NdpOption::TargetLinkLayerAddr(mac) => {
                out[0] = if matches!(self, NdpOption::SourceLinkLayerAddr(_)) {
                    Self::SOURCE_LLADDR
                } else {
                    Self::TARGET_LLADDR
                };
                out[2..8].copy_from_slice(mac.as_bytes());
            }
            NdpOption::Mtu(mtu) => {
                out[0] = Self::MTU;
                out[4..8].copy_from_slice(&mtu.to_be_bytes());
            }
            NdpOption::PrefixInfo(info) => {
                out[0] = Self::PREFIX_INFO;
                out[2] = info.prefix_len;
                out[3] = (u8::from(info.on_link) << 7) | (u8::from(info.autonomous) << 6);
                out[4..8].copy_from_slice(&info.valid_lifetime.to_be_bytes());
                out[8..12].copy_from_slice(&info.preferred_lifetime.to_be_bytes());
                out[16..32].copy_from_slice(&info.prefix.octets());
            }
            NdpOption::RedirectedHeader(data) => {
                out[0] = Self::REDIRECTED_HEADER;
                out[2..].copy_from_slice(data);
            }
            NdpOption::Unknown { kind, data } => {
                out[0] = kind;
                out[2..].copy_from_slice(data);
            }
        }
        Ok(len)
    }
}

/// Walks NDP options (RFC 4861 § 4.6). Each step consumes at least 8 bytes; a malformed option
/// (length 0, past the end, or a known type with the wrong length) yields one error and ends
/// the walk.
#[derive(Debug, Clone)]
pub struct NdpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> NdpOptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        NdpOptionIter { rest: options }
    }

    fn step(&mut self) -> Result<NdpOption<'a>> {
        let (kind, len) = match self.rest {
            [kind, len, ..] => (*kind, usize::from(*len) * 8),
            _ => return Err(truncated(2, self.rest.len())),
        };
        if len == 0 {
            return Err(bad("length", 0, ">= 1 (RFC 4861 4.6)"));
        }
        let option = self
            .rest
            .get(..len)
            .ok_or(truncated(len, self.rest.len()))?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        let data = option.get(2..).unwrap_or_default();
        let exact = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(bad("length", (len / 8) as u32, "as its type requires"))
            }
        };
        Ok(match kind {
            // RFC 2464 § 6: on Ethernet the link-layer address option is one 8-byte unit.
            NdpOption::SOURCE_LLADDR | NdpOption::TARGET_LLADDR => {
                exact(8)?;
                let mac = MacAddr::from_bytes(data).ok_or(truncated(8, len))?;
                if kind == NdpOption::SOURCE_LLADDR {
                    NdpOption::SourceLinkLayerAddr(mac)
                } else {
                    NdpOption::TargetLinkLayerAddr(mac)
                }
            }
            NdpOption::PREFIX_INFO => {
                exact(32)?;
                NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: data[0],
                    on_link: data[1] & 0x80 != 0,
                    autonomous: data[1] & 0x40 != 0,
                    valid_lifetime: be32(&data[2..6]),
                    preferred_lifetime: be32(&data[6..10]),
                    prefix: Ipv6Addr::from(be128(&data[14..30])),
                })
            }
            NdpOption::MTU => {
                exact(8)?;
                NdpOption::Mtu(be32(&data[2..6]))
            }
            NdpOption::REDIRECTED_HEADER => NdpOption::RedirectedHeader(data),
            _ => NdpOption::Unknown { kind, data },
        })
    }
}

impl<'a> Iterator for NdpOptionIter<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let option = self.step();
        if option.is_err() {
            self.rest = &[];
        }
        Some(option)
    }
}

impl core::iter::FusedIterator for NdpOptionIter<'_> {}

fn truncated(need: usize, len: usize) -> WireError {
    WireError::Truncated {
        header: OPTION,
        need,
        len,
    }
}

fn bad(field: &'static str, value: u32, bound: &'static str) -> WireError {
    WireError::BadField {
        header: OPTION,
        field,
        value,
        bound,
    }
}

/// Big-endian u32 from a slice its caller sized to 4 bytes.
fn be32(bytes: &[u8]) -> u32 {
    let mut out = [0u8; 4];
    out.copy_from_slice(bytes);
    u32::from_be_bytes(out)
}

fn be128(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(bytes);
    out
}

/// NDP accessors. Each returns `None` (or an empty walk) for other message types, so none can
/// read bytes that mean something else; `check_len` sized the buffer for the type.
impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// The target address of a neighbor solicitation, advertisement or redirect.
    pub fn target_addr(&self) -> Option<Ipv6Addr> {
        match self.msg_type() {
            Icmpv6Message::NEIGHBOR_SOLICIT
            | Icmpv6Message::NEIGHBOR_ADVERT
            | Icmpv6Message::REDIRECT => {
                let bytes = self.bytes().get(field::TARGET)?;
                Some(Ipv6Addr::from(be128(bytes)))
            }
            _ => None,
        }
    }

    /// The R/S/O flags of a neighbor advertisement.
    pub fn neighbor_flags(&self) -> Option<NeighborFlags> {
        if self.msg_type() != Icmpv6Message::NEIGHBOR_ADVERT {
            return None;
        }
        self.bytes()
            .get(field::NA_FLAGS)
            .map(|&byte| NeighborFlags::from_byte(byte))
    }

    /// Walks the options of an NDP message; empty for other types.
    pub fn ndp_options(&self) -> NdpOptionIter<'_> {
        let options = if self.msg_type().is_ndp() {
            self.bytes().get(fixed_len(self.msg_type())..)
        } else {
            None
        };
        NdpOptionIter::new(options.unwrap_or_default())
    }

    /// The first source link-layer address option; an error if any option is malformed.
    pub fn source_lladdr(&self) -> Result<Option<MacAddr>> {
        self.find_lladdr(NdpOption::SOURCE_LLADDR)
    }

    /// The first target link-layer address option; an error if any option is malformed.
    pub fn target_lladdr(&self) -> Result<Option<MacAddr>> {
        self.find_lladdr(NdpOption::TARGET_LLADDR)
    }

    fn find_lladdr(&self, kind: u8) -> Result<Option<MacAddr>> {
        let mut found = None;
        // Walk to the end even after a match: a malformed option anywhere invalidates the
        // message (RFC 4861 § 4.6), and a caller must not act on half of it.
        for option in self.ndp_options() {
            match option? {
                NdpOption::SourceLinkLayerAddr(mac) if kind == NdpOption::SOURCE_LLADDR => {
                    found = found.or(Some(mac))
                }
                NdpOption::TargetLinkLayerAddr(mac) if kind == NdpOption::TARGET_LLADDR => {
                    found = found.or(Some(mac))
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

/// A typed router/neighbor solicitation or advertisement with the options vif acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpRepr {
    RouterSolicit {
        src_lladdr: Option<MacAddr>,
    },
    RouterAdvert {
        cur_hop_limit: u8,
        /// M, O and the other flag bits (RFC 4861 § 4.2, RFC 4191, RFC 5175), as on the wire.
        flags: u8,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_time: u32,
        src_lladdr: Option<MacAddr>,
        mtu: Option<u32>,
        /// The first prefix information option; further ones are validated and not kept.
        prefix_info: Option<PrefixInfo>,
    },
    NeighborSolicit {
        target_addr: Ipv6Addr,
        src_lladdr: Option<MacAddr>,
    },
    NeighborAdvert {
        flags: NeighborFlags,
        target_addr: Ipv6Addr,
        target_lladdr: Option<MacAddr>,
    },
}

impl NdpRepr {
    /// Parses RS, RA, NS or NA: code 0 (RFC 4861 § 6.1.1, § 7.1.1) and well-formed options.
    /// Does not check the checksum: [`super::Icmpv6Repr::parse`] does, with the addresses.
    pub fn parse<T: AsRef<[u8]>>(packet: &Icmpv6Packet<T>) -> Result<NdpRepr> {
        packet.check_len()?;
        if packet.msg_code() != 0 {
            return Err(WireError::BadField {
                header: HEADER,
                field: "code",
                value: packet.msg_code().into(),
                bound: "0",
            });
        }
        let (mut src_lladdr, mut target_lladdr, mut mtu, mut prefix_info) =
            (None, None, None, None);
        for option in packet.ndp_options() {
            match option? {
                NdpOption::SourceLinkLayerAddr(mac) => src_lladdr = src_lladdr.or(Some(mac)),
                NdpOption::TargetLinkLayerAddr(mac) => target_lladdr = target_lladdr.or(Some(mac)),
                NdpOption::Mtu(value) => mtu = mtu.or(Some(value)),
                NdpOption::PrefixInfo(info) => prefix_info = prefix_info.or(Some(info)),
                NdpOption::RedirectedHeader(_) | NdpOption::Unknown { .. } => {}
            }
        }
        let bytes = packet.bytes();
        let target = || Ipv6Addr::from(be128(&bytes[field::TARGET]));
        Ok(match packet.msg_type() {
            Icmpv6Message::ROUTER_SOLICIT => NdpRepr::RouterSolicit { src_lladdr },
            Icmpv6Message::ROUTER_ADVERT => NdpRepr::RouterAdvert {
                cur_hop_limit: bytes[field::CUR_HOP_LIMIT],
                flags: bytes[field::RA_FLAGS],
                router_lifetime: u16::from_be_bytes([bytes[6], bytes[7]]),
                reachable_time: be32(&bytes[field::REACHABLE_TIME]),
                retrans_time: be32(&bytes[field::RETRANS_TIME]),
                src_lladdr,
                mtu,
                prefix_info,
            },
            Icmpv6Message::NEIGHBOR_SOLICIT => NdpRepr::NeighborSolicit {
                target_addr: target(),
                src_lladdr,
            },
            Icmpv6Message::NEIGHBOR_ADVERT => NdpRepr::NeighborAdvert {
                flags: NeighborFlags::from_byte(bytes[field::NA_FLAGS]),
                target_addr: target(),
                target_lladdr,
            },
            _ => {
                return Err(WireError::Unsupported {
                    header: HEADER,
                    what: "message type",
                })
            }
        })
    }

    pub const fn message(&self) -> Icmpv6Message {
        match self {
            NdpRepr::RouterSolicit { .. } => Icmpv6Message::ROUTER_SOLICIT,
            NdpRepr::RouterAdvert { .. } => Icmpv6Message::ROUTER_ADVERT,
            NdpRepr::NeighborSolicit { .. } => Icmpv6Message::NEIGHBOR_SOLICIT,
            NdpRepr::NeighborAdvert { .. } => Icmpv6Message::NEIGHBOR_ADVERT,
        }
    }

    /// The options `emit` writes, in order; `None` slots are skipped.
    fn options(&self) -> [Option<NdpOption<'static>>; 3] {
        match *self {
            NdpRepr::RouterSolicit { src_lladdr } | NdpRepr::NeighborSolicit { src_lladdr, .. } => {
                [src_lladdr.map(NdpOption::SourceLinkLayerAddr), None, None]
            }
            NdpRepr::RouterAdvert {
                src_lladdr,
                mtu,
                prefix_info,
                ..
            } => [
                src_lladdr.map(NdpOption::SourceLinkLayerAddr),
                mtu.map(NdpOption::Mtu),
                prefix_info.map(NdpOption::PrefixInfo),
            ],
            NdpRepr::NeighborAdvert { target_lladdr, .. } => [
                target_lladdr.map(NdpOption::TargetLinkLayerAddr),
                None,
                None,
            ],
        }
    }

    pub fn buffer_len(&self) -> usize {
        let options: usize = self
            .options()
            .iter()
            .flatten()
            .map(NdpOption::buffer_len)
            .sum();
        fixed_len(self.message()) + options
    }

    /// Writes type, code, the fixed fields and the options; the checksum is left to the
    /// caller ([`super::Icmpv6Repr::emit`]). Fails, writing nothing, on a short buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Icmpv6Packet<T>) -> Result<()> {
        let fixed = fixed_len(self.message());
        let bytes = packet.bytes_mut();
        ensure_len(HEADER, bytes, self.buffer_len())?;
        bytes[..fixed].fill(0);
        bytes[0] = self.message().0;
        match *self {
            NdpRepr::RouterSolicit { .. } => {}
            NdpRepr::RouterAdvert {
                cur_hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_time,
                ..
            } => {
                bytes[field::CUR_HOP_LIMIT] = cur_hop_limit;
                bytes[field::RA_FLAGS] = flags;
                bytes[field::ROUTER_LIFETIME].copy_from_slice(&router_lifetime.to_be_bytes());
                bytes[field::REACHABLE_TIME].copy_from_slice(&reachable_time.to_be_bytes());
                bytes[field::RETRANS_TIME].copy_from_slice(&retrans_time.to_be_bytes());
            }
            NdpRepr::NeighborSolicit { target_addr, .. } => {
                bytes[field::TARGET].copy_from_slice(&target_addr.octets());
            }
            NdpRepr::NeighborAdvert {
                flags, target_addr, ..
            } => {
                bytes[field::RESERVED].fill(0);
                bytes[field::NA_FLAGS] = flags.to_byte();
                bytes[field::TARGET].copy_from_slice(&target_addr.octets());
            }
        }
        let mut at = fixed;
        for option in self.options().iter().flatten() {
            at += option.emit(&mut bytes[at..])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
