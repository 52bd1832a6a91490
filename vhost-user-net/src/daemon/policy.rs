//! The policies of running VIFs: built when a VIF starts, from the library of named `[[acl]]`
//! and `[[qos]]` tables; replaced while traffic flows by the control socket's `set_acl` and
//! `set_qos`, and by a declarative `apply` whose only differences for a VIF are policies.
//!
//! The library and the VIFs' references stay consistent: a VIF record's spec always names
//! what its datapath applies, and the library holds that content under that name. So `set_acl`
//! with a name another VIF (or the other direction) uses with different rules is refused: the
//! caller renames it, or changes both through `apply`. Swaps are atomic per part
//! (`crate::policy`): a packet is judged by the old or the new rule set, never by a mix, and
//! frames of other VIFs and other parts are not disturbed.
//!
//! SR-IOV VIFs have no datapath here (the guest drives its VF): their policy references are
//! checked but not applied, and the daemon says so when it starts them.

use std::sync::Arc;
use std::time::Instant;

use vif_core::acl::{AclSpec, Direction};
use vif_core::model::{UplinkSpec, VifId};
use vif_core::qos::QosSpec;

use super::{Daemon, DaemonError};
use crate::config::policy::PolicyLibrary;
use crate::config::VifConfig;
use crate::policy::{clock_ns, direction_name, PolicyError, VifPolicy};

/// Why `set_acl` or `set_qos` changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetPolicyError {
    #[error("no vif {vif:?}")]
    NotFound { vif: String },
    #[error("vif {vif}: {source}")]
    Invalid {
        vif: String,
        #[source]
        source: PolicyError,
    },
    #[error(
        "vif {vif}: {kind} {name:?} is also the {field} of vif {other} with other content; \
         give the new one another name, or change both with apply"
    )]
    NameInUse {
        vif: String,
        kind: &'static str,
        name: String,
        field: &'static str,
        other: VifId,
    },
}

impl Daemon {
    /// The named policies VIFs refer to.
    pub fn policies(&self) -> &PolicyLibrary {
        &self.policies
    }

    /// The policy of a VIF about to start: its references resolved and compiled.
    pub(super) fn build_policy(&self, vif: &VifConfig) -> Result<Arc<VifPolicy>, DaemonError> {
        let resolved = self.policies.resolve(&vif.spec)?;
        let policy = VifPolicy::new(vif.spec.mac, self.conntrack);
        policy
            .apply(&resolved, clock_ns(Instant::now()))
            .map_err(|source| DaemonError::PolicyApply {
                vif: vif.spec.id.clone(),
                source,
            })?;
        Ok(Arc::new(policy))
    }

    /// Logs that an SR-IOV VIF's policy references are not enforced by the daemon.
    pub(super) fn warn_unenforced_policy(vif: &VifConfig) {
        let spec = &vif.spec;
        let has_policy = spec.acl.ingress.is_some()
            || spec.acl.egress.is_some()
            || spec.qos.is_some()
            || spec.port_security.is_some();
        if has_policy && matches!(spec.uplink, UplinkSpec::SriovVf(_)) {
            log::warn!(
                "vif {}: ACLs, QoS and port security are not applied to an SR-IOV VF \
                 (the guest drives the VF directly)",
                spec.id
            );
        }
    }

    /// Installs the policy tables a plan computed (`control::apply::plan_policies`), and
    /// `conntrack` as the settings of VIFs created from now on.
    pub(super) fn install_policies(
        &mut self,
        library: &PolicyLibrary,
        conntrack: Option<vif_core::acl::ConntrackConfig>,
    ) {
        self.policies = library.clone();
        if let Some(conntrack) = conntrack {
            self.conntrack = conntrack;
        }
    }

