//! SR-IOV VF uplinks: vif prepares a virtual function for a VIF and hands it to the VMM, and the
//! guest then drives the hardware directly (there is no vhost-user socket for such a VIF and no
//! frame passes through the daemon).
//!
//! [`SriovManager::allocate`] does, for one VIF:
//! 1. find the PF's VFs in sysfs ([`sysfs`]); fail plainly when the PF is missing, has no SR-IOV
//!    capability or no VF enabled;
//! 2. choose the configured `vf_index` or the lowest free VF ([`pool`]), and record the
//!    allocation in the state file *before* touching the VF;
//! 3. set the VF's MAC (the VIF's), VLAN, spoof checking, trust and rate on the PF through
//!    rtnetlink ([`netlink`]), as the VIF's uplink asks ([`VfSettings::from_uplink`]);
//! 4. bind the VF to vfio-pci;
//! 5. return a [`VfAssignment`], whose [`VfAssignment::qemu_args`] and
//!    [`VfAssignment::cloud_hypervisor_args`] are what the VMM needs.
//!
//! [`SriovManager::release`] undoes it (clear the MAC and settings, rebind the host driver).
//! [`SriovManager::open`] garbage-collects a crashed daemon's allocations: see [`pool`] for the
//! state file and the ownership rule; [`SriovManager::collect_garbage`] releases the stale VFs
//! that no configured VIF re-adopted.
//!
//! The PF side goes through [`VfLink`] so that tests can record the rtnetlink requests of a whole
//! allocation against a sysfs tree built in a temporary directory.

pub mod netlink;
pub mod pool;
mod settings;
pub mod sysfs;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use vif_core::mac::MacAddr;
use vif_core::model::SriovVfUplink;
use vmm_integration::args::{cloud_hypervisor_vfio_args, qemu_vfio_args, ArgsError, VfioNic};

use netlink::{NetlinkError, RtNetlink, VfConfig, VfRate, VfReport, VfStats, VfVlan};
use pool::{PoolError, StateFile, VfRecord};
pub use settings::VfSettings;
use sysfs::{PciAddress, Sysfs, SysfsError};

/// Why an SR-IOV VIF cannot get, keep or give back its VF.
#[derive(Debug, thiserror::Error)]
pub enum SriovError {
    #[error("vif {vif}: {source}")]
    Sysfs {
        vif: String,
        #[source]
        source: SysfsError,
    },
    #[error("vif {vif}: {source}")]
    Pool {
        vif: String,
        #[source]
        source: PoolError,
    },
    #[error("vif {vif}: interface {pf} VF {vf}: {source}")]
    Netlink {
        vif: String,
        pf: String,
        vf: u16,
        #[source]
        source: NetlinkError,
    },
    #[error("vif {vif}: {source}")]
    Args {
        vif: String,
        #[source]
        source: ArgsError,
    },
    #[error("cannot open rtnetlink for SR-IOV: {0}")]
    NetlinkOpen(#[source] NetlinkError),
    #[error("vif {vif} has a VF allocated already")]
    AlreadyAllocated { vif: String },
    #[error("vif {vif} has no VF allocated")]
    NotAllocated { vif: String },
    #[error("vif {vif}: interface {pf} does not report VF {vf} over rtnetlink")]
    VfNotReported { vif: String, pf: String, vf: u16 },
}

/// Environment variable pointing the daemon at another sysfs root (tests use a tree they
/// built); unset, the daemon uses `/sys`.
pub const SYSFS_ROOT_ENV: &str = "VIF_SYSFS_ROOT";

/// The sysfs the daemon uses: `$VIF_SYSFS_ROOT`, else `/sys`.
pub fn system_sysfs() -> Sysfs {
    match std::env::var_os(SYSFS_ROOT_ENV).filter(|root| !root.is_empty()) {
        Some(root) => Sysfs::new(root),
        None => Sysfs::new("/sys"),
    }
}

/// True when a daemon left a state file in `run_dir`: the next daemon must open the manager
/// (and collect its garbage) even if it serves no SR-IOV VIF itself.
pub fn has_state(run_dir: &Path) -> bool {
    run_dir.join(pool::STATE_FILE).exists()
}

/// How the PF's side of a VF is set and read: rtnetlink in production, a recorder in tests.
pub trait VfLink {
    fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError>;
    fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError>;
}

/// A boxed link, so the daemon can be handed another implementation than rtnetlink.
impl<L: VfLink + ?Sized> VfLink for Box<L> {
    fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        (**self).set_vf(pf_ifindex, config)
    }

    fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        (**self).vf_reports(pf)
    }
}

impl VfLink for RtNetlink {
    fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        RtNetlink::set_vf(self, pf_ifindex, config)
    }

    fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        RtNetlink::vf_reports(self, pf)
    }
}

/// A VF handed to a VIF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfAssignment {
    pub vif: String,
    pub pf: String,
    pub pf_ifindex: i32,
    pub vf: u16,
    pub bdf: PciAddress,
    /// The host driver before vfio-pci.
    pub host_driver: Option<String>,
    pub config: VfConfig,
    /// True when this daemon found the VF already prepared by a previous run for this VIF.
    pub adopted: bool,
}

impl VfAssignment {
    fn nic(&self) -> VfioNic {
        VfioNic {
            id: self.vif.clone(),
            host: self.bdf.to_string(),
        }
    }

    /// `-device vfio-pci,host=BDF,id=VIF`.
    pub fn qemu_args(&self) -> Result<Vec<String>, SriovError> {
        qemu_vfio_args(&self.nic()).map_err(|source| SriovError::Args {
            vif: self.vif.clone(),
            source,
        })
    }

    /// `--device path=/sys/bus/pci/devices/BDF/,id=VIF`.
    pub fn cloud_hypervisor_args(&self) -> Result<Vec<String>, SriovError> {
        cloud_hypervisor_vfio_args(&self.nic()).map_err(|source| SriovError::Args {
            vif: self.vif.clone(),
            source,
        })
    }

    fn record(&self) -> VfRecord {
        VfRecord {
            vif: self.vif.clone(),
            pf: self.pf.clone(),
            vf: self.vf,
            bdf: self.bdf,
            driver: self.host_driver.clone(),
            set_vlan: self.config.vlan.is_some(),
            set_trust: self.config.trust.is_some(),
            set_rate: self.config.rate.is_some(),
        }
    }
}

/// The daemon's SR-IOV VFs: allocation, release, counters and crash recovery.
pub struct SriovManager<L: VfLink> {
    sysfs: Sysfs,
    /// Behind a lock so that counters can be read through a shared reference (a scrape).
    link: Mutex<L>,
    state: StateFile,
    /// Records left by a dead daemon, not yet re-adopted or released.
    stale: Vec<VfRecord>,
    assignments: BTreeMap<String, VfAssignment>,
}

/// The PF link the daemon holds: rtnetlink unless it was handed another
/// (`Daemon::use_vf_link`, for tests and embedders).
pub type DaemonVfLink = Box<dyn VfLink + Send>;

impl SriovManager<DaemonVfLink> {
    /// The daemon's manager: [`system_sysfs`], rtnetlink, state in `run_dir`.
    pub fn open_system(run_dir: &Path) -> Result<SriovManager<DaemonVfLink>, SriovError> {
        let link = RtNetlink::open().map_err(SriovError::NetlinkOpen)?;
        SriovManager::open(system_sysfs(), Box::new(link), run_dir)
    }
}

impl<L: VfLink> SriovManager<L> {
    /// Takes the state lock in `run_dir` and loads what a crashed daemon left there.
    pub fn open(sysfs: Sysfs, link: L, run_dir: &Path) -> Result<SriovManager<L>, SriovError> {
        let (state, stale) = StateFile::open(run_dir).map_err(|source| SriovError::Pool {
            vif: "-".into(),
            source,
        })?;
        if !stale.is_empty() {
            log::info!(
                "{}: {} VF allocation(s) left by a previous daemon",
                state.path().display(),
                stale.len()
            );
        }
        Ok(SriovManager {
            sysfs,
            link: Mutex::new(link),
            state,
            stale,
            assignments: BTreeMap::new(),
        })
    }

    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    pub fn link(&self) -> MutexGuard<'_, L> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn link_mut(&mut self) -> &mut L {
        self.link.get_mut().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends the PF side through `link` from now on; returns the previous one.
    pub fn replace_link(&mut self, link: L) -> L {
        std::mem::replace(self.link_mut(), link)
    }

