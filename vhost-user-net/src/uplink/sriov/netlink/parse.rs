//! Reading rtnetlink replies: the VF list of an `RTM_NEWLINK` reply (`rtnl_fill_vfinfo` in the
//! kernel's `net/core/rtnetlink.c`) and the code and extended-ack reason of an `NLMSG_ERROR`.
//! Every length is checked against what is left of the message: a malformed reply is an
//! error, never a panic.

use vif_core::mac::MacAddr;

use super::*;

/// Walks the attributes in `bytes`; `base` is their offset in the message, for errors.
struct Attrs<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
}

fn attrs(bytes: &[u8], base: usize) -> Attrs<'_> {
    Attrs { bytes, at: 0, base }
}

impl<'a> Iterator for Attrs<'a> {
    /// `(type, payload)`.
    type Item = Result<(u16, &'a [u8]), NetlinkError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.at..)?;
        if rest.len() < NLA_HDR_LEN {
            return None; // trailing padding
        }
        let offset = self.base.saturating_add(self.at);
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let attr_type = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        let Some(payload) = (len >= NLA_HDR_LEN)
            .then(|| rest.get(NLA_HDR_LEN..len))
            .flatten()
        else {
            self.at = self.bytes.len();
            return Some(Err(NetlinkError::Malformed {
                what: "attribute length",
                offset,
            }));
        };
        // NLA_ALIGN: the next attribute starts at a multiple of 4.
        self.at = self.at.saturating_add(len.saturating_add(3) & !3);
        Some(Ok((attr_type, payload)))
    }
}

