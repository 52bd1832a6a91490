//! Model tests across modules: fixtures shared by the per-file tests, the documented example,
//! serde round trips in TOML and JSON, refusal of unknown fields, and properties.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::ids::{VlanId, Vni};
use crate::mac::MacAddr;

pub(super) fn vif_id() -> VifId {
    VifId::new("web-1").unwrap()
}

pub(super) fn mac() -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
}

/// A VXLAN/IPv4 uplink with the default underlay MTU 1500, so VIF MTUs up to 1450 fit.
pub(super) fn vxlan_v4() -> VxlanUplink {
    VxlanUplink {
        vni: Vni::new(5001).unwrap(),
        local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        remotes: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))],
        udp_port: 4789,
        underlay_mtu: 1500,
        interface: None,
    }
}

pub(super) fn vlan() -> VlanUplink {
    VlanUplink {
        vid: VlanId::new(100).unwrap(),
        pcp: 0,
        parent: "eth1".to_owned(),
        parent_mtu: 1504,
    }
}

/// A valid spec: VXLAN/IPv4 with mtu 1450.
pub(super) fn spec() -> VifSpec {
    VifSpec {
        mtu: 1450,
        ..VifSpec::new(vif_id(), mac(), UplinkSpec::Vxlan(vxlan_v4()))
    }
}

#[test]
fn documented_example_parses_and_validates() {
    let spec: VifSpec = toml::from_str(EXAMPLE_TOML).unwrap();
    assert_eq!(spec.validate(), Ok(()));
    assert_eq!(spec.id.as_str(), "web-1");
    assert_eq!(spec.mtu, 1450);
    assert_eq!(spec.queue_pairs, 2);
    assert_eq!(spec.qos.as_deref(), Some("gold"));
    // Keys left out of [offloads] keep their defaults.
    assert_eq!(spec.offloads, Offloads::default());
    let UplinkSpec::Vxlan(vxlan) = &spec.uplink else {
        panic!("example uplink is {}", spec.uplink.kind());
    };
    assert_eq!(vxlan.vni.get(), 5001);
    assert_eq!(vxlan.remotes.len(), 2);
    assert_eq!(vxlan.interface.as_deref(), Some("eth0"));
    assert_eq!(spec.uplink.max_vif_mtu(), Some(1450));
    assert_eq!(spec.acl.ingress.as_deref(), Some("web-in"));
    let port_security = spec.port_security.as_ref().unwrap();
    assert!(port_security.enabled);
    assert_eq!(port_security.allowed_ips.len(), 2);
    assert_eq!(spec.labels.get("tenant").map(String::as_str), Some("acme"));
}

#[test]
fn documented_inline_uplinks_parse() {
    // The three inline tables from the module docs.
    let head = "id = \"a\"\nmac = \"52:54:00:00:00:01\"\n";
    let vlan_spec: VifSpec = toml::from_str(&format!(
        "{head}uplink = {{ type = \"vlan\", vid = 100, pcp = 0, parent = \"eth1\", parent_mtu = 1504 }}"
    ))
    .unwrap();
    assert_eq!(vlan_spec.uplink, UplinkSpec::Vlan(vlan()));
    assert_eq!(vlan_spec.validate(), Ok(()));
    let sriov: VifSpec = toml::from_str(&format!(
        "{head}uplink = {{ type = \"sriov-vf\", pf = \"enp3s0f0\", vf_index = 3 }}"
    ))
    .unwrap();
    assert_eq!(
        sriov.uplink,
        UplinkSpec::SriovVf(SriovVfUplink {
            vf_index: Some(3),
            ..SriovVfUplink::new("enp3s0f0")
        })
    );
    let local: VifSpec = toml::from_str(&format!(
        "{head}uplink = {{ type = \"local\", segment = \"lab\" }}"
    ))
    .unwrap();
    assert_eq!(local.validate(), Ok(()));
    assert_eq!(local.uplink.max_vif_mtu(), None);
}

#[test]
fn minimal_spec_takes_defaults() {
    let spec: VifSpec = toml::from_str(
        "id = \"db-2\"\nmac = \"02:00:00:00:00:02\"\n[uplink]\ntype = \"vxlan\"\nvni = 7\nlocal = \"2001:db8::1\"\nunderlay_mtu = 9000\n",
    )
    .unwrap();
    assert_eq!(spec.mtu, 1500);
    assert_eq!(spec.queue_pairs, 1);
    assert_eq!(spec.queue_size, 256);
    assert_eq!(spec.offloads, Offloads::default());
    assert_eq!(spec.acl, AclRefs::default());
    assert!(spec.labels.is_empty() && spec.qos.is_none());
    let UplinkSpec::Vxlan(vxlan) = &spec.uplink else {
        panic!("not vxlan");
    };
    assert_eq!(vxlan.udp_port, 4789);
    assert!(vxlan.remotes.is_empty());
    assert_eq!(spec.validate(), Ok(()));
}

