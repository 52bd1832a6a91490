//! SR-IOV VIFs through the control requests of a running daemon, against the fake host of
//! `uplink_sriov_support` (sysfs tree through `VIF_SYSFS_ROOT`, a recording PF link handed to
//! the daemon with `Daemon::use_vf_link`): `create` allocates a VF with the uplink's settings,
//! `list` and `show` report it with the VMM arguments, `remove` and `apply` without the VIF
//! release it, an `apply` that changes its settings restarts it, and the scrape carries the
//! VF's counters as the PF reports them.
//!
//! The only test in this file (its own process): it sets the runtime and sysfs directories in
//! the environment, which the daemon reads.

mod uplink_sriov_support;

use serde_json::Value;
use uplink_sriov_support::*;
use vhost_user_net::config::{DaemonConfig, RUNTIME_DIR_ENV};
use vhost_user_net::control::handlers::handle;
use vhost_user_net::control::protocol::{Request, Response};
use vhost_user_net::daemon::Daemon;
use vhost_user_net::uplink::sriov::netlink::{VfRate, VfReport, VfStats, VfVlan};
use vhost_user_net::uplink::sriov::SYSFS_ROOT_ENV;
use vif_core::mac::MacAddr;

const MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0, 0, 0x0a]);

/// A socket VIF, so the daemon has something besides SR-IOV, and no control socket or metrics
/// endpoint: requests go straight to `handle`.
fn base_config(host: &FakeHost) -> String {
    format!(
        r#"
[control]
enabled = false
[metrics]
enabled = false
[[vif]]
id = "web-1"
mac = "52:54:00:00:00:01"
socket = "{}"
uplink = {{ type = "local", segment = "lab" }}
"#,
        host.run_dir().join("web-1.sock").display()
    )
}

fn sriov_vif(settings: &str) -> String {
    format!(
        r#"
[[vif]]
id = "db-1"
mac = "{MAC}"
uplink = {{ type = "sriov-vf", pf = "eth0", {settings} }}
"#
    )
}

fn ok(response: Response) -> Value {
    assert!(response.ok, "{response:?}");
    response.result.unwrap_or_default()
}

fn list(daemon: &mut Daemon) -> Value {
    ok(handle(daemon, Request::List {}))
}

fn listed<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|vif| vif["id"] == id)
}

fn apply(daemon: &mut Daemon, config: String) -> Value {
    ok(handle(
        daemon,
        Request::Apply {
            config,
            base: None,
            dry_run: false,
        },
    ))
}

/// What the kernel does after vif writes `drivers_probe`: the VF moves to the driver its
/// `driver_override` names.
fn kernel_probes(host: &FakeHost, vf: u16, driver: &str) {
    host.bind(vf, Some(driver));
    host.clear("bus/pci/drivers_probe");
}

