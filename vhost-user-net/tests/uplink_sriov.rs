//! SR-IOV VF management against a sysfs tree built under a temporary directory
//! (`uplink_sriov_support`: a PF `eth0` with its VFs, and a recording [`VfLink`] for the PF
//! side; the bytes of those requests are checked against iproute2 in
//! `uplink_sriov_netlink.rs`).

mod uplink_sriov_support;

use std::fs;

use uplink_sriov_support::*;
use vhost_user_net::uplink::sriov::netlink::{VfRate, VfReport, VfStats, VfVlan};
use vhost_user_net::uplink::sriov::sysfs::Sysfs;
use vhost_user_net::uplink::sriov::{SriovError, SriovManager, VfSettings};
use vif_core::mac::MacAddr;
use vif_core::model::SriovVfUplink;

const MAC_A: MacAddr = MacAddr([0x52, 0x54, 0x00, 0, 0, 0x0a]);
const MAC_B: MacAddr = MacAddr([0x52, 0x54, 0x00, 0, 0, 0x0b]);

fn uplink(vf_index: Option<u16>) -> SriovVfUplink {
    SriovVfUplink {
        vf_index,
        ..SriovVfUplink::new("eth0")
    }
}

fn manager(host: &FakeHost) -> SriovManager<RecordingLink> {
    SriovManager::open(
        Sysfs::new(host.sys()),
        RecordingLink::default(),
        &host.run_dir(),
    )
    .unwrap()
}

fn tenant_settings() -> VfSettings {
    VfSettings {
        vlan: Some(VfVlan { vid: 100, qos: 5 }),
        spoofchk: true,
        trust: None,
        rate: Some(VfRate {
            min_mbps: 0,
            max_mbps: 1000,
        }),
    }
}

#[test]
fn allocate_sets_the_vf_and_hands_it_to_vfio() {
    // VF 0 is with vfio-pci already (another VMM has it): the pool skips it.
    let host = FakeHost::new(4, &[0]);
    let mut sriov = manager(&host);
    let assignment = sriov
        .allocate("db-1", MAC_A, &uplink(None), &tenant_settings())
        .unwrap()
        .clone();
    assert_eq!((assignment.vf, assignment.bdf.to_string()), (1, vf_bdf(1)));
    assert_eq!(assignment.host_driver.as_deref(), Some("iavf"));

    let (ifindex, config) = sriov.link().set[0];
    assert_eq!(ifindex, PF_IFINDEX);
    assert_eq!(config.vf, 1);
    assert_eq!(config.mac, MAC_A);
    assert_eq!(config.vlan, Some(VfVlan { vid: 100, qos: 5 }));

    // The vfio.rst sequence: override, unbind from iavf, probe.
    assert_eq!(
        host.read(host.vf_dir(1).join("driver_override")),
        "vfio-pci"
    );
    assert_eq!(host.read("bus/pci/drivers/iavf/unbind"), vf_bdf(1));
    assert_eq!(host.read("bus/pci/drivers_probe"), vf_bdf(1));
    assert_eq!(
        host.state(),
        "vif=db-1 pf=eth0 vf=1 bdf=0000:3b:02.1 driver=iavf set=vlan,rate\n"
    );

    assert_eq!(
        assignment.qemu_args().unwrap(),
        ["-device", "vfio-pci,host=0000:3b:02.1,id=db-1"]
    );
    assert_eq!(
        assignment.cloud_hypervisor_args().unwrap(),
        [
            "--device",
            "path=/sys/bus/pci/devices/0000:3b:02.1/,id=db-1"
        ]
    );

    // A second VIF gets the next VF; a third asking for VF 1 by index is refused.
    let second = sriov
        .allocate("db-2", MAC_B, &uplink(None), &VfSettings::default())
        .unwrap();
    assert_eq!(second.vf, 2);
    let taken = sriov
        .allocate("db-3", MAC_B, &uplink(Some(1)), &VfSettings::default())
        .unwrap_err();
    assert!(
        taken
            .to_string()
            .contains("VF 1 is already allocated to vif db-1"),
        "{taken}"
    );
}