    pub fn assignment(&self, vif: &str) -> Option<&VfAssignment> {
        self.assignments.get(vif)
    }

    pub fn assignments(&self) -> impl Iterator<Item = &VfAssignment> {
        self.assignments.values()
    }

    /// Records a previous daemon left that no VIF re-adopted yet.
    pub fn stale(&self) -> &[VfRecord] {
        &self.stale
    }

    /// Prepares a VF for `vif` with MAC `mac` and hands it to vfio-pci. A VF a previous daemon
    /// prepared for the same VIF on the same PF (and index, when one is configured) is
    /// re-adopted rather than reset, since its VM may still be running.
    pub fn allocate(
        &mut self,
        vif: &str,
        mac: MacAddr,
        uplink: &SriovVfUplink,
        settings: &VfSettings,
    ) -> Result<&VfAssignment, SriovError> {
        let sysfs_err = |source| SriovError::Sysfs {
            vif: vif.to_owned(),
            source,
        };
        let pool_err = |source| SriovError::Pool {
            vif: vif.to_owned(),
            source,
        };
        if self.assignments.contains_key(vif) {
            return Err(SriovError::AlreadyAllocated {
                vif: vif.to_owned(),
            });
        }
        let pf = self.sysfs.pf(&uplink.pf).map_err(sysfs_err)?;
        self.sysfs.check_vfio_loaded().map_err(sysfs_err)?;

        let adoptable = self.stale.iter().position(|r| {
            r.vif == vif && r.pf == uplink.pf && uplink.vf_index.is_none_or(|vf| vf == r.vf)
        });
        let (slot, adopted) = match adoptable {
            Some(at) => {
                let record = self.stale.remove(at);
                let slot = pf.vfs.iter().find(|s| s.index == record.vf).cloned();
                match slot {
                    Some(slot) if slot.bdf == record.bdf => (slot, Some(record)),
                    // The PF's VFs changed under us: start afresh (GC releases the record).
                    _ => {
                        self.stale.push(record);
                        (self.choose(&pf, vif, uplink.vf_index)?, None)
                    }
                }
            }
            None => (self.choose(&pf, vif, uplink.vf_index)?, None),
        };

        let mut assignment = VfAssignment {
            vif: vif.to_owned(),
            pf: pf.name.clone(),
            pf_ifindex: pf.ifindex,
            vf: slot.index,
            bdf: slot.bdf,
            host_driver: match &adopted {
                Some(record) => record.driver.clone(),
                None => slot.driver.clone(),
            },
            config: settings.config(slot.index, mac),
            adopted: adopted.is_some(),
        };
        // Write-ahead: a crash from here on leaves a record GC can act on.
        self.state.insert(assignment.record()).map_err(pool_err)?;
        if let Err(e) = self.prepare(&mut assignment) {
            // Leave nothing half-done: give the VF back, then forget it.
            if let Err(undo) = self.undo(&assignment) {
                log::error!("vif {vif}: cannot undo a failed allocation: {undo}");
            } else if let Err(forget) = self.state.remove(vif) {
                log::error!("vif {vif}: {forget}");
            }
            return Err(e);
        }
        log::info!(
            "vif {vif}: VF {} of {} ({}) {}",
            assignment.vf,
            assignment.pf,
            assignment.bdf,
            if assignment.adopted {
                "re-adopted from a previous daemon"
            } else {
                "allocated"
            }
        );
        let vif_key = vif.to_owned();
        Ok(self.assignments.entry(vif_key).or_insert(assignment))
    }

