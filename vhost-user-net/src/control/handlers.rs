//! One function per control operation, over the running daemon. Each returns the response line
//! to send; none panics on any request.

use std::path::{Path, PathBuf};
use std::time::Instant;

use vif_core::stats::{DropReason, QueueCounters, SizeBin};

use vif_core::acl::Direction;

use super::apply::{plan, plan_policies, PlanError, Scope};
use super::protocol::{
    AclDirection, DaemonStatus, DirectionCounters, ErrorCode, PolicyReport, QueuePairCounters,
    Request, Response, SegmentSummary, VfSummary, VifCounters, VifDetail, VifSummary,
};
use crate::config::{DaemonConfig, SocketMode, VifConfig};
use crate::daemon::policy::SetPolicyError;
use crate::daemon::runtime::{ExecuteError, VifRecord};
use crate::daemon::Daemon;

/// Runs `request` against `daemon`.
pub fn handle(daemon: &mut Daemon, request: Request) -> Response {
    let requested_at = Instant::now();
    match request {
        Request::Status {} => Response::success(&status(daemon)),
        Request::List {} => {
            let mut vifs: Vec<VifSummary> = daemon.vifs().values().map(summary).collect();
            vifs.extend(daemon.vf_vifs().values().map(|vif| vf_summary(daemon, vif)));
            vifs.sort_by(|a, b| a.id.cmp(&b.id));
            Response::success(&vifs)
        }
        Request::Show { vif } => match daemon.vifs().get(vif.as_str()) {
            Some(record) => Response::success(&detail(record)),
            None => match daemon.vf_vifs().get(vif.as_str()) {
                Some(config) => Response::success(&vf_detail(daemon, config)),
                None => not_found(&vif),
            },
        },
        Request::Stats { vif: Some(vif) } => match daemon.vifs().get(vif.as_str()) {
            Some(record) => Response::success(&[counters(record)]),
            None => not_found(&vif),
        },
        Request::Stats { vif: None } => {
            let all: Vec<VifCounters> = daemon.vifs().values().map(counters).collect();
            Response::success(&all)
        }
        Request::Segments {} => Response::success(&segments(daemon)),
        Request::Create { config, base } => change(
            daemon,
            &config,
            base.as_deref(),
            Scope::Create,
            false,
            requested_at,
        ),
        Request::Update { config, base } => change(
            daemon,
            &config,
            base.as_deref(),
            Scope::Update,
            false,
            requested_at,
        ),
        Request::Apply {
            config,
            base,
            dry_run,
        } => change(
            daemon,
            &config,
            base.as_deref(),
            Scope::Apply,
            dry_run,
            requested_at,
        ),
        Request::Remove { vif } => remove(daemon, &vif),
        Request::SetAcl {
            vif,
            direction,
            acl,
        } => set_acl(daemon, &vif, direction, acl.as_ref()),
        Request::SetQos { vif, qos } => set_qos(daemon, &vif, qos.as_ref()),
    }
}

/// Compiles the ACL and swaps it into the VIF's datapath (`Daemon::set_vif_acl`).
fn set_acl(
    daemon: &mut Daemon,
    vif: &str,
    direction: AclDirection,
    acl: Option<&vif_core::acl::AclSpec>,
) -> Response {
    let (direction, field) = match direction {
        AclDirection::Ingress => (Direction::Ingress, "acl.ingress"),
        AclDirection::Egress => (Direction::Egress, "acl.egress"),
    };
    match daemon.set_vif_acl(vif, direction, acl) {
        Ok(()) => Response::success(&PolicyReport {
            vif: vif.to_owned(),
            field: field.to_owned(),
            name: acl.map(|acl| acl.name.clone()),
            rules: acl.map(|acl| acl.rules.len()),
        }),
        Err(e) => policy_failure(e),
    }
}