#[test]
fn unknown_fields_are_refused_everywhere() {
    let base = EXAMPLE_TOML;
    for (anchor, typo) in [
        ("mtu = 1450", "mtu = 1450\nmut = 1"),
        ("[offloads]", "[offloads]\ntso = true"),
        ("type = \"vxlan\"", "type = \"vxlan\"\nport = 1"),
        ("[acl]", "[acl]\ningres = \"x\""),
    ] {
        assert!(base.contains(anchor), "{anchor}");
        let text = base.replacen(anchor, typo, 1);
        let err = toml::from_str::<VifSpec>(&text).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{typo}: {err}");
    }
    let err = toml::from_str::<VifSpec>(&base.replace("\"vxlan\"", "\"gre\"")).unwrap_err();
    assert!(err.to_string().contains("gre"), "{err}");
    let json =
        r#"{"id":"a","mac":"52:54:00:00:00:01","uplink":{"type":"local","segment":"s","x":1}}"#;
    assert!(serde_json::from_str::<VifSpec>(json).is_err());
}

#[test]
fn per_type_syntax_is_checked_while_parsing() {
    for (from, to) in [
        ("vni = 5001", "vni = 16777216"),
        ("\"52:54:00:12:34:56\"", "\"52:54:00:12:34\""),
        ("id = \"web-1\"", "id = \"web 1\""),
        ("udp_port = 4789", "udp_port = 70000"),
        ("\"192.0.2.11\"", "\"192.0.2.300\""),
    ] {
        let text = EXAMPLE_TOML.replacen(from, to, 1);
        assert!(toml::from_str::<VifSpec>(&text).is_err(), "{to}");
    }
}

#[test]
fn round_trips_toml_and_json() {
    let example: VifSpec = toml::from_str(EXAMPLE_TOML).unwrap();
    let sriov = VifSpec {
        uplink: UplinkSpec::SriovVf(SriovVfUplink {
            vlan: Some(VlanId::new(100).unwrap()),
            qos: 5,
            max_tx_rate_mbps: Some(1000),
            ..SriovVfUplink::new("enp3s0f0")
        }),
        ..spec()
    };
    for spec in [example, spec(), sriov] {
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(toml::from_str::<VifSpec>(&text).unwrap(), spec, "{text}");
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            serde_json::from_str::<VifSpec>(&json).unwrap(),
            spec,
            "{json}"
        );
    }
}

fn ip_strategy(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<u128>()
            .prop_map(|bits| IpAddr::V6(Ipv6Addr::from(bits)))
            .boxed()
    } else {
        any::<u32>()
            .prop_map(|bits| IpAddr::V4(Ipv4Addr::from(bits)))
            .boxed()
    }
}

fn name_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,12}"
}

fn uplink_strategy() -> impl Strategy<Value = UplinkSpec> {
    let vxlan = any::<bool>().prop_flat_map(|v6| {
        (
            0..=Vni::MAX,
            ip_strategy(v6),
            prop::collection::vec(ip_strategy(v6), 0..4),
            any::<u16>(),
            1200u16..=9200,
            prop::option::of("[a-z][a-z0-9]{0,14}"),
        )
            .prop_map(|(vni, local, remotes, udp_port, underlay_mtu, interface)| {
                UplinkSpec::Vxlan(VxlanUplink {
                    vni: Vni::new(vni).unwrap_or_default(),
                    local,
                    remotes,
                    udp_port,
                    underlay_mtu,
                    interface,
                })
            })
    });
    let vlan = (1u16..=4094, 0u8..=8, "[a-z][a-z0-9.]{0,15}", 1000u16..=9200).prop_map(
        |(vid, pcp, parent, parent_mtu)| {
            UplinkSpec::Vlan(VlanUplink {
                vid: VlanId::new(vid).unwrap_or(VlanId::new(1).unwrap()),
                pcp,
                parent,
                parent_mtu,
            })
        },
    );
    let sriov = (
        "[a-z][a-z0-9]{0,14}",
        prop::option::of(any::<u16>()),
        prop::option::of(1u16..=4094),
        0u8..=8,
        any::<[bool; 2]>(),
        prop::option::of(0u32..=100_000),
        prop::option::of(0u32..=100_000),
    )
        .prop_map(|(pf, vf_index, vid, qos, [spoof_check, trust], max, min)| {
            UplinkSpec::SriovVf(SriovVfUplink {
                vf_index,
                vlan: vid.and_then(|vid| VlanId::new(vid).ok()),
                qos,
                spoof_check,
                trust,
                max_tx_rate_mbps: max,
                min_tx_rate_mbps: min,
                ..SriovVfUplink::new(pf)
            })
        });
    let local = name_strategy().prop_map(|segment| UplinkSpec::Local(LocalUplink { segment }));
    prop_oneof![vxlan, vlan, sriov, local]
}

