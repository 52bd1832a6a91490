//! A fake SR-IOV host for tests: a sysfs tree under a temporary directory and a recording PF
//! link, shared by `uplink_sriov.rs` (the manager) and `uplink_sriov_control.rs` (the daemon).
//!
//! The tree mimics what Linux shows for a PF `eth0` (PCI 0000:3b:00.0, ifindex 7) with VFs
//! (`virtfn0..` → 0000:3b:02.0..): `class/net/eth0/{ifindex,device}`, the PF's
//! `sriov_totalvfs`/`sriov_numvfs`, each VF's `driver` link and `driver_override`, the drivers'
//! `unbind` files and `bus/pci/drivers_probe` (Documentation/ABI/testing/sysfs-bus-pci). Those
//! write-only files start empty, so a test reads back what vif wrote into them; where the kernel
//! would rebind a driver after `drivers_probe`, the test moves the `driver` link itself.

#![allow(dead_code)] // Each test crate uses its own part.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use vhost_user_net::uplink::sriov::netlink::{NetlinkError, VfConfig, VfReport};
use vhost_user_net::uplink::sriov::pool::STATE_FILE;
use vhost_user_net::uplink::sriov::VfLink;

pub const PF_BDF: &str = "0000:3b:00.0";
pub const PF_IFINDEX: i32 = 7;

pub fn vf_bdf(index: u16) -> String {
    format!("0000:3b:02.{index}")
}

/// A temporary directory holding a sysfs tree and a run directory, removed on drop.
pub struct FakeHost {
    dir: PathBuf,
}

impl FakeHost {
    /// `eth0` with `num_vfs` VFs, each bound to iavf except those listed in `with_vfio`.
    pub fn new(num_vfs: u16, with_vfio: &[u16]) -> FakeHost {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vif-sriov-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        let host = FakeHost { dir };
        let sys = host.sys();
        for driver in ["iavf", "vfio-pci"] {
            let d = sys.join("bus/pci/drivers").join(driver);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("bind"), "").unwrap();
            fs::write(d.join("unbind"), "").unwrap();
        }
        fs::write(sys.join("bus/pci/drivers_probe"), "").unwrap();
        let pf_dir = sys.join("bus/pci/devices").join(PF_BDF);
        fs::create_dir_all(&pf_dir).unwrap();
        fs::write(pf_dir.join("sriov_totalvfs"), "64\n").unwrap();
        fs::write(pf_dir.join("sriov_numvfs"), format!("{num_vfs}\n")).unwrap();
        for index in 0..num_vfs {
            let bdf = vf_bdf(index);
            let vf_dir = sys.join("bus/pci/devices").join(&bdf);
            fs::create_dir_all(&vf_dir).unwrap();
            fs::write(vf_dir.join("driver_override"), "(null)\n").unwrap();
            symlink(format!("../{bdf}"), pf_dir.join(format!("virtfn{index}"))).unwrap();
            let driver = if with_vfio.contains(&index) {
                "vfio-pci"
            } else {
                fs::create_dir_all(vf_dir.join(format!("net/eth0v{index}"))).unwrap();
                "iavf"
            };
            host.bind(index, Some(driver));
        }
        let net = sys.join("class/net/eth0");
        fs::create_dir_all(&net).unwrap();
        fs::write(net.join("ifindex"), format!("{PF_IFINDEX}\n")).unwrap();
        symlink(
            format!("../../../bus/pci/devices/{PF_BDF}"),
            net.join("device"),
        )
        .unwrap();
        host
    }

    pub fn sys(&self) -> PathBuf {
        self.dir.join("sys")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn vf_dir(&self, index: u16) -> PathBuf {
        self.sys().join("bus/pci/devices").join(vf_bdf(index))
    }

    /// Points VF `index`'s `driver` link at `driver`, as the kernel does on (un)binding.
    pub fn bind(&self, index: u16, driver: Option<&str>) {
        let link = self.vf_dir(index).join("driver");
        let _ = fs::remove_file(&link);
        if let Some(driver) = driver {
            symlink(format!("../../drivers/{driver}"), link).unwrap();
        }
    }

    pub fn read(&self, path: impl AsRef<Path>) -> String {
        fs::read_to_string(self.sys().join(path)).unwrap()
    }

    pub fn clear(&self, path: &str) {
        fs::write(self.sys().join(path), "").unwrap();
    }

    pub fn state(&self) -> String {
        fs::read_to_string(self.run_dir().join(STATE_FILE)).unwrap_or_default()
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Records what vif asks of the PF; answers `vf_reports` from `reports`.
#[derive(Default)]
pub struct RecordingLink {
    pub set: Vec<(i32, VfConfig)>,
    pub reports: Vec<VfReport>,
    pub refuse: bool,
    /// How many times `vf_reports` asked the PF.
    pub report_requests: usize,
}

impl VfLink for RecordingLink {
    fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        self.set.push((pf_ifindex, *config));
        if self.refuse {
            return Err(NetlinkError::Kernel {
                source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
                message: None,
            });
        }
        Ok(())
    }

    fn vf_reports(&mut self, _pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        self.report_requests += 1;
        Ok(self.reports.clone())
    }
}

/// A [`RecordingLink`] the test keeps a handle on while a daemon owns the link.
#[derive(Clone, Default)]
pub struct SharedLink(pub Arc<Mutex<RecordingLink>>);

impl SharedLink {
    pub fn recorded(&self) -> MutexGuard<'_, RecordingLink> {
        self.0.lock().unwrap()
    }
}

impl VfLink for SharedLink {
    fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        self.recorded().set_vf(pf_ifindex, config)
    }

    fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        self.recorded().vf_reports(pf)
    }
}