pub(super) fn ne_u32(bytes: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(4)?;
    let b = bytes.get(start..start.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

fn ne_u64(bytes: &[u8]) -> Option<u64> {
    let b: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_ne_bytes(b))
}

fn parse_vf_stats(payload: &[u8], base: usize) -> Result<VfStats, NetlinkError> {
    let mut stats = VfStats::default();
    for attr in attrs(payload, base) {
        let (attr_type, value) = attr?;
        let slot = match attr_type {
            IFLA_VF_STATS_RX_PACKETS => &mut stats.rx_packets,
            IFLA_VF_STATS_TX_PACKETS => &mut stats.tx_packets,
            IFLA_VF_STATS_RX_BYTES => &mut stats.rx_bytes,
            IFLA_VF_STATS_TX_BYTES => &mut stats.tx_bytes,
            IFLA_VF_STATS_BROADCAST => &mut stats.broadcast,
            IFLA_VF_STATS_MULTICAST => &mut stats.multicast,
            IFLA_VF_STATS_RX_DROPPED => &mut stats.rx_dropped,
            IFLA_VF_STATS_TX_DROPPED => &mut stats.tx_dropped,
            _ => continue, // IFLA_VF_STATS_PAD and counters newer than vif
        };
        *slot = ne_u64(value).ok_or(NetlinkError::Malformed {
            what: "IFLA_VF_STATS counter",
            offset: base,
        })?;
    }
    Ok(stats)
}

fn parse_vf_info(payload: &[u8], base: usize) -> Result<VfReport, NetlinkError> {
    let malformed = |what| NetlinkError::Malformed { what, offset: base };
    let mut report: Option<VfReport> = None;
    let mut vlan = None;
    let mut spoofchk = None;
    let mut trust = None;
    let mut rate = None;
    let mut stats = None;
    for attr in attrs(payload, base) {
        let (attr_type, value) = attr?;
        match attr_type {
            IFLA_VF_MAC => {
                let vf = ne_u32(value, 0).ok_or(malformed("IFLA_VF_MAC"))?;
                let mac = value
                    .get(4..10)
                    .and_then(MacAddr::from_bytes)
                    .ok_or(malformed("IFLA_VF_MAC"))?;
                report = Some(VfReport {
                    vf,
                    mac,
                    vlan: None,
                    spoofchk: None,
                    trust: None,
                    rate: None,
                    stats: None,
                });
            }
            IFLA_VF_VLAN => {
                let (vid, qos) = ne_u32(value, 1)
                    .zip(ne_u32(value, 2))
                    .ok_or(malformed("IFLA_VF_VLAN"))?;
                vlan = Some(VfVlan {
                    vid: u16::try_from(vid).map_err(|_| malformed("IFLA_VF_VLAN vlan"))?,
                    qos: u8::try_from(qos).map_err(|_| malformed("IFLA_VF_VLAN qos"))?,
                });
            }
            // A driver without the knob reports -1 (all ones): not a setting.
            IFLA_VF_SPOOFCHK => {
                let setting = ne_u32(value, 1).ok_or(malformed("IFLA_VF_SPOOFCHK"))?;
                spoofchk = (setting != u32::MAX).then_some(setting != 0);
            }
            IFLA_VF_TRUST => {
                let setting = ne_u32(value, 1).ok_or(malformed("IFLA_VF_TRUST"))?;
                trust = (setting != u32::MAX).then_some(setting != 0);
            }
            IFLA_VF_RATE => {
                let (min, max) = ne_u32(value, 1)
                    .zip(ne_u32(value, 2))
                    .ok_or(malformed("IFLA_VF_RATE"))?;
                rate = Some(VfRate {
                    min_mbps: min,
                    max_mbps: max,
                });
            }
            IFLA_VF_STATS => stats = Some(parse_vf_stats(value, base)?),
            _ => {}
        }
    }
    let mut report = report.ok_or(malformed("IFLA_VF_INFO without IFLA_VF_MAC"))?;
    report.vlan = vlan;
    report.spoofchk = spoofchk;
    report.trust = trust;
    report.rate = rate;
    report.stats = stats;
    Ok(report)
}

/// The VFs in an `RTM_NEWLINK` reply (one netlink message, header included). A link without
/// VFs has no `IFLA_VFINFO_LIST`: the list is empty.
pub fn parse_vf_reports(msg: &[u8]) -> Result<Vec<VfReport>, NetlinkError> {
    let header = NLMSG_HDR_LEN + IFINFOMSG_LEN;
    let len = ne_u32(msg, 0).ok_or(NetlinkError::Malformed {
        what: "nlmsghdr",
        offset: 0,
    })? as usize;
    let body = msg.get(header..len).ok_or(NetlinkError::Malformed {
        what: "nlmsg_len",
        offset: 0,
    })?;
    let mut reports = Vec::new();
    for attr in attrs(body, header) {
        let (attr_type, list) = attr?;
        if attr_type != IFLA_VFINFO_LIST {
            continue;
        }
        for info in attrs(list, header) {
            let (info_type, payload) = info?;
            if info_type == IFLA_VF_INFO {
                reports.push(parse_vf_info(payload, header)?);
            }
        }
    }
    Ok(reports)
}

/// Reads the error code and extended-ack message of an `NLMSG_ERROR` message.
pub(super) fn parse_error(msg: &[u8], flags: u16) -> Result<(i32, Option<String>), NetlinkError> {
    let malformed = NetlinkError::Malformed {
        what: "nlmsgerr",
        offset: NLMSG_HDR_LEN,
    };
    let code = ne_u32(msg, NLMSG_HDR_LEN / 4).ok_or(malformed)? as i32;
    let mut message = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // nlmsgerr: error (4), then the request's header, whole or capped (NETLINK_CAP_ACK).
        let request_len = if flags & NLM_F_CAPPED != 0 {
            NLMSG_HDR_LEN
        } else {
            ne_u32(msg, NLMSG_HDR_LEN / 4 + 1).unwrap_or(0) as usize
        };
        let tlvs_at = (NLMSG_HDR_LEN + 4).saturating_add(request_len);
        if let Some(tlvs) = msg.get(tlvs_at..) {
            for attr in attrs(tlvs, tlvs_at).flatten() {
                if attr.0 == NLMSGERR_ATTR_MSG {
                    let text = attr.1.split(|&b| b == 0).next().unwrap_or_default();
                    message = Some(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
    }
    Ok((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds an `RTM_NEWLINK` reply the way `rtnl_fill_vfinfo` lays one VF out (kernel
    /// `net/core/rtnetlink.c`), by hand: MAC, VLAN, RATE, SPOOFCHK, TRUST, STATS with a PAD.
    fn reply_with_one_vf() -> Vec<u8> {
        let mut msg = MessageBuilder::new(RTM_NEWLINK, 0).ifinfomsg(0, 7);
        msg.attr(IFLA_IFNAME, b"eth0\0");
        let list = msg.begin_nest(IFLA_VFINFO_LIST);
        let info = msg.begin_nest(IFLA_VF_INFO);
        let mut mac = 2u32.to_ne_bytes().to_vec();
        mac.extend_from_slice(&[0x52, 0x54, 0, 0xab, 0xcd, 0xef]);
        mac.resize(36, 0);
        msg.attr(IFLA_VF_MAC, &mac);
        msg.attr(IFLA_VF_VLAN, &u32s(&[2, 100, 5]));
        msg.attr(IFLA_VF_RATE, &u32s(&[2, 0, 1000]));
        msg.attr(IFLA_VF_SPOOFCHK, &u32s(&[2, 1]));
        msg.attr(IFLA_VF_TRUST, &u32s(&[2, u32::MAX]));
        let stats = msg.begin_nest(IFLA_VF_STATS | 0x8000);
        for (kind, value) in [(0u16, 10u64), (1, 20), (2, 1000), (3, 2000), (7, 3)] {
            msg.attr(6, &[]); // IFLA_VF_STATS_PAD before each 64-bit value
            msg.attr(kind, &value.to_ne_bytes());
        }
        msg.end_nest(stats);
        msg.end_nest(info);
        msg.end_nest(list);
        msg.finish()
    }

    #[test]
    fn parses_a_vf_with_stats() {
        let reports = parse_vf_reports(&reply_with_one_vf()).unwrap();
        assert_eq!(reports.len(), 1);
        let vf = reports[0];
        assert_eq!(vf.vf, 2);
        assert_eq!(vf.mac, MacAddr([0x52, 0x54, 0, 0xab, 0xcd, 0xef]));
        assert_eq!(vf.vlan, Some(VfVlan { vid: 100, qos: 5 }));
        assert_eq!(vf.spoofchk, Some(true));
        assert_eq!(vf.trust, None, "-1 means the driver has no trust knob");
        assert_eq!(
            vf.rate,
            Some(VfRate {
                min_mbps: 0,
                max_mbps: 1000
            })
        );
        let stats = vf.stats.unwrap();
        assert_eq!((stats.rx_packets, stats.tx_packets), (10, 20));
        assert_eq!(
            (stats.rx_bytes, stats.tx_bytes, stats.rx_dropped),
            (1000, 2000, 3)
        );
    }

    #[test]
    fn link_without_vfs_has_none() {
        let msg = MessageBuilder::new(RTM_NEWLINK, 0).ifinfomsg(0, 1).finish();
        assert!(parse_vf_reports(&msg).unwrap().is_empty());
    }

    #[test]
    fn error_reply_carries_the_extended_ack() {
        // NLMSG_ERROR, capped, with NLMSGERR_ATTR_MSG: error -95, the request's header, TLVs.
        let mut msg = MessageBuilder::new(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS);
        msg.buf.extend_from_slice(&(-95i32).to_ne_bytes());
        msg.buf.extend_from_slice(&[0; NLMSG_HDR_LEN]);
        msg.attr(NLMSGERR_ATTR_MSG, b"no VFs\0");
        let msg = msg.finish();
        let flags = NLM_F_CAPPED | NLM_F_ACK_TLVS;
        assert_eq!(
            parse_error(&msg, flags).unwrap(),
            (-95, Some("no VFs".to_owned()))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_vf_reports(&bytes);
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS);
            let _ = parse_error(&bytes, NLM_F_ACK_TLVS | NLM_F_CAPPED);
        }

        #[test]
        fn mutated_replies_never_panic(at in 0usize..400, byte in any::<u8>()) {
            let mut reply = reply_with_one_vf();
            let len = reply.len();
            reply[at % len] = byte;
            let _ = parse_vf_reports(&reply);
        }
    }
}
