//! SR-IOV VIFs in the running daemon. Such a VIF has no socket, backend or supervisor: the
//! daemon prepares a VF for it ([`SriovManager`]) and the VMM passes the VF to the guest. This
//! file keeps their configs beside the socket VIFs' records, so the control socket sees one VIF
//! set:
//! - [`Daemon::assign_vf`] allocates a VIF's VF (at start, and for `create`/`apply`) with the
//!   settings of its uplink, opening the manager on first use;
//! - [`Daemon::remove_vf_vif`] releases it (`remove`, and `apply` without it);
//! - [`split_vf_plan`] takes a plan's SR-IOV part out, and [`Daemon::execute_vf_plan`] carries
//!   it out after the socket VIFs' part, so VFs freed by removals can be handed out again;
//! - [`Daemon::vf_counters`] reads every VF's counters for the metrics.
//!
//! A daemon that stops leaves its VFs prepared (their VMs may outlive it); the next daemon
//! re-adopts them or releases them (`uplink::sriov::pool`).

use std::collections::{BTreeMap, BTreeSet};

use vif_core::model::{UplinkSpec, VifId};

use super::{is_sriov, Daemon, DaemonError};
use crate::config::{default_socket_dir, VifConfig};
use crate::control::apply::{Change, Plan};
use crate::uplink::sriov::netlink::VfStats;
use crate::uplink::sriov::{DaemonVfLink, SriovManager, VfAssignment, VfSettings};

/// Splits `plan` into the part for socket VIFs and the part for SR-IOV VIFs (`sriov_running`:
/// the ids of the running SR-IOV VIFs). New and restarted VIFs go by their new uplink, relabels
/// and policy changes (which never change the uplink) by the running one. Removals stay with
/// the socket part: [`Daemon::remove_vif`] takes either kind.
pub fn split_vf_plan(plan: &Plan, sriov_running: &BTreeSet<VifId>) -> (Plan, Plan) {
    let running = |change: &Change| sriov_running.contains(&change.config.spec.id);
    let mut sockets = plan.clone();
    let mut vfs = Plan::default();
    (vfs.add, sockets.add) = plan.add.iter().cloned().partition(is_sriov);
    (vfs.restart, sockets.restart) = plan
        .restart
        .iter()
        .cloned()
        .partition(|change| is_sriov(&change.config));
    (vfs.relabel, sockets.relabel) = plan.relabel.iter().cloned().partition(running);
    (vfs.repolicy, sockets.repolicy) = plan.repolicy.iter().cloned().partition(running);
    (sockets, vfs)
}

impl Daemon {
    /// Sends the PF side of SR-IOV (setting a VF's MAC, VLAN, ...; reading its counters)
    /// through `link` instead of rtnetlink: for tests against a fake sysfs
    /// (`VIF_SYSFS_ROOT`), and for embedders with their own PF driver interface. Opens the
    /// SR-IOV state in the runtime directory if it is not open yet.
    pub fn use_vf_link(&mut self, link: DaemonVfLink) -> Result<(), DaemonError> {
        match self.sriov.as_mut() {
            Some(sriov) => {
                sriov.replace_link(link);
            }
            None => {
                let sysfs = crate::uplink::sriov::system_sysfs();
                self.sriov = Some(SriovManager::open(sysfs, link, &default_socket_dir())?);
            }
        }
        Ok(())
    }

    /// The SR-IOV VIFs, by id.
    pub fn vf_vifs(&self) -> &BTreeMap<VifId, VifConfig> {
        &self.vf_vifs
    }

    /// Prepares the VF of SR-IOV VIF `vif` with its uplink's settings and logs what the VMM
    /// needs ([`Daemon::vf_assignment`] returns it). A VIF of another kind is left alone.
    pub(super) fn assign_vf(&mut self, vif: &VifConfig) -> Result<(), DaemonError> {
        let UplinkSpec::SriovVf(uplink) = &vif.spec.uplink else {
            return Ok(());
        };
        let sriov = match self.sriov.as_mut() {
            Some(sriov) => sriov,
            None => self
                .sriov
                .insert(SriovManager::open_system(&default_socket_dir())?),
        };
        let assignment = sriov.allocate(
            vif.spec.id.as_str(),
            vif.spec.mac,
            uplink,
            &VfSettings::from_uplink(uplink),
        )?;
        log::info!(
            "vif {}: VF {} of {} at {}; QEMU: {}; Cloud Hypervisor: {}",
            vif.spec.id,
            assignment.vf,
            assignment.pf,
            assignment.bdf,
            vmm_integration::args::shell_line(&assignment.qemu_args()?),
            vmm_integration::args::shell_line(&assignment.cloud_hypervisor_args()?),
        );
        self.vf_vifs.insert(vif.spec.id.clone(), vif.clone());
        Ok(())
    }