    /// Gives running VIF `config.spec.id` the policies `config` names (in the installed
    /// library), in place, and takes its new spec (policy fields and labels).
    pub(super) fn repolicy(&mut self, config: &VifConfig) -> Result<(), DaemonError> {
        let resolved = self.policies.resolve(&config.spec)?;
        let Some(record) = self.vifs.get_mut(&config.spec.id) else {
            return Ok(());
        };
        record
            .backend
            .policy()
            .apply(&resolved, clock_ns(Instant::now()))
            .map_err(|source| DaemonError::PolicyApply {
                vif: config.spec.id.clone(),
                source,
            })?;
        record.config.spec = config.spec.clone();
        log::info!("vif {}: policy updated", config.spec.id);
        Ok(())
    }

    /// `set_acl`: replaces (or, with `None`, removes) one direction's ACL of `vif`.
    pub fn set_vif_acl(
        &mut self,
        vif: &str,
        direction: Direction,
        acl: Option<&AclSpec>,
    ) -> Result<(), SetPolicyError> {
        let field = match direction {
            Direction::Ingress => "acl.ingress",
            Direction::Egress => "acl.egress",
        };
        if let Some(acl) = acl {
            let same = self.policies.acls.get(&acl.name) == Some(acl);
            if !same {
                self.refuse_shared_name(vif, "acl", &acl.name, field)?;
            }
        }
        let record = self.vifs.get_mut(vif).ok_or_else(|| not_found(vif))?;
        record
            .backend
            .policy()
            .set_acl(direction, acl, clock_ns(Instant::now()))
            .map_err(|source| SetPolicyError::Invalid {
                vif: vif.to_owned(),
                source,
            })?;
        let name = acl.map(|acl| acl.name.clone());
        match direction {
            Direction::Ingress => record.config.spec.acl.ingress = name,
            Direction::Egress => record.config.spec.acl.egress = name,
        }
        if let Some(acl) = acl {
            self.policies.acls.insert(acl.name.clone(), acl.clone());
        }
        log::info!(
            "vif {vif}: {} acl {}",
            direction_name(direction),
            acl.map_or("removed", |acl| acl.name.as_str())
        );
        Ok(())
    }

    /// `set_qos`: replaces (or, with `None`, removes) the rate limits of `vif`; the new
    /// buckets start full.
    pub fn set_vif_qos(&mut self, vif: &str, qos: Option<&QosSpec>) -> Result<(), SetPolicyError> {
        if let Some(qos) = qos {
            if self.policies.qos.get(&qos.name) != Some(qos) {
                self.refuse_shared_name(vif, "qos", &qos.name, "qos")?;
            }
        }
        let record = self.vifs.get_mut(vif).ok_or_else(|| not_found(vif))?;
        record
            .backend
            .policy()
            .set_qos(qos, clock_ns(Instant::now()))
            .map_err(|source| SetPolicyError::Invalid {
                vif: vif.to_owned(),
                source,
            })?;
        record.config.spec.qos = qos.map(|qos| qos.name.clone());
        if let Some(qos) = qos {
            self.policies.qos.insert(qos.name.clone(), qos.clone());
        }
        log::info!(
            "vif {vif}: qos {}",
            qos.map_or("removed", |qos| qos.name.as_str())
        );
        Ok(())
    }

    /// Refuses a new definition of `name` while any reference other than (`vif`, `field`)
    /// uses the old one.
    fn refuse_shared_name(
        &self,
        vif: &str,
        kind: &'static str,
        name: &str,
        field: &'static str,
    ) -> Result<(), SetPolicyError> {
        if !self.vifs.contains_key(vif) {
            return Err(not_found(vif));
        }
        for (id, record) in &self.vifs {
            let spec = &record.config.spec;
            let references = if kind == "acl" {
                vec![
                    ("acl.ingress", spec.acl.ingress.as_deref()),
                    ("acl.egress", spec.acl.egress.as_deref()),
                ]
            } else {
                vec![("qos", spec.qos.as_deref())]
            };
            for (other_field, reference) in references {
                let this = id.as_str() == vif && other_field == field;
                if !this && reference == Some(name) {
                    return Err(SetPolicyError::NameInUse {
                        vif: vif.to_owned(),
                        kind,
                        name: name.to_owned(),
                        field: other_field,
                        other: id.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn not_found(vif: &str) -> SetPolicyError {
    SetPolicyError::NotFound {
        vif: vif.to_owned(),
    }
}