/// Validates the rate limits and swaps them into the VIF's datapath (`Daemon::set_vif_qos`).
fn set_qos(daemon: &mut Daemon, vif: &str, qos: Option<&vif_core::qos::QosSpec>) -> Response {
    match daemon.set_vif_qos(vif, qos) {
        Ok(()) => Response::success(&PolicyReport {
            vif: vif.to_owned(),
            field: "qos".to_owned(),
            name: qos.map(|qos| qos.name.clone()),
            rules: None,
        }),
        Err(e) => policy_failure(e),
    }
}

fn policy_failure(error: SetPolicyError) -> Response {
    let code = match error {
        SetPolicyError::NotFound { .. } => ErrorCode::NotFound,
        SetPolicyError::Invalid { .. } | SetPolicyError::NameInUse { .. } => {
            ErrorCode::InvalidConfig
        }
    };
    Response::failure(code, format!("{error}; nothing changed"))
}

fn not_found(vif: &str) -> Response {
    Response::failure(ErrorCode::NotFound, format!("no vif {vif:?}"))
}

fn status(daemon: &Daemon) -> DaemonStatus {
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_seconds: daemon.started_at().elapsed().as_secs_f64(),
        vifs: daemon.vifs().len() + daemon.vf_vifs().len(),
        segments: daemon.segments().len(),
        control_socket: daemon
            .control_socket()
            .map(Path::to_owned)
            .unwrap_or_default(),
        metrics_listen: daemon.metrics_addr().map(|a| a.to_string()),
    }
}

fn summary(record: &VifRecord) -> VifSummary {
    let config = &record.config;
    VifSummary {
        id: config.spec.id.to_string(),
        state: record.status.state().as_str().to_owned(),
        socket: config.socket.clone(),
        mode: match config.mode {
            SocketMode::Server => "server",
            SocketMode::Client => "client",
        }
        .to_owned(),
        segment: record.segment_name(),
        mac: config.spec.mac.to_string(),
        mtu: config.spec.mtu,
        queue_pairs: config.spec.queue_pairs,
        tenant: record.tenant().map(str::to_owned),
        connections: record.status.connections(),
        vf: None,
    }
}

/// An SR-IOV VIF: no socket, no frontend; its VF and the VMM arguments instead.
fn vf_summary(daemon: &Daemon, config: &VifConfig) -> VifSummary {
    let id = config.spec.id.as_str();
    let vf = daemon.vf_assignment(id).map(|assignment| VfSummary {
        pf: assignment.pf.clone(),
        vf_index: assignment.vf,
        bdf: assignment.bdf.to_string(),
        host_driver: assignment.host_driver.clone(),
        adopted: assignment.adopted,
        qemu_args: assignment.qemu_args().unwrap_or_default(),
        cloud_hypervisor_args: assignment.cloud_hypervisor_args().unwrap_or_default(),
    });
    VifSummary {
        id: id.to_owned(),
        state: if vf.is_some() { "assigned" } else { "stopped" }.to_owned(),
        socket: PathBuf::new(),
        mode: "vfio".to_owned(),
        segment: String::new(),
        mac: config.spec.mac.to_string(),
        mtu: config.spec.mtu,
        queue_pairs: config.spec.queue_pairs,
        tenant: config.spec.labels.get("tenant").cloned(),
        connections: 0,
        vf,
    }
}

fn vf_detail(daemon: &Daemon, config: &VifConfig) -> VifDetail {
    VifDetail {
        summary: vf_summary(daemon, config),
        spec: serde_json::to_value(&config.spec).unwrap_or_default(),
        socket_ready_seconds: None,
        driver_ok_seconds: None,
    }
}

fn detail(record: &VifRecord) -> VifDetail {
    VifDetail {
        summary: summary(record),
        spec: serde_json::to_value(&record.config.spec).unwrap_or_default(),
        socket_ready_seconds: record.status.socket_ready_after().map(|d| d.as_secs_f64()),
        driver_ok_seconds: record.status.driver_ok_after().map(|d| d.as_secs_f64()),
    }
}