#[test]
fn release_clears_the_vf_and_rebinds_the_host_driver() {
    let host = FakeHost::new(2, &[]);
    let mut sriov = manager(&host);
    sriov
        .allocate("db-1", MAC_A, &uplink(Some(1)), &tenant_settings())
        .unwrap();
    // What the kernel does after drivers_probe with driver_override = vfio-pci.
    host.bind(1, Some("vfio-pci"));
    host.clear("bus/pci/drivers_probe");

    sriov.release("db-1").unwrap();
    let (_, cleared) = *sriov.link().set.last().unwrap();
    assert_eq!(cleared.mac, MacAddr::ZERO);
    assert_eq!(cleared.vlan, Some(VfVlan { vid: 0, qos: 0 }));
    assert_eq!(cleared.rate, Some(VfRate::default()));
    assert_eq!(
        cleared.trust, None,
        "trust was never set, so it is not mentioned"
    );
    assert_eq!(host.read(host.vf_dir(1).join("driver_override")), "\n");
    assert_eq!(host.read("bus/pci/drivers/vfio-pci/unbind"), vf_bdf(1));
    assert_eq!(host.read("bus/pci/drivers_probe"), vf_bdf(1));
    assert_eq!(host.state(), "");
    assert!(matches!(
        sriov.release("db-1"),
        Err(SriovError::NotAllocated { .. })
    ));
}

#[test]
fn missing_capability_and_bad_requests_are_plain_errors() {
    let host = FakeHost::new(2, &[]);
    let mut sriov = manager(&host);
    let no_pf = SriovVfUplink::new("eth9");
    let e = sriov
        .allocate("a", MAC_A, &no_pf, &VfSettings::default())
        .unwrap_err();
    assert!(
        e.to_string().starts_with("vif a: interface eth9 not found"),
        "{e}"
    );

    let e = sriov
        .allocate("a", MAC_A, &uplink(Some(5)), &VfSettings::default())
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("vf_index 5 is out of range (sriov_numvfs is 2)"),
        "{e}"
    );

    fs::write(
        host.sys()
            .join("bus/pci/devices")
            .join(PF_BDF)
            .join("sriov_numvfs"),
        "0\n",
    )
    .unwrap();
    let e = sriov
        .allocate("a", MAC_A, &uplink(None), &VfSettings::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("has SR-IOV but no VF enabled"),
        "{e}"
    );

    fs::remove_file(
        host.sys()
            .join("bus/pci/devices")
            .join(PF_BDF)
            .join("sriov_totalvfs"),
    )
    .unwrap();
    let e = sriov
        .allocate("a", MAC_A, &uplink(None), &VfSettings::default())
        .unwrap_err();
    let expected = format!(
        "vif a: interface eth0 has no SR-IOV capability (no {}/class/net/eth0/device/sriov_totalvfs)",
        host.sys().display()
    );
    assert_eq!(e.to_string(), expected);
    assert!(sriov.link().set.is_empty(), "nothing sent to the PF");
}

#[test]
fn without_vfio_pci_nothing_is_touched() {
    let host = FakeHost::new(2, &[]);
    fs::remove_dir_all(host.sys().join("bus/pci/drivers/vfio-pci")).unwrap();
    let mut sriov = manager(&host);
    let e = sriov
        .allocate("a", MAC_A, &uplink(None), &VfSettings::default())
        .unwrap_err();
    assert!(e.to_string().contains("modprobe vfio-pci"), "{e}");
    assert!(sriov.link().set.is_empty());
    assert_eq!(host.state(), "");
}

#[test]
fn a_refused_setting_leaves_nothing_allocated() {
    let host = FakeHost::new(2, &[]);
    let mut sriov = SriovManager::open(
        Sysfs::new(host.sys()),
        RecordingLink {
            refuse: true,
            ..RecordingLink::default()
        },
        &host.run_dir(),
    )
    .unwrap();
    let e = sriov
        .allocate("a", MAC_A, &uplink(None), &VfSettings::default())
        .unwrap_err();
    assert!(e.to_string().contains("RTNETLINK answers"), "{e}");
    assert_eq!(host.read(host.vf_dir(0).join("driver_override")), "\n");
    assert_eq!(host.state(), "", "the write-ahead record is dropped again");
    assert!(sriov.assignment("a").is_none());
}

