//! Changing the running VIF set: starting one VIF (shared by [`Daemon::start`] and the control
//! socket), removing one, and carrying out a [`Plan`] from the control socket.
//!
//! A plan is carried out so that a failure leaves as little changed as possible:
//! 1. the sockets of new server-mode VIFs whose paths no running VIF holds are bound first; if
//!    any bind fails (a path in use by another process, a file in the way), the request fails and
//!    nothing has changed;
//! 2. the plan's policy library is installed; relabelled VIFs take their new labels and VIFs
//!    whose only differences are policies (ACLs, QoS, port security, or the content of the
//!    tables they name) take their new policies, in place, while traffic flows;
//! 3. removed and restarted VIFs are stopped (their sockets removed);
//! 4. new and restarted VIFs start, binding the sockets freed in step 3. A failure here (very
//!    unlikely: the daemon itself just held those paths) is reported with what was applied.
//!
//! Segments are created with their first VIF and dropped with their last.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use vif_core::model::VifId;

use super::socket::BoundSocket;
use super::status::{LinkState, VifStatus};
use super::supervisor::{Endpoint, VifSupervisor};
use super::vfs::split_vf_plan;
use super::{segment_name, Daemon, DaemonError};
use crate::backend::NetBackend;
use crate::config::{SocketMode, VifConfig};
use crate::control::apply::{same_path, Plan};
use crate::metrics::collect::{render, Scrape, SegmentView, VifView};
use crate::switch::Segment;

/// A running VIF: what it was created from, its backend and its connection status.
pub struct VifRecord {
    pub config: VifConfig,
    pub backend: Arc<NetBackend>,
    pub status: Arc<VifStatus>,
}

impl VifRecord {
    pub fn segment_name(&self) -> String {
        segment_name(&self.config.spec.id, &self.config.spec.uplink)
    }

    pub fn tenant(&self) -> Option<&str> {
        self.config.spec.labels.get("tenant").map(String::as_str)
    }
}

/// Why a plan could not be carried out in full.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Step 1 failed: nothing changed.
    #[error("{0}; nothing changed")]
    Refused(DaemonError),
    /// Step 4 failed for some VIFs: the rest of the plan was applied.
    #[error("partly applied: {failures}")]
    Partial { failures: String },
}

impl Daemon {
    /// The endpoint of `vif`: a bound socket (server mode) or the VMM's path (client mode).
    pub(super) fn endpoint(vif: &VifConfig) -> Result<Endpoint, DaemonError> {
        match vif.mode {
            SocketMode::Server => BoundSocket::bind(&vif.socket)
                .map(Endpoint::Listen)
                .map_err(|source| DaemonError::Socket {
                    vif: vif.spec.id.clone(),
                    source,
                }),
            SocketMode::Client => Ok(Endpoint::Connect(vif.socket.clone())),
        }
    }

    /// Starts one VIF on `endpoint`: its segment (created if new), backend and supervisor.
    /// `requested_at` starts its provisioning clock.
    pub(super) fn spawn_vif(
        &mut self,
        vif: &VifConfig,
        endpoint: Endpoint,
        requested_at: Instant,
    ) -> Result<(), DaemonError> {
        let policy = self.build_policy(vif)?;
        let name = segment_name(&vif.spec.id, &vif.spec.uplink);
        let segment = Arc::clone(
            self.segments
                .entry(name)
                .or_insert_with_key(|name| Segment::new(name)),
        );
        if let Err(e) = self.attach_uplink(vif, &segment) {
            drop(segment);
            self.drop_unused_segments();
            return Err(e);
        }
        let backend = NetBackend::with_policy(&vif.spec, segment, policy).map_err(|source| {
            self.drop_unused_segments();
            DaemonError::Backend {
                vif: vif.spec.id.clone(),
                source,
            }
        })?;
        if let Some(flow_log) = &self.services.flow_log {
            backend.enable_flow_log(flow_log);
        }
        let status = Arc::new(VifStatus::new(
            requested_at,
            usize::from(vif.spec.queue_pairs),
            Arc::clone(&self.services.provisioning),
        ));
        let supervisor = VifSupervisor::spawn_with_status(
            vif.spec.id.as_str(),
            Arc::clone(&backend),
            endpoint,
            Arc::clone(&status),
        );
        let supervisor = match supervisor {
            Ok(supervisor) => supervisor,
            Err(e) => {
                drop(backend);
                self.drop_unused_segments();
                return Err(e.into());
            }
        };
        self.supervisors.push(supervisor);
        self.vifs.insert(
            vif.spec.id.clone(),
            VifRecord {
                config: vif.clone(),
                backend,
                status,
            },
        );
        Ok(())
    }

    /// Stops `vif`, removes its socket (server mode) and forgets it; an SR-IOV VIF's VF is
    /// released. `false` if unknown.
    pub fn remove_vif(&mut self, vif: &str) -> bool {
        if self.remove_vf_vif(vif) {
            return true;
        }
        let Some(record) = self.vifs.remove(vif) else {
            return false;
        };
        if let Some(index) = self.supervisors.iter().position(|s| s.vif() == vif) {
            let supervisor = self.supervisors.swap_remove(index);
            supervisor.join();
        }
        record.status.set_state(LinkState::Stopped);
        drop(record);
        self.drop_unused_segments();
        log::info!("vif {vif}: removed");
        true
    }

