//! Anti-spoofing cases on frames laid out by hand from RFC 826 (ARP), RFC 791 + RFC 768
//! (IPv4/UDP) and RFC 8200 + RFC 4861 (IPv6 neighbor discovery). Checksums are left zero:
//! port security does not read them.

use super::*;
use crate::acl::tests::{GUEST_MAC, PEER_MAC};
use crate::wire::frame::parse_frame;

const GUEST_V4: [u8; 4] = [10, 0, 0, 5];
const GUEST_V6: &str = "2001:db8::5";

fn security() -> PortSecurity {
    let spec: PortSecuritySpec =
        toml::from_str("allowed_ips = [\"10.0.0.5\", \"2001:db8::5\", \"192.0.2.0/28\"]").unwrap();
    PortSecurity::new(GUEST_MAC, &spec).unwrap()
}

fn check(security: &PortSecurity, frame: &[u8]) -> Result<(), SpoofCause> {
    let layout = parse_frame(frame).unwrap();
    let key = AclKey::extract_with_layout(frame, &layout).unwrap();
    security.check(frame, &layout, &key)
}

fn ethernet(src: MacAddr, ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&PEER_MAC.octets());
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

fn udp4(src_mac: MacAddr, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut frame = ethernet(src_mac, 0x0800);
    frame.extend_from_slice(&[0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0]);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&sport.to_be_bytes());
    frame.extend_from_slice(&dport.to_be_bytes());
    frame.extend_from_slice(&[0, 8, 0, 0]);
    frame
}

fn arp(sender_mac: MacAddr, sender_ip: [u8; 4]) -> Vec<u8> {
    let mut frame = ethernet(GUEST_MAC, 0x0806);
    // Ethernet/IPv4, request.
    frame.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    frame.extend_from_slice(&sender_mac.octets());
    frame.extend_from_slice(&sender_ip);
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&[10, 0, 0, 1]);
    frame
}

/// An IPv6 frame carrying `icmp` (an ICMPv6 message) from `src`.
fn icmp6(src: Ipv6Addr, icmp: &[u8]) -> Vec<u8> {
    let mut frame = ethernet(GUEST_MAC, 0x86dd);
    frame.extend_from_slice(&[0x60, 0, 0, 0]);
    frame.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[58, 255]);
    frame.extend_from_slice(&src.octets());
    frame.extend_from_slice(&"ff02::1".parse::<Ipv6Addr>().unwrap().octets());
    frame.extend_from_slice(icmp);
    frame
}

/// A neighbor advertisement (RFC 4861 § 4.4) for `target`, with a target link-layer address
/// option (§ 4.6.1) when `lladdr` is given.
fn advert(target: Ipv6Addr, lladdr: Option<MacAddr>) -> Vec<u8> {
    let mut icmp = vec![136, 0, 0, 0, 0x20, 0, 0, 0];
    icmp.extend_from_slice(&target.octets());
    if let Some(mac) = lladdr {
        icmp.extend_from_slice(&[2, 1]);
        icmp.extend_from_slice(&mac.octets());
    }
    icmp
}

#[test]
fn own_traffic_passes() {
    let security = security();
    assert_eq!(
        check(
            &security,
            &udp4(GUEST_MAC, GUEST_V4, [10, 0, 0, 1], 1000, 53)
        ),
        Ok(())
    );
    assert_eq!(
        check(
            &security,
            &udp4(GUEST_MAC, [192, 0, 2, 15], [10, 0, 0, 1], 1, 2)
        ),
        Ok(())
    );
    assert_eq!(check(&security, &arp(GUEST_MAC, GUEST_V4)), Ok(()));
    assert_eq!(
        check(&security, &arp(GUEST_MAC, [0; 4])),
        Ok(()),
        "ARP probe"
    );
    let own = GUEST_V6.parse().unwrap();
    assert_eq!(
        check(&security, &icmp6(own, &advert(own, Some(GUEST_MAC)))),
        Ok(())
    );
    // The EUI-64 link-local address of 52:54:00:12:34:56 (U/L bit flipped, ff:fe inserted).
    let link_local: Ipv6Addr = "fe80::5054:ff:fe12:3456".parse().unwrap();
    assert_eq!(eui64_link_local(GUEST_MAC), link_local);
    assert_eq!(
        check(&security, &icmp6(link_local, &advert(link_local, None))),
        Ok(())
    );
}

#[test]
fn wrong_source_mac_or_ip_is_spoofed() {
    let security = security();
    let foreign_mac = MacAddr([0x52, 0x54, 0, 0, 0, 1]);
    assert_eq!(
        check(&security, &udp4(foreign_mac, GUEST_V4, [10, 0, 0, 1], 1, 2)),
        Err(SpoofCause::SrcMac)
    );
    assert_eq!(
        check(
            &security,
            &udp4(GUEST_MAC, [10, 0, 0, 6], [10, 0, 0, 1], 1, 2)
        ),
        Err(SpoofCause::SrcIp)
    );
    assert_eq!(
        check(
            &security,
            &udp4(GUEST_MAC, [192, 0, 2, 16], [10, 0, 0, 1], 1, 2)
        ),
        Err(SpoofCause::SrcIp),
        "just outside 192.0.2.0/28"
    );
    let other: Ipv6Addr = "2001:db8::6".parse().unwrap();
    let own: Ipv6Addr = GUEST_V6.parse().unwrap();
    assert_eq!(
        check(&security, &icmp6(other, &advert(own, None))),
        Err(SpoofCause::SrcIp)
    );
    assert_eq!(SpoofCause::SrcIp.drop_reason(), DropReason::Spoofed);
}