prop_compose! {
    fn spec_strategy()(
        id in name_strategy(),
        mac in any::<[u8; 6]>(),
        mtu in 60u16..=9200,
        queue_pairs in 0u16..=17,
        queue_size in prop::sample::select(vec![128u16, 256, 512, 1000, 1024, 32768]),
        qos in prop::option::of(name_strategy()),
        offloads in any::<[bool; 9]>(),
        uplink in uplink_strategy(),
        ingress in prop::option::of(name_strategy()),
        egress in prop::option::of(name_strategy()),
        labels in prop::collection::btree_map("[a-z_][a-z0-9_]{0,8}", "[ -~]{0,16}", 0..4),
        port_security in prop::option::of(
            (any::<[bool; 5]>(), prop::collection::vec(any::<[u8; 4]>(), 0..3))
        ),
    ) -> VifSpec {
        let [csum, tso4, tso6, ecn, uso, ufo, mrg_rxbuf, event_idx, indirect_desc] = offloads;
        VifSpec {
            id: VifId::new(id).unwrap_or_else(|_| vif_id()),
            mac: MacAddr(mac),
            mtu,
            queue_pairs,
            queue_size,
            qos,
            offloads: Offloads { csum, tso4, tso6, ecn, uso, ufo, mrg_rxbuf, event_idx, indirect_desc },
            uplink,
            acl: AclRefs { ingress, egress },
            port_security: port_security.map(|(flags, hosts)| {
                let [enabled, allow_dhcp_client, eui64_link_local, ras, dhcp_server] = flags;
                PortSecurityConfig {
                    enabled,
                    allowed_ips: hosts
                        .into_iter()
                        .map(|host| crate::acl::IpCidr::host(Ipv4Addr::from(host).into()))
                        .collect(),
                    allow_dhcp_client,
                    eui64_link_local,
                    allow_router_advertisements: ras,
                    allow_dhcp_server: dhcp_server,
                }
            }),
            labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
        }
    }
}

/// Moves a generated spec inside the bounds most rules check, so that most cases validate; the
/// few left invalid (e.g. a multicast remote) are skipped by `prop_assume!`.
fn mostly_valid(mut spec: VifSpec) -> VifSpec {
    spec.mac.0[0] &= !0x01;
    if spec.mac.is_zero() {
        spec.mac.0[5] = 1;
    }
    spec.queue_pairs = spec.queue_pairs.clamp(1, vif::MAX_QUEUE_PAIRS);
    spec.queue_size = spec.queue_size.next_power_of_two().max(vif::MIN_QUEUE_SIZE);
    let offloads = &mut spec.offloads;
    if !offloads.csum {
        (offloads.tso4, offloads.tso6, offloads.uso, offloads.ufo) = (false, false, false, false);
    }
    offloads.ecn &= offloads.tso4 || offloads.tso6;
    if let UplinkSpec::Vlan(vlan) = &mut spec.uplink {
        vlan.pcp &= 7;
    }
    if let UplinkSpec::SriovVf(vf) = &mut spec.uplink {
        vf.qos = if vf.vlan.is_some() { vf.qos & 7 } else { 0 };
        vf.max_tx_rate_mbps = vf.max_tx_rate_mbps.filter(|&rate| rate > 0);
        vf.min_tx_rate_mbps = vf.min_tx_rate_mbps.filter(|&rate| rate > 0);
        if let (Some(min), Some(max)) = (vf.min_tx_rate_mbps, vf.max_tx_rate_mbps) {
            vf.min_tx_rate_mbps = Some(min.min(max));
        }
    }
    if let Some(limit) = spec.uplink.max_vif_mtu() {
        spec.mtu = spec.mtu.min(limit);
    }
    spec.mtu = spec.mtu.max(vif::MIN_MTU);
    spec
}

proptest! {
    /// Whatever validates comes back unchanged from TOML and JSON, and fits its uplink.
    #[test]
    fn valid_specs_survive_serde(spec in spec_strategy().prop_map(mostly_valid)) {
        prop_assume!(spec.validate().is_ok());
        let text = toml::to_string(&spec).unwrap();
        prop_assert_eq!(&toml::from_str::<VifSpec>(&text).unwrap(), &spec);
        let json = serde_json::to_string(&spec).unwrap();
        prop_assert_eq!(&serde_json::from_str::<VifSpec>(&json).unwrap(), &spec);
        if let Some(limit) = spec.uplink.max_vif_mtu() {
            prop_assert!(spec.mtu <= limit);
        }
    }

    /// Validation names the VIF in every message (except for the id itself, valid by type).
    #[test]
    fn errors_name_the_vif(spec in spec_strategy()) {
        if let Err(err) = spec.validate() {
            let prefix = format!("vif {}: ", spec.id);
            prop_assert!(err.to_string().starts_with(&prefix), "{}", err);
        }
    }
}
