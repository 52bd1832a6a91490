//! The README's "Uplinks" section, checked against the code so that it cannot drift: every
//! ```` ```toml ```` block of the section is read from README.md itself and must pass the
//! daemon's config parser and validation (`DaemonConfig::parse`); the examples must cover every
//! uplink kind (VXLAN over both underlay families); each VXLAN and VLAN example must sit within
//! its MTU rule and one byte more must be refused; and the error message and the SR-IOV VMM
//! arguments the section quotes must be what the code produces.

use std::net::IpAddr;
use std::path::Path;

use vhost_user_net::config::{DaemonConfig, VifConfig};
use vif_core::model::{
    ModelError, UplinkSpec, VLAN_OVERHEAD, VXLAN_IPV4_OVERHEAD, VXLAN_IPV6_OVERHEAD,
};
use vmm_integration::args::{cloud_hypervisor_vfio_args, qemu_vfio_args, shell_line, VfioNic};

const README: &str = include_str!("../../README.md");
/// The name the README's quoted error message gives the config file.
const SOURCE: &str = "vif.toml";

/// The text of the "## Uplinks" section, up to the next second-level heading.
fn uplinks_section() -> &'static str {
    let start = README
        .find("\n## Uplinks\n")
        .expect("README.md has an \"## Uplinks\" section");
    let body = &README[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |at| at + 3);
    &body[..end]
}