    fn choose(
        &self,
        pf: &sysfs::PfInfo,
        vif: &str,
        requested: Option<u16>,
    ) -> Result<sysfs::VfSlot, SriovError> {
        let owner_of = |vf: u16| {
            self.state
                .owner_of(&pf.name, vf)
                .map(|record| record.vif.clone())
        };
        pool::choose_vf(pf, requested, owner_of)
            .cloned()
            .map_err(|source| SriovError::Pool {
                vif: vif.to_owned(),
                source,
            })
    }

    /// Sets the VF's PF-side settings and binds it to vfio-pci.
    /// A re-adopted VF whose PF already reports the wanted settings is left alone: some drivers
    /// (i40e, ice) reset a VF whose MAC is set while a guest drives it.
    fn prepare(&mut self, assignment: &mut VfAssignment) -> Result<(), SriovError> {
        if !(assignment.adopted && self.already_set(assignment)) {
            self.link_mut()
                .set_vf(assignment.pf_ifindex, &assignment.config)
                .map_err(|source| SriovError::Netlink {
                    vif: assignment.vif.clone(),
                    pf: assignment.pf.clone(),
                    vf: assignment.vf,
                    source,
                })?;
        }
        let previous =
            self.sysfs
                .bind_vfio(assignment.bdf)
                .map_err(|source| SriovError::Sysfs {
                    vif: assignment.vif.clone(),
                    source,
                })?;
        if !assignment.adopted && previous != assignment.host_driver {
            assignment.host_driver = previous;
        }
        Ok(())
    }

    /// True when the PF reports `assignment`'s settings on its VF already. Settings left
    /// `None` are not compared; a PF that cannot be asked is treated as "not set".
    fn already_set(&mut self, assignment: &VfAssignment) -> bool {
        let Ok(reports) = self.link_mut().vf_reports(&assignment.pf) else {
            return false;
        };
        let want = &assignment.config;
        reports.iter().any(|report| {
            report.vf == want.vf
                && report.mac == want.mac
                && want
                    .vlan
                    .is_none_or(|vlan| report.vlan.unwrap_or(VfVlan { vid: 0, qos: 0 }) == vlan)
                && report.spoofchk.is_none_or(|on| on == want.spoofchk)
                && want.trust.is_none_or(|trust| report.trust == Some(trust))
                && want.rate.is_none_or(|rate| report.rate == Some(rate))
        })
    }

    /// Clears the PF-side settings and gives the VF back to its host driver. Only the driver
    /// step can fail the release: a VF left with vfio-pci would be lost to the pool, while a
    /// PF that refuses the clear (a driver without one of the knobs, or a PF gone) is logged
    /// and the VF counts as free (the next allocation sets every knob it uses anyway).
    fn undo(&mut self, assignment: &VfAssignment) -> Result<(), SriovError> {
        let cleared = VfConfig::cleared(&assignment.config);
        if let Err(e) = self.link_mut().set_vf(assignment.pf_ifindex, &cleared) {
            log::warn!(
                "vif {}: interface {} VF {}: cannot clear its settings: {e}",
                assignment.vif,
                assignment.pf,
                assignment.vf
            );
        }
        self.sysfs
            .release_to_host(assignment.bdf)
            .map_err(|source| SriovError::Sysfs {
                vif: assignment.vif.clone(),
                source,
            })
    }

    /// Takes `vif`'s VF back: settings cleared, host driver bound, record removed.
    pub fn release(&mut self, vif: &str) -> Result<(), SriovError> {
        let assignment = self
            .assignments
            .remove(vif)
            .ok_or_else(|| SriovError::NotAllocated {
                vif: vif.to_owned(),
            })?;
        self.undo(&assignment)?;
        self.state.remove(vif).map_err(|source| SriovError::Pool {
            vif: vif.to_owned(),
            source,
        })
    }