    /// Forgets SR-IOV VIF `vif` and releases its VF (settings cleared, host driver bound).
    /// `false` if `vif` is not an SR-IOV VIF. A VF that cannot be released is logged and stays
    /// in the state file, for the next start to release.
    pub(super) fn remove_vf_vif(&mut self, vif: &str) -> bool {
        if self.vf_vifs.remove(vif).is_none() {
            return false;
        }
        match self.sriov.as_mut().map(|sriov| sriov.release(vif)) {
            Some(Ok(())) => log::info!("vif {vif}: removed; its VF went back to the host"),
            Some(Err(e)) => log::error!("vif {vif}: removed, but {e}; the next start retries"),
            None => log::error!("vif {vif}: removed; no SR-IOV state held its VF"),
        }
        true
    }

    /// Carries out the SR-IOV part of a plan (from [`split_vf_plan`]): labels and policies are
    /// recorded (a VF has no datapath in the daemon to apply policies to), restarts release
    /// the old VIF and allocate anew, additions allocate. Returns what failed.
    pub(super) fn execute_vf_plan(&mut self, plan: &Plan) -> Vec<String> {
        for change in plan.relabel.iter().chain(&plan.repolicy) {
            if let Some(config) = self.vf_vifs.get_mut(&change.config.spec.id) {
                *config = change.config.clone();
                log::info!(
                    "vif {}: {} recorded",
                    change.config.spec.id,
                    change.fields.join(", ")
                );
            }
        }
        let mut failures = Vec::new();
        for change in &plan.restart {
            self.remove_vif(change.config.spec.id.as_str());
        }
        let starting = plan
            .add
            .iter()
            .chain(plan.restart.iter().map(|c| &c.config));
        for vif in starting {
            match self.allocate_vf(vif) {
                Ok(()) => log::info!("vif {}: created", vif.spec.id),
                Err(e) => {
                    log::error!("{e}");
                    failures.push(e.to_string());
                }
            }
        }
        failures
    }

    /// Every SR-IOV VIF's VF with its counters as its PF reports them (`None`: the PF did not
    /// answer), in VIF order.
    pub fn vf_counters(&self) -> Vec<(&VfAssignment, Option<VfStats>)> {
        self.sriov
            .as_ref()
            .map(SriovManager::all_stats)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use vif_core::mac::MacAddr;
    use vif_core::model::{LocalUplink, SriovVfUplink, VifSpec};

    use super::*;
    use crate::config::SocketMode;

    fn vif(id: &str, uplink: UplinkSpec) -> VifConfig {
        VifConfig {
            spec: VifSpec::new(VifId::new(id).unwrap(), MacAddr([2, 0, 0, 0, 0, 1]), uplink),
            socket: PathBuf::from(format!("/run/vif/{id}.sock")),
            mode: SocketMode::Server,
        }
    }

    fn local(id: &str) -> VifConfig {
        let segment = "lab".to_owned();
        vif(id, UplinkSpec::Local(LocalUplink { segment }))
    }

    fn sriov(id: &str) -> VifConfig {
        vif(id, UplinkSpec::SriovVf(SriovVfUplink::new("eth0")))
    }

    fn change(config: VifConfig, field: &str) -> Change {
        Change {
            config,
            fields: vec![field.to_owned()],
        }
    }

    fn ids(vifs: &[VifConfig]) -> Vec<&str> {
        vifs.iter().map(|v| v.spec.id.as_str()).collect()
    }

    fn change_ids(changes: &[Change]) -> Vec<&str> {
        changes.iter().map(|c| c.config.spec.id.as_str()).collect()
    }

    #[test]
    fn sriov_vifs_leave_the_socket_plan() {
        let plan = Plan {
            add: vec![local("a"), sriov("b")],
            remove: vec![VifId::new("gone").unwrap()],
            // c becomes an SR-IOV VIF, d stops being one.
            restart: vec![change(sriov("c"), "uplink"), change(local("d"), "uplink")],
            relabel: vec![change(sriov("e"), "labels"), change(local("f"), "labels")],
            repolicy: vec![change(sriov("g"), "acl"), change(local("h"), "acl")],
            ..Plan::default()
        };
        let running: BTreeSet<VifId> = ["d", "e", "g"]
            .into_iter()
            .map(|id| VifId::new(id).unwrap())
            .collect();
        let (sockets, vfs) = split_vf_plan(&plan, &running);
        assert_eq!(ids(&sockets.add), ["a"]);
        assert_eq!(ids(&vfs.add), ["b"]);
        assert_eq!(change_ids(&sockets.restart), ["d"]);
        assert_eq!(change_ids(&vfs.restart), ["c"]);
        assert_eq!(change_ids(&sockets.relabel), ["f"]);
        assert_eq!(change_ids(&vfs.relabel), ["e"]);
        assert_eq!(change_ids(&sockets.repolicy), ["h"]);
        assert_eq!(change_ids(&vfs.repolicy), ["g"]);
        // Removals are for remove_vif, whatever the kind.
        assert_eq!(sockets.remove, plan.remove);
        assert!(vfs.remove.is_empty());
    }
}