/// The contents of every fenced block of `lang` in `text`, in order.
fn fenced(text: &str, lang: &str) -> Vec<String> {
    let open = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match current.as_mut() {
            None if line.trim_end() == open => current = Some(String::new()),
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(current.is_none(), "an unterminated ```{lang} block");
    blocks
}

fn parse(block: &str) -> Result<DaemonConfig, String> {
    DaemonConfig::parse(block, SOURCE, Path::new("/run/vif")).map_err(|e| e.to_string())
}

/// Every VIF of every TOML example of the section.
fn examples() -> Vec<VifConfig> {
    let blocks = fenced(uplinks_section(), "toml");
    assert!(blocks.len() >= 4, "{} toml blocks", blocks.len());
    blocks
        .iter()
        .flat_map(|block| match parse(block) {
            Ok(config) => config.vifs,
            Err(e) => panic!("README example refused: {e}\n{block}"),
        })
        .collect()
}

#[test]
fn every_uplink_example_parses_and_validates() {
    let vifs = examples();
    let has = |kind: &str, family: Option<bool>| {
        vifs.iter().any(|vif| {
            vif.spec.uplink.kind() == kind
                && match (&vif.spec.uplink, family) {
                    (UplinkSpec::Vxlan(vxlan), Some(v4)) => vxlan.local.is_ipv4() == v4,
                    _ => true,
                }
        })
    };
    assert!(has("local", None), "no local segment example");
    assert!(has("vxlan", Some(true)), "no VXLAN example over IPv4");
    assert!(has("vxlan", Some(false)), "no VXLAN example over IPv6");
    assert!(has("vlan", None), "no VLAN example");
    assert!(has("sriov-vf", None), "no SR-IOV VF example");
    // The section's table names every kind the examples use, as `type` spells it.
    for vif in &vifs {
        let row = format!("| `{}` |", vif.spec.uplink.kind());
        assert!(uplinks_section().contains(&row), "no table row {row}");
    }
    // The documented optional fields are really set by some example (not left at defaults).
    let vxlan_fields = vifs.iter().any(|vif| {
        matches!(&vif.spec.uplink, UplinkSpec::Vxlan(vxlan)
            if vxlan.udp_port != 4789 && vxlan.underlay_mtu != 1500 && vxlan.interface.is_some())
    });
    assert!(
        vxlan_fields,
        "no example sets udp_port, underlay_mtu and interface"
    );
    let vlan_fields = vifs
        .iter()
        .any(|vif| matches!(&vif.spec.uplink, UplinkSpec::Vlan(vlan) if vlan.pcp != 0))
        && vifs.iter().any(
            |vif| matches!(&vif.spec.uplink, UplinkSpec::Vlan(vlan) if vlan.parent_mtu != 1500),
        );
    assert!(vlan_fields, "no example sets pcp, and none parent_mtu");
    let indices: Vec<Option<u16>> = vifs
        .iter()
        .filter_map(|vif| match &vif.spec.uplink {
            UplinkSpec::SriovVf(vf) => Some(vf.vf_index),
            _ => None,
        })
        .collect();
    assert!(
        indices.contains(&None) && indices.iter().any(Option::is_some),
        "SR-IOV examples with and without vf_index: {indices:?}"
    );
    let vf_settings = vifs.iter().any(|vif| {
        matches!(&vif.spec.uplink, UplinkSpec::SriovVf(vf)
            if vf.vlan.is_some() && vf.qos != 0 && vf.max_tx_rate_mbps.is_some())
    });
    assert!(vf_settings, "no SR-IOV example sets vlan, qos and a rate");
}

#[test]
fn vxlan_and_vlan_examples_keep_the_mtu_rules_and_one_more_byte_is_refused() {
    for vif in examples() {
        let (overhead, lower) = match &vif.spec.uplink {
            UplinkSpec::Vxlan(vxlan) => (
                match vxlan.local {
                    IpAddr::V4(_) => VXLAN_IPV4_OVERHEAD,
                    IpAddr::V6(_) => VXLAN_IPV6_OVERHEAD,
                },
                vxlan.underlay_mtu,
            ),
            UplinkSpec::Vlan(vlan) => (VLAN_OVERHEAD, vlan.parent_mtu),
            UplinkSpec::SriovVf(_) | UplinkSpec::Local(_) => continue,
        };
        // The README's rule, computed here from its own numbers (50/70/4), against the model's.
        let limit = lower - overhead;
        assert_eq!(
            vif.spec.uplink.max_vif_mtu(),
            Some(limit),
            "{}",
            vif.spec.id
        );
        assert!(vif.spec.mtu <= limit, "{}: mtu over the rule", vif.spec.id);
        let mut over = vif.spec.clone();
        over.mtu = limit + 1;
        assert!(
            matches!(
                over.validate(),
                Err(ModelError::MtuOverUplink { .. } | ModelError::MtuOverVlanParent { .. })
            ),
            "{}: mtu {} must be refused",
            vif.spec.id,
            limit + 1
        );
    }
}

#[test]
fn the_quoted_vxlan_mtu_error_is_the_parsers() {
    let block = fenced(uplinks_section(), "toml")
        .into_iter()
        .find(|block| block.contains("id = \"tenant-a-1\""))
        .expect("the tenant-a-1 example");
    // Without its `mtu` line the VIF takes the default 1500 on a 1500-byte IPv4 underlay.
    let without_mtu = block.replacen("mtu = 1450\n", "", 1);
    assert_ne!(without_mtu, block, "tenant-a-1 has no `mtu = 1450` line");
    let error = parse(&without_mtu).expect_err("mtu 1500 over VXLAN/IPv4 on 1500");
    let quoted = fenced(uplinks_section(), "text");
    assert!(
        quoted.iter().any(|text| text.trim_end() == error),
        "the README quotes {quoted:?}; the parser says {error:?}"
    );
}

#[test]
fn the_quoted_sriov_vmm_arguments_are_what_the_daemon_builds() {
    // `VfAssignment::qemu_args` and `cloud_hypervisor_args` build these from the VIF id and the
    // VF's PCI address; the daemon logs them with `shell_line`.
    let nic = VfioNic {
        id: "db-1".to_owned(),
        host: "0000:3b:02.3".to_owned(),
    };
    let qemu = shell_line(&qemu_vfio_args(&nic).unwrap());
    let cloud_hypervisor = shell_line(&cloud_hypervisor_vfio_args(&nic).unwrap());
    let quoted = fenced(uplinks_section(), "text");
    let line = quoted
        .iter()
        .find(|text| text.starts_with("vif db-1: VF 3 of enp59s0f0 at 0000:3b:02.3; "))
        .expect("the README quotes the daemon's SR-IOV log line");
    assert_eq!(
        line.trim_end(),
        format!(
            "vif db-1: VF 3 of enp59s0f0 at 0000:3b:02.3; QEMU: {qemu}; Cloud Hypervisor: \
             {cloud_hypervisor}"
        )
    );
    assert!(
        uplinks_section().contains("`VIF_SYSFS_ROOT`"),
        "the sysfs root override is documented"
    );
    assert_eq!(
        vhost_user_net::uplink::sriov::SYSFS_ROOT_ENV,
        "VIF_SYSFS_ROOT"
    );
}

#[test]
fn the_section_extraction_finds_blocks_and_stops_at_the_next_heading() {
    let text = "intro\n```toml\na = 1\n```\n```text\nmsg\n```\n```toml\nb = 2\n```\n";
    assert_eq!(fenced(text, "toml"), ["a = 1\n", "b = 2\n"]);
    assert_eq!(fenced(text, "text"), ["msg\n"]);
    let section = uplinks_section();
    assert!(section.starts_with("## Uplinks\n"));
    assert!(
        !section[3..].contains("\n## "),
        "runs into the next section"
    );
}