#[test]
fn a_crashed_daemons_vfs_are_readopted_or_released() {
    let host = FakeHost::new(3, &[]);
    {
        let mut crashed = manager(&host);
        crashed
            .allocate("keep", MAC_A, &uplink(None), &VfSettings::default())
            .unwrap();
        crashed
            .allocate("gone", MAC_B, &uplink(None), &tenant_settings())
            .unwrap();
        // A second daemon on the same run directory is refused while this one lives.
        let again = SriovManager::open(
            Sysfs::new(host.sys()),
            RecordingLink::default(),
            &host.run_dir(),
        );
        assert!(matches!(again, Err(SriovError::Pool { .. })));
        // Dropped without release: the process "crashed" with both VFs with vfio-pci.
    }
    host.bind(0, Some("vfio-pci"));
    host.bind(1, Some("vfio-pci"));
    host.clear("bus/pci/drivers_probe");

    let mut restarted = manager(&host);
    assert_eq!(restarted.stale().len(), 2);
    // The PF already carries "keep"'s settings: re-adopted without touching the VF.
    restarted.link_reports(vec![VfReport {
        vf: 0,
        mac: MAC_A,
        vlan: None,
        spoofchk: Some(true),
        trust: None,
        rate: None,
        stats: None,
    }]);
    let kept = restarted
        .allocate("keep", MAC_A, &uplink(None), &VfSettings::default())
        .unwrap();
    assert!(kept.adopted);
    assert_eq!(kept.vf, 0);
    assert!(restarted.link().set.is_empty(), "no setting re-sent");
    assert_eq!(host.read("bus/pci/drivers_probe"), "", "no rebind");

    // "gone" is no longer configured: GC clears and releases its VF.
    assert_eq!(restarted.collect_garbage(), vec!["gone".to_owned()]);
    let (ifindex, cleared) = restarted.link().set[0];
    assert_eq!(
        (ifindex, cleared.vf, cleared.mac),
        (PF_IFINDEX, 1, MacAddr::ZERO)
    );
    assert_eq!(cleared.vlan, Some(VfVlan { vid: 0, qos: 0 }));
    assert_eq!(host.read(host.vf_dir(1).join("driver_override")), "\n");
    assert_eq!(host.read("bus/pci/drivers/vfio-pci/unbind"), vf_bdf(1));
    assert_eq!(host.read("bus/pci/drivers_probe"), vf_bdf(1));
    assert_eq!(
        host.state(),
        "vif=keep pf=eth0 vf=0 bdf=0000:3b:02.0 driver=iavf set=\n"
    );
    assert!(restarted.stale().is_empty());
}

#[test]
fn counters_come_from_the_pf() {
    let host = FakeHost::new(2, &[]);
    let mut sriov = manager(&host);
    sriov
        .allocate("a", MAC_A, &uplink(Some(1)), &VfSettings::default())
        .unwrap();
    let stats = VfStats {
        rx_packets: 5,
        tx_packets: 6,
        rx_bytes: 500,
        tx_bytes: 600,
        ..VfStats::default()
    };
    sriov.link_reports(vec![VfReport {
        vf: 1,
        mac: MAC_A,
        vlan: None,
        spoofchk: Some(true),
        trust: None,
        rate: None,
        stats: Some(stats),
    }]);
    assert_eq!(sriov.stats("a").unwrap(), stats);
    sriov.link_reports(vec![]);
    assert!(matches!(
        sriov.stats("a"),
        Err(SriovError::VfNotReported { vf: 1, .. })
    ));
}

#[test]
fn a_scrape_asks_each_pf_once() {
    let host = FakeHost::new(3, &[]);
    let mut sriov = manager(&host);
    for (vif, mac) in [("b", MAC_B), ("a", MAC_A)] {
        sriov
            .allocate(vif, mac, &uplink(None), &VfSettings::default())
            .unwrap();
    }
    // b got VF 0, a VF 1; the PF reports only VF 0.
    let stats = VfStats {
        tx_packets: 9,
        ..VfStats::default()
    };
    sriov.link_reports(vec![VfReport {
        vf: 0,
        mac: MAC_B,
        vlan: None,
        spoofchk: Some(true),
        trust: None,
        rate: None,
        stats: Some(stats),
    }]);
    let asked_before = sriov.link().report_requests;
    let all: Vec<(String, u16, Option<VfStats>)> = sriov
        .all_stats()
        .into_iter()
        .map(|(assignment, stats)| (assignment.vif.clone(), assignment.vf, stats))
        .collect();
    assert_eq!(
        all,
        [("a".to_owned(), 1, None), ("b".to_owned(), 0, Some(stats))]
    );
    assert_eq!(sriov.link().report_requests, asked_before + 1);
}

/// Sets what the recording link answers to `vf_reports`.
trait LinkReports {
    fn link_reports(&mut self, reports: Vec<VfReport>);
}

impl LinkReports for SriovManager<RecordingLink> {
    fn link_reports(&mut self, reports: Vec<VfReport>) {
        self.link_mut().reports = reports;
    }
}