    fn drop_unused_segments(&mut self) {
        let used: std::collections::BTreeSet<String> =
            self.vifs.values().map(VifRecord::segment_name).collect();
        self.segments.retain(|name, _| used.contains(name));
    }

    /// Carries out `plan` (see the module docs).
    pub fn execute(&mut self, plan: &Plan, requested_at: Instant) -> Result<(), ExecuteError> {
        // SR-IOV VIFs have no socket: their part runs last (see daemon::vfs).
        let (plan, vf_plan) = split_vf_plan(plan, &self.vf_vifs.keys().cloned().collect());
        let plan = &plan;
        // 1. Bind what can be bound before anything changes.
        let mut prebound: BTreeMap<VifId, Endpoint> = BTreeMap::new();
        for vif in &plan.add {
            let held = self
                .vifs
                .values()
                .any(|r| same_path(&r.config.socket, &vif.socket));
            if vif.mode == SocketMode::Server && !held {
                let endpoint = Daemon::endpoint(vif).map_err(ExecuteError::Refused)?;
                prebound.insert(vif.spec.id.clone(), endpoint);
            }
        }
        // 2. Labels and policies in place.
        if let Some(library) = &plan.policies {
            self.install_policies(library, plan.conntrack);
        }
        for change in &plan.relabel {
            if let Some(record) = self.vifs.get_mut(&change.config.spec.id) {
                record.config.spec.labels = change.config.spec.labels.clone();
                log::info!("vif {}: relabelled", change.config.spec.id);
            }
        }
        let mut failures = Vec::new();
        for change in &plan.repolicy {
            if let Err(e) = self.repolicy(&change.config) {
                log::error!("{e}");
                failures.push(e.to_string());
            }
        }
        // 3. Stop what goes away or restarts.
        for vif in plan
            .remove
            .iter()
            .chain(plan.restart.iter().map(|c| &c.config.spec.id))
        {
            self.remove_vif(vif.as_str());
        }
        // 4. Start what is new or restarted.
        let starting = plan
            .add
            .iter()
            .chain(plan.restart.iter().map(|c| &c.config));
        for vif in starting {
            let endpoint = match prebound.remove(&vif.spec.id) {
                Some(endpoint) => Ok(endpoint),
                None => Daemon::endpoint(vif),
            };
            let started = endpoint.and_then(|e| self.spawn_vif(vif, e, requested_at));
            match started {
                Ok(()) => log::info!("vif {}: created", vif.spec.id),
                Err(e) => {
                    log::error!("{e}");
                    failures.push(e.to_string());
                }
            }
        }
        failures.extend(self.execute_vf_plan(&vf_plan));
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ExecuteError::Partial {
                failures: failures.join("; "),
            })
        }
    }

    /// The running VIFs, by id.
    pub fn vifs(&self) -> &BTreeMap<VifId, VifRecord> {
        &self.vifs
    }

    /// The VIF configs, by id (SR-IOV VIFs included): the "current" side of a plan.
    pub fn vif_configs(&self) -> BTreeMap<VifId, VifConfig> {
        self.vifs
            .iter()
            .map(|(id, record)| (id.clone(), record.config.clone()))
            .chain(self.vf_vifs.clone())
            .collect()
    }

    pub fn segments(&self) -> &BTreeMap<String, Arc<Segment>> {
        &self.segments
    }

    /// The whole Prometheus exposition, read now. Expired conntrack entries are swept first,
    /// here, off the datapath, so the occupancy gauges count live flows.
    pub fn scrape(&self) -> String {
        let now = crate::policy::clock_ns(Instant::now());
        for record in self.vifs.values() {
            record.backend.policy().expire(now);
        }
        let vifs = self
            .vifs
            .values()
            .map(|record| VifView {
                id: record.config.spec.id.as_str(),
                tenant: record.tenant().unwrap_or(""),
                segment: record.backend.segment().name(),
                mac: record.config.spec.mac.to_string(),
                mode: match record.config.mode {
                    SocketMode::Server => "server",
                    SocketMode::Client => "client",
                },
                stats: record.backend.stats(),
                status: &record.status,
                // Present once the VIF has had an ACL or port security.
                firewall: record.backend.policy().firewall().cloned(),
            })
            .collect();
        let segments = self
            .segments
            .iter()
            .map(|(name, segment)| SegmentView {
                name,
                fdb_entries: segment.fdb_len(),
                vifs: self
                    .vifs
                    .values()
                    .filter(|r| r.backend.segment().name() == name.as_str())
                    .count(),
            })
            .collect();
        let mut text = render(&Scrape {
            vifs,
            segments,
            provisioning: &self.services.provisioning,
            flow_log: self.services.flow_log.as_ref().map(|log| log.stats()),
        });
        text.push_str(&self.uplink_exposition());
        text
    }
}