#[test]
fn arp_with_foreign_sender_is_spoofed() {
    let security = security();
    assert_eq!(
        check(&security, &arp(GUEST_MAC, [10, 0, 0, 1])),
        Err(SpoofCause::ArpSenderIp)
    );
    assert_eq!(
        check(&security, &arp(PEER_MAC, GUEST_V4)),
        Err(SpoofCause::ArpSenderMac)
    );
    let mut not_ipv4 = arp(GUEST_MAC, GUEST_V4);
    not_ipv4[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
    assert_eq!(
        check(&security, &not_ipv4),
        Err(SpoofCause::ArpNotEthernetIpv4)
    );
}

#[test]
fn neighbor_advert_for_foreign_target_is_spoofed() {
    let security = security();
    let own: Ipv6Addr = GUEST_V6.parse().unwrap();
    let gateway: Ipv6Addr = "2001:db8::1".parse().unwrap();
    assert_eq!(
        check(&security, &icmp6(own, &advert(gateway, Some(GUEST_MAC)))),
        Err(SpoofCause::NdTargetAddr)
    );
    assert_eq!(
        check(&security, &icmp6(own, &advert(own, Some(PEER_MAC)))),
        Err(SpoofCause::NdLinkLayerAddr)
    );
    // An option of length 0 invalidates the message (RFC 4861 § 4.6).
    let mut zero_len = advert(own, None);
    zero_len.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        check(&security, &icmp6(own, &zero_len)),
        Err(SpoofCause::NdMalformed)
    );
}

#[test]
fn bootstrap_traffic_from_unspecified_addresses() {
    let security = security();
    // DHCPDISCOVER: 0.0.0.0:68 -> 255.255.255.255:67 (RFC 2131 § 4.1).
    let discover = udp4(GUEST_MAC, [0; 4], [255; 4], 68, 67);
    assert_eq!(check(&security, &discover), Ok(()));
    assert_eq!(
        check(&security, &udp4(GUEST_MAC, [0; 4], [255; 4], 68, 68)),
        Err(SpoofCause::SrcIp)
    );
    let strict = PortSecurity::new(
        GUEST_MAC,
        &PortSecuritySpec {
            allow_dhcp_client: false,
            eui64_link_local: false,
            ..PortSecuritySpec::default()
        },
    )
    .unwrap();
    assert_eq!(check(&strict, &discover), Err(SpoofCause::SrcIp));
    // DAD: a neighbor solicitation from :: (RFC 4862 § 5.4.2).
    let mut solicit = vec![135, 0, 0, 0, 0, 0, 0, 0];
    solicit.extend_from_slice(
        &"fe80::5054:ff:fe12:3456"
            .parse::<Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    assert_eq!(
        check(&security, &icmp6(Ipv6Addr::UNSPECIFIED, &solicit)),
        Ok(())
    );
    // But not an advertisement from ::, nor the link-local when EUI-64 is off.
    let own: Ipv6Addr = GUEST_V6.parse().unwrap();
    assert_eq!(
        check(&security, &icmp6(Ipv6Addr::UNSPECIFIED, &advert(own, None))),
        Err(SpoofCause::SrcIp)
    );
    let link_local = eui64_link_local(GUEST_MAC);
    assert_eq!(
        check(&strict, &icmp6(link_local, &solicit)),
        Err(SpoofCause::SrcIp)
    );
}

#[test]
fn router_and_dhcp_server_messages_are_refused() {
    let security = security();
    let own: Ipv6Addr = GUEST_V6.parse().unwrap();
    // A router advertisement (RFC 4861 § 4.2): 16 fixed bytes, no options.
    let advert = [134, 0, 0, 0, 64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        check(&security, &icmp6(own, &advert)),
        Err(SpoofCause::RouterMessage)
    );
    // A DHCPOFFER from the guest's own address.
    let offer = udp4(GUEST_MAC, GUEST_V4, [255; 4], 67, 68);
    assert_eq!(check(&security, &offer), Err(SpoofCause::DhcpServer));
    let router = PortSecurity::new(
        GUEST_MAC,
        &PortSecuritySpec {
            allowed_ips: vec!["10.0.0.5".parse().unwrap(), GUEST_V6.parse().unwrap()],
            allow_router_advertisements: true,
            allow_dhcp_server: true,
            ..PortSecuritySpec::default()
        },
    )
    .unwrap();
    assert_eq!(check(&router, &icmp6(own, &advert)), Ok(()));
    assert_eq!(check(&router, &offer), Ok(()));
}

#[test]
fn spec_is_validated() {
    assert!(PortSecurity::new(MacAddr::BROADCAST, &PortSecuritySpec::default()).is_err());
    let many = PortSecuritySpec {
        allowed_ips: vec!["10.0.0.1".parse().unwrap(); MAX_ALLOWED_IPS + 1],
        ..PortSecuritySpec::default()
    };
    assert!(PortSecurity::new(GUEST_MAC, &many).is_err());
    assert!(toml::from_str::<PortSecuritySpec>("allowed = []").is_err());
}