    /// Releases every VF a previous daemon left that no VIF re-adopted. Call after allocating
    /// the configured VIFs. Returns the VIFs whose VFs were released; a VF that cannot be
    /// released is logged and stays recorded, for the next start to try again.
    pub fn collect_garbage(&mut self) -> Vec<String> {
        let mut released = Vec::new();
        for record in std::mem::take(&mut self.stale) {
            let pf_ifindex = match self.sysfs.pf(&record.pf) {
                Ok(pf) => pf.ifindex,
                Err(e) => {
                    log::warn!("vif {}: cannot release its stale VF: {e}", record.vif);
                    continue;
                }
            };
            let set = VfConfig {
                vf: u32::from(record.vf),
                mac: MacAddr::ZERO,
                vlan: record.set_vlan.then_some(VfVlan { vid: 0, qos: 0 }),
                spoofchk: true,
                trust: record.set_trust.then_some(false),
                rate: record.set_rate.then_some(VfRate::default()),
            };
            let assignment = VfAssignment {
                vif: record.vif.clone(),
                pf: record.pf.clone(),
                pf_ifindex,
                vf: record.vf,
                bdf: record.bdf,
                host_driver: record.driver.clone(),
                config: set,
                adopted: false,
            };
            match self.undo(&assignment) {
                Ok(()) => {
                    if let Err(e) = self.state.remove(&record.vif) {
                        log::error!("vif {}: {e}", record.vif);
                    }
                    log::info!(
                        "vif {}: released VF {} of {} ({}) left by a previous daemon",
                        record.vif,
                        record.vf,
                        record.pf,
                        record.bdf
                    );
                    released.push(record.vif);
                }
                Err(e) => log::warn!("{e}; it stays recorded for the next start"),
            }
        }
        released
    }

    /// The VF's counters, as its PF reports them (`IFLA_VF_STATS`).
    pub fn stats(&self, vif: &str) -> Result<VfStats, SriovError> {
        let assignment = self
            .assignments
            .get(vif)
            .ok_or_else(|| SriovError::NotAllocated {
                vif: vif.to_owned(),
            })?;
        let reports = self.reports(assignment)?;
        vf_stats(assignment, &reports)
    }

    /// Every assigned VF with its counters, in VIF order: one `RTM_GETLINK` per PF, however
    /// many of its VFs are assigned. `None` where the PF could not be asked or did not list the
    /// VF (logged at debug level: a scrape must not flood the log).
    pub fn all_stats(&self) -> Vec<(&VfAssignment, Option<VfStats>)> {
        let mut reports: BTreeMap<&str, Option<Vec<VfReport>>> = BTreeMap::new();
        self.assignments
            .values()
            .map(|assignment| {
                let pf_reports = reports
                    .entry(assignment.pf.as_str())
                    .or_insert_with(|| self.reports(assignment).map_err(log_debug).ok());
                let stats = pf_reports.as_deref().and_then(|pf_reports| {
                    vf_stats(assignment, pf_reports).map_err(log_debug).ok()
                });
                (assignment, stats)
            })
            .collect()
    }

    fn reports(&self, assignment: &VfAssignment) -> Result<Vec<VfReport>, SriovError> {
        self.link()
            .vf_reports(&assignment.pf)
            .map_err(|source| SriovError::Netlink {
                vif: assignment.vif.clone(),
                pf: assignment.pf.clone(),
                vf: assignment.vf,
                source,
            })
    }

    /// Releases every VF this daemon holds (graceful shutdown).
    pub fn release_all(&mut self) {
        let vifs: Vec<String> = self.assignments.keys().cloned().collect();
        for vif in vifs {
            if let Err(e) = self.release(&vif) {
                log::error!("{e}");
            }
        }
    }
}

/// `assignment`'s VF's counters among its PF's `reports`; a VF the PF lists without counters
/// (a driver without `ndo_get_vf_stats`) reads as zeros.
fn vf_stats(assignment: &VfAssignment, reports: &[VfReport]) -> Result<VfStats, SriovError> {
    reports
        .iter()
        .find(|report| report.vf == u32::from(assignment.vf))
        .map(|report| report.stats.unwrap_or_default())
        .ok_or_else(|| SriovError::VfNotReported {
            vif: assignment.vif.clone(),
            pf: assignment.pf.clone(),
            vf: assignment.vf,
        })
}

fn log_debug(error: SriovError) {
    log::debug!("{error}");
}