#[test]
fn control_requests_allocate_report_and_release_vfs() {
    let host = FakeHost::new(2, &[]);
    std::fs::create_dir_all(host.run_dir()).unwrap();
    // Read by the daemon only (this process has no other thread that reads them yet).
    std::env::set_var(RUNTIME_DIR_ENV, host.run_dir());
    std::env::set_var(SYSFS_ROOT_ENV, host.sys());
    let config = DaemonConfig::parse(&base_config(&host), "test", &host.run_dir()).unwrap();
    let mut daemon = Daemon::start(&config).unwrap();
    let link = SharedLink::default();
    daemon.use_vf_link(Box::new(link.clone())).unwrap();

    // create: a VF with the uplink's settings, bound to vfio-pci.
    let settings = "vlan = 100, qos = 5, max_tx_rate_mbps = 1000";
    let report = ok(handle(
        &mut daemon,
        Request::Create {
            config: sriov_vif(settings),
            base: None,
        },
    ));
    assert_eq!(report["added"], serde_json::json!(["db-1"]));
    let (ifindex, set) = link.recorded().set[0];
    assert_eq!((ifindex, set.vf, set.mac), (PF_IFINDEX, 0, MAC));
    assert_eq!(set.vlan, Some(VfVlan { vid: 100, qos: 5 }));
    assert_eq!(
        set.rate,
        Some(VfRate {
            min_mbps: 0,
            max_mbps: 1000
        })
    );
    assert!(set.spoofchk);
    assert_eq!(set.trust, None);
    assert_eq!(
        host.read(host.vf_dir(0).join("driver_override")),
        "vfio-pci"
    );
    kernel_probes(&host, 0, "vfio-pci");
    assert!(host.state().starts_with("vif=db-1 pf=eth0 vf=0 "));
    assert!(daemon
        .socket_paths()
        .iter()
        .all(|p| !p.ends_with("db-1.sock")));

    // list and show: the VF, its PCI address and the VMM arguments.
    let vifs = list(&mut daemon);
    let db = listed(&vifs, "db-1").expect("db-1 listed");
    assert_eq!(
        (&db["mode"], &db["state"]),
        (&"vfio".into(), &"assigned".into())
    );
    assert_eq!(db["vf"]["pf"], "eth0");
    assert_eq!(db["vf"]["vf_index"], 0);
    assert_eq!(db["vf"]["bdf"], vf_bdf(0));
    assert_eq!(
        db["vf"]["qemu_args"],
        serde_json::json!(["-device", "vfio-pci,host=0000:3b:02.0,id=db-1"])
    );
    assert_eq!(
        db["vf"]["cloud_hypervisor_args"],
        serde_json::json!([
            "--device",
            "path=/sys/bus/pci/devices/0000:3b:02.0/,id=db-1"
        ])
    );
    assert!(listed(&vifs, "web-1").is_some_and(|web| web.get("vf").is_none()));
    let shown = ok(handle(&mut daemon, Request::Show { vif: "db-1".into() }));
    assert_eq!(shown["spec"]["uplink"]["vlan"], 100);
    assert_eq!(shown["vf"]["bdf"], vf_bdf(0));

    // The scrape asks the PF for the VF's counters; without an answer for VF 0, none.
    let series = r#"{vif="db-1",tenant="",pf="eth0",vf="0"}"#;
    let text = daemon.scrape();
    assert!(
        text.contains(&format!("vif_vf_stats_up{series} 0\n")),
        "{text}"
    );
    assert!(!text.contains(&format!("vif_vf_tx_packets_total{series}")));
    link.recorded().reports = vec![VfReport {
        vf: 0,
        mac: MAC,
        vlan: Some(VfVlan { vid: 100, qos: 5 }),
        spoofchk: Some(true),
        trust: None,
        rate: None,
        stats: Some(VfStats {
            tx_packets: 7,
            rx_bytes: 4096,
            ..VfStats::default()
        }),
    }];
    let text = daemon.scrape();
    assert!(
        text.contains(&format!("vif_vf_stats_up{series} 1\n")),
        "{text}"
    );
    assert!(text.contains(&format!("vif_vf_tx_packets_total{series} 7\n")));
    assert!(text.contains(&format!("vif_vf_rx_bytes_total{series} 4096\n")));
    link.recorded().reports.clear();

    // A second create of the same id is refused; apply with the same text changes nothing.
    let again = handle(
        &mut daemon,
        Request::Create {
            config: sriov_vif(settings),
            base: None,
        },
    );
    assert!(!again.ok);
    let unchanged = apply(&mut daemon, base_config(&host) + &sriov_vif(settings));
    assert_eq!(unchanged["unchanged"], serde_json::json!(["web-1", "db-1"]));
    assert_eq!(link.recorded().set.len(), 1, "nothing sent to the PF");

    // apply with other settings: the VF is released and a VF prepared again (VF 1: in this
    // fake, VF 0 stays with vfio-pci until the test plays the kernel's part).
    let changed = apply(
        &mut daemon,
        base_config(&host) + &sriov_vif("vlan = 200, spoof_check = false"),
    );
    assert_eq!(changed["changed"][0]["action"], "restarted");
    {
        let recorded = link.recorded();
        let [_, cleared, set] = recorded.set.as_slice() else {
            panic!("clear then set: {:?}", recorded.set);
        };
        assert_eq!((cleared.1.vf, cleared.1.mac), (0, MacAddr::ZERO));
        assert_eq!(set.1.vf, 1);
        assert_eq!(set.1.vlan, Some(VfVlan { vid: 200, qos: 0 }));
        assert!(!set.1.spoofchk);
        assert_eq!(set.1.rate, None);
    }
    kernel_probes(&host, 0, "iavf");
    kernel_probes(&host, 1, "vfio-pci");
    assert_eq!(
        daemon.vf_assignment("db-1").map(|a| a.bdf.to_string()),
        Some(vf_bdf(1))
    );

    // remove: settings cleared, the host driver back, the record gone.
    let removed = ok(handle(&mut daemon, Request::Remove { vif: "db-1".into() }));
    assert_eq!(removed["removed"], serde_json::json!(["db-1"]));
    let (_, cleared) = *link.recorded().set.last().unwrap();
    assert_eq!((cleared.vf, cleared.mac), (1, MacAddr::ZERO));
    assert_eq!(cleared.vlan, Some(VfVlan { vid: 0, qos: 0 }));
    assert_eq!(host.read(host.vf_dir(1).join("driver_override")), "\n");
    assert_eq!(host.read("bus/pci/drivers/vfio-pci/unbind"), vf_bdf(1));
    assert_eq!(host.state(), "");
    assert!(listed(&list(&mut daemon), "db-1").is_none());
    assert!(daemon.vf_assignment("db-1").is_none());
    kernel_probes(&host, 1, "iavf");

    // apply adds it back, and an apply without it releases it.
    apply(&mut daemon, base_config(&host) + &sriov_vif(settings));
    assert!(daemon.vf_assignment("db-1").is_some());
    kernel_probes(&host, 0, "vfio-pci");
    let emptied = apply(&mut daemon, base_config(&host));
    assert_eq!(emptied["removed"], serde_json::json!(["db-1"]));
    assert_eq!(host.state(), "");
    assert_eq!(link.recorded().set.last().unwrap().1.mac, MacAddr::ZERO);
    daemon.shutdown();
}