fn direction(counts: &QueueCounters) -> DirectionCounters {
    DirectionCounters {
        packets: counts.packets,
        bytes: counts.bytes,
        unicast_packets: counts.unicast_packets,
        multicast_packets: counts.multicast_packets,
        broadcast_packets: counts.broadcast_packets,
        size_bins: SizeBin::ALL
            .iter()
            .map(|bin| (bin.as_str().to_owned(), counts.size_bin(*bin)))
            .collect(),
        drops: DropReason::ALL
            .iter()
            .map(|reason| (reason.as_str().to_owned(), counts.drops(*reason)))
            .filter(|(_, n)| *n > 0)
            .collect(),
        notifications_sent: counts.notifications_sent,
        notifications_suppressed: counts.notifications_suppressed,
        throttled: counts.throttled,
    }
}

fn counters(record: &VifRecord) -> VifCounters {
    let snapshot = record.backend.stats().snapshot();
    VifCounters {
        id: record.config.spec.id.to_string(),
        rx: direction(&snapshot.rx),
        tx: direction(&snapshot.tx),
        queue_pairs: snapshot
            .queue_pairs
            .iter()
            .enumerate()
            .map(|(queue, pair)| QueuePairCounters {
                queue,
                rx: direction(&pair.rx),
                tx: direction(&pair.tx),
            })
            .collect(),
    }
}

fn segments(daemon: &Daemon) -> Vec<SegmentSummary> {
    daemon
        .segments()
        .iter()
        .map(|(name, segment)| SegmentSummary {
            name: name.clone(),
            vifs: daemon
                .vifs()
                .values()
                .filter(|r| r.segment_name() == *name)
                .map(|r| r.config.spec.id.to_string())
                .collect(),
            fdb_entries: segment.fdb_len(),
        })
        .collect()
}

/// `create`, `update` and `apply`: parse, plan, then (unless a dry run) execute.
fn change(
    daemon: &mut Daemon,
    text: &str,
    base: Option<&Path>,
    scope: Scope,
    dry_run: bool,
    requested_at: Instant,
) -> Response {
    let base = base.map_or_else(|| PathBuf::from("."), Path::to_owned);
    let source = match scope {
        Scope::Apply => "apply request",
        Scope::Create => "create request",
        Scope::Update => "update request",
    };
    // A desired state may be empty (apply removes everything); create and update name VIFs.
    let desired = match DaemonConfig::parse_vifs(text, source, &base, scope == Scope::Apply) {
        Ok(config) => config,
        Err(e) => return Response::failure(ErrorCode::InvalidConfig, e.to_string()),
    };
    let current = daemon.vif_configs();
    let mut planned = match plan(&current, &desired.vifs, scope, daemon.control_socket()) {
        Ok(planned) => planned,
        Err(e) => {
            let code = match e {
                PlanError::Exists { .. } => ErrorCode::Exists,
                PlanError::NotFound { .. } => ErrorCode::NotFound,
                PlanError::SocketTaken { .. } | PlanError::ControlSocket { .. } => {
                    ErrorCode::InvalidConfig
                }
            };
            return Response::failure(code, format!("{source}: {e}; nothing changed"));
        }
    };
    plan_policies(&mut planned, &current, daemon.policies(), &desired, scope);
    let report = planned.report(dry_run);
    if dry_run {
        return Response::success(&report);
    }
    match daemon.execute(&planned, requested_at) {
        Ok(()) => Response::success(&report),
        Err(e @ ExecuteError::Refused(_)) => {
            Response::failure(ErrorCode::InvalidConfig, format!("{source}: {e}"))
        }
        Err(e) => Response::failure(
            ErrorCode::Failed,
            format!("{source}: {e} (planned: {})", summary_line(&report)),
        ),
    }
}

fn summary_line(report: &super::protocol::ChangeReport) -> String {
    format!(
        "added [{}], removed [{}], changed [{}]",
        report.added.join(", "),
        report.removed.join(", "),
        report
            .changed
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn remove(daemon: &mut Daemon, vif: &str) -> Response {
    if daemon.remove_vif(vif) {
        Response::success(&super::protocol::ChangeReport {
            removed: vec![vif.to_owned()],
            ..Default::default()
        })
    } else {
        not_found(vif)
    }
}
