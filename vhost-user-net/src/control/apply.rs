//! Declarative changes: the difference between the VIFs the daemon runs and the VIFs a request
//! asks for, as a [`Plan`] the daemon then carries out (`daemon::runtime`).
//!
//! Planning is pure (no socket, no thread), so every rule is checked before anything changes:
//! a request that fails here changes nothing. Three scopes share it:
//! - [`Scope::Apply`]: the text is the complete desired state; running VIFs it does not name are
//!   removed (garbage collection of orphans, their sockets with them);
//! - [`Scope::Create`]: only new VIFs; naming a running one is an error;
//! - [`Scope::Update`]: only running VIFs; naming an unknown one is an error.
//!
//! A VIF whose only difference is its labels is relabelled in place (labels are metadata: the
//! metrics pick them up at the next scrape). A VIF whose only differences are policies — its
//! `acl`, `qos` or `port_security`, or the content of the `[[acl]]`/`[[qos]]` tables it names —
//! keeps running and has them swapped in ([`plan_policies`]). Any other difference restarts it:
//! the device a guest negotiated with (MAC, MTU, queues, offloads) cannot change under a running
//! driver, so the VIF is removed and created again and its frontend reconnects.
//!
//! `apply` replaces the daemon's policy tables (and `[conntrack]`, for VIFs created from then
//! on) with the text's; `create` and `update` add theirs to it, and running VIFs that name a
//! table they redefine get its new content too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use vif_core::model::VifId;

use vif_core::acl::ConntrackConfig;

use super::protocol::{ChangeReport, VifChange};
use crate::config::policy::PolicyLibrary;
use crate::config::{DaemonConfig, VifConfig};

/// What a request may do to the running VIFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Apply,
    Create,
    Update,
}

/// Why a request cannot be planned. Nothing has changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("vif {vif} exists; use update or apply to change it")]
    Exists { vif: VifId },
    #[error("vif {vif} does not exist; use create or apply to add it")]
    NotFound { vif: VifId },
    #[error("vif {vif}: socket {socket:?} is the socket of running vif {other}")]
    SocketTaken {
        vif: VifId,
        socket: PathBuf,
        other: VifId,
    },
    #[error("vif {vif}: socket {socket:?} is the daemon's control socket")]
    ControlSocket { vif: VifId, socket: PathBuf },
}

/// A VIF that stays but changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub config: VifConfig,
    pub fields: Vec<String>,
}

/// What to do, in the order the daemon does it: relabel, remove (orphans and restarts), then
/// add (new VIFs and restarts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub add: Vec<VifConfig>,
    pub remove: Vec<VifId>,
    pub restart: Vec<Change>,
    pub relabel: Vec<Change>,
    /// Policies swapped in place (labels with them).
    pub repolicy: Vec<Change>,
    pub unchanged: Vec<VifId>,
    /// The policy library to install before anything starts or changes.
    pub policies: Option<PolicyLibrary>,
    /// The `[conntrack]` settings of VIFs created from now on (`apply` only).
    pub conntrack: Option<ConntrackConfig>,
}

impl Plan {
    /// The report of this plan.
    pub fn report(&self, dry_run: bool) -> ChangeReport {
        let change = |c: &Change, action: &str| VifChange {
            id: c.config.spec.id.to_string(),
            fields: c.fields.clone(),
            action: action.to_owned(),
        };
        let mut changed: Vec<VifChange> = self
            .restart
            .iter()
            .map(|c| change(c, "restarted"))
            .chain(self.relabel.iter().map(|c| change(c, "relabelled")))
            .chain(self.repolicy.iter().map(|c| change(c, "policy updated")))
            .collect();
        changed.sort_by(|a, b| a.id.cmp(&b.id));
        ChangeReport {
            dry_run,
            added: self.add.iter().map(|v| v.spec.id.to_string()).collect(),
            removed: self.remove.iter().map(ToString::to_string).collect(),
            changed,
            unchanged: self.unchanged.iter().map(ToString::to_string).collect(),
        }
    }
}

/// Plans `desired` against `current` within `scope`. `desired` has passed the config file's
/// checks (valid specs, unique ids and sockets among themselves).
pub fn plan(
    current: &BTreeMap<VifId, VifConfig>,
    desired: &[VifConfig],
    scope: Scope,
    control_socket: Option<&Path>,
) -> Result<Plan, PlanError> {
    let mut plan = Plan::default();
    for vif in desired {
        let id = &vif.spec.id;
        if control_socket.is_some_and(|control| same_path(control, &vif.socket)) {
            return Err(PlanError::ControlSocket {
                vif: id.clone(),
                socket: vif.socket.clone(),
            });
        }
        match (current.get(id), scope) {
            (Some(_), Scope::Create) => return Err(PlanError::Exists { vif: id.clone() }),
            (None, Scope::Update) => return Err(PlanError::NotFound { vif: id.clone() }),
            (None, _) => plan.add.push(vif.clone()),
            (Some(running), _) => {
                let fields = changed_fields(running, vif);
                if fields.is_empty() {
                    plan.unchanged.push(id.clone());
                } else if fields == ["labels"] {
                    plan.relabel.push(Change {
                        config: vif.clone(),
                        fields,
                    });
                } else {
                    plan.restart.push(Change {
                        config: vif.clone(),
                        fields,
                    });
                }
            }
        }
    }
    let named: BTreeSet<&VifId> = desired.iter().map(|v| &v.spec.id).collect();
    if scope == Scope::Apply {
        plan.remove = current
            .keys()
            .filter(|id| !named.contains(id))
            .cloned()
            .collect();
    }
    // A socket may only move to a new VIF if its current holder goes away in this plan.
    let leaving: BTreeSet<&VifId> = plan
        .remove
        .iter()
        .chain(plan.restart.iter().map(|c| &c.config.spec.id))
        .collect();
    let claims = plan
        .add
        .iter()
        .chain(plan.restart.iter().map(|c| &c.config));
    for vif in claims {
        let holder = current.values().find(|running| {
            same_path(&running.socket, &vif.socket) && running.spec.id != vif.spec.id
        });
        if let Some(holder) = holder {
            let holder_stays = !leaving.contains(&holder.spec.id);
            if holder_stays {
                return Err(PlanError::SocketTaken {
                    vif: vif.spec.id.clone(),
                    socket: vif.socket.clone(),
                    other: holder.spec.id.clone(),
                });
            }
        }
    }
    Ok(plan)
}

/// The spec keys whose change a running VIF takes in place: its policies (and labels).
const IN_PLACE: [&str; 4] = ["acl", "qos", "port_security", "labels"];

/// Completes `plan` (from [`plan`], same scope) with policies: restarts whose only differences
/// are policies and labels become in-place policy changes, and VIFs that stay whose named
/// tables change content (in `desired`'s tables, installed over `library` for create and
/// update) get them too. `current` are the running VIFs, `library` the daemon's tables.
pub fn plan_policies(
    plan: &mut Plan,
    current: &BTreeMap<VifId, VifConfig>,
    library: &PolicyLibrary,
    desired: &DaemonConfig,
    scope: Scope,
) {
    let next = if scope == Scope::Apply {
        desired.policy.clone()
    } else {
        let mut merged = library.clone();
        merged.merge(&desired.policy);
        merged
    };
    let (in_place, restart): (Vec<Change>, Vec<Change>) = std::mem::take(&mut plan.restart)
        .into_iter()
        .partition(|c| c.fields.iter().all(|f| IN_PLACE.contains(&f.as_str())));
    plan.restart = restart;
    plan.repolicy = in_place;
    // What the request did not otherwise change, with the spec it will have.
    let named: BTreeMap<&VifId, &VifConfig> =
        desired.vifs.iter().map(|v| (&v.spec.id, v)).collect();
    let relabelled: BTreeSet<VifId> = plan
        .relabel
        .iter()
        .map(|c| c.config.spec.id.clone())
        .collect();
    let staying = current.iter().filter(|(id, _)| {
        let unchanged = plan.unchanged.contains(id) || relabelled.contains(*id);
        unchanged || (scope != Scope::Apply && !named.contains_key(id))
    });
    let mut moved = Vec::new();
    for (id, running) in staying {
        let config = named.get(id).map_or(running, |desired| desired);
        let fields = content_changes(library, &next, &running.spec, &config.spec);
        if fields.is_empty() {
            continue;
        }
        let mut fields = fields;
        if relabelled.contains(id) {
            fields.push("labels".to_owned());
        }
        moved.push(id.clone());
        plan.repolicy.push(Change {
            config: (*config).clone(),
            fields,
        });
    }
    plan.unchanged.retain(|id| !moved.contains(id));
    plan.relabel.retain(|c| !moved.contains(&c.config.spec.id));
    plan.policies = Some(next);
    plan.conntrack = (scope == Scope::Apply).then_some(desired.conntrack);
}

/// The policy keys whose resolved content differs between `old` (in `before`) and `new` (in
/// `after`); a reference that does not resolve counts as a difference.
fn content_changes(
    before: &PolicyLibrary,
    after: &PolicyLibrary,
    old: &vif_core::model::VifSpec,
    new: &vif_core::model::VifSpec,
) -> Vec<String> {
    let (Ok(was), Ok(will)) = (before.resolve(old), after.resolve(new)) else {
        return vec!["acl".to_owned(), "qos".to_owned()];
    };
    let mut fields = Vec::new();
    if was.ingress != will.ingress || was.egress != will.egress {
        fields.push("acl".to_owned());
    }
    if was.qos != will.qos {
        fields.push("qos".to_owned());
    }
    if was.port_security != will.port_security {
        fields.push("port_security".to_owned());
    }
    fields
}

/// Whether two socket paths name the same file as the daemon sees them: a relative path is
/// relative to the daemon's working directory (a config file given as `vif.toml` yields
/// `web-1.sock`, a request from `vifctl` the absolute path). Lexical, no file system access:
/// the files may not exist yet.
pub fn same_path(a: &Path, b: &Path) -> bool {
    a == b
        || match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

/// The top-level keys of two VIF configs that differ: the spec's keys as the config file
/// writes them, plus `socket` and `mode`.
pub fn changed_fields(old: &VifConfig, new: &VifConfig) -> Vec<String> {
    let mut fields = Vec::new();
    let as_map = |config: &VifConfig| match serde_json::to_value(&config.spec) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old_map, new_map) = (as_map(old), as_map(new));
    let keys: BTreeSet<&String> = old_map.keys().chain(new_map.keys()).collect();
    for key in keys {
        if old_map.get(key) != new_map.get(key) {
            fields.push(key.clone());
        }
    }
    if old.spec != new.spec && fields.is_empty() {
        // Serialization lost a difference: still a change.
        fields.push("spec".to_owned());
    }
    if !same_path(&old.socket, &new.socket) {
        fields.push("socket".to_owned());
    }
    if old.mode != new.mode {
        fields.push("mode".to_owned());
    }
    fields
}

#[cfg(test)]
mod tests {
    use vif_core::mac::MacAddr;
    use vif_core::model::{LocalUplink, UplinkSpec, VifSpec};

    use super::*;
    use crate::config::SocketMode;

    fn vif(id: &str, last: u8) -> VifConfig {
        let spec = VifSpec::new(
            VifId::new(id).unwrap(),
            MacAddr([0x52, 0x54, 0, 0, 0, last]),
            UplinkSpec::Local(LocalUplink {
                segment: "lab".into(),
            }),
        );
        VifConfig {
            spec,
            socket: PathBuf::from(format!("/run/vif/{id}.sock")),
            mode: SocketMode::Server,
        }
    }

    fn running(vifs: &[VifConfig]) -> BTreeMap<VifId, VifConfig> {
        vifs.iter()
            .map(|v| (v.spec.id.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn apply_adds_changes_relabels_and_removes() {
        let current = running(&[vif("a", 1), vif("b", 2), vif("c", 3), vif("d", 4)]);
        let mut b = vif("b", 2);
        b.spec.mtu = 9000;
        let mut c = vif("c", 3);
        c.spec.labels.insert("tenant".into(), "acme".into());
        let desired = [vif("a", 1), b, c, vif("e", 5)];
        let plan = plan(&current, &desired, Scope::Apply, None).unwrap();
        let report = plan.report(false);
        assert_eq!(report.added, ["e"]);
        assert_eq!(report.removed, ["d"]);
        assert_eq!(report.unchanged, ["a"]);
        assert_eq!(report.changed.len(), 2);
        assert_eq!(
            (
                report.changed[0].id.as_str(),
                report.changed[0].fields.as_slice()
            ),
            ("b", ["mtu".to_owned()].as_slice())
        );
        assert_eq!(report.changed[0].action, "restarted");
        assert_eq!(report.changed[1].action, "relabelled");
    }

    #[test]
    fn create_and_update_scopes() {
        let current = running(&[vif("a", 1)]);
        assert_eq!(
            plan(&current, &[vif("a", 1)], Scope::Create, None),
            Err(PlanError::Exists {
                vif: VifId::new("a").unwrap()
            })
        );
        assert!(matches!(
            plan(&current, &[vif("b", 2)], Scope::Update, None),
            Err(PlanError::NotFound { .. })
        ));
        // Create and update never remove what they do not name.
        let created = plan(&current, &[vif("b", 2)], Scope::Create, None).unwrap();
        assert!(created.remove.is_empty());
        assert_eq!(created.add.len(), 1);
    }

    #[test]
    fn sockets_move_only_from_leaving_vifs() {
        let current = running(&[vif("a", 1)]);
        let mut b = vif("b", 2);
        b.socket = PathBuf::from("/run/vif/a.sock");
        // Create keeps a: b cannot take its socket.
        assert!(matches!(
            plan(&current, &[b.clone()], Scope::Create, None),
            Err(PlanError::SocketTaken { .. })
        ));
        // Apply without a renames a to b: the socket moves.
        let renamed = plan(&current, &[b.clone()], Scope::Apply, None).unwrap();
        assert_eq!(renamed.remove.len(), 1);
        assert_eq!(renamed.add.len(), 1);
        assert!(matches!(
            plan(
                &current,
                &[b],
                Scope::Apply,
                Some(Path::new("/run/vif/a.sock"))
            ),
            Err(PlanError::ControlSocket { .. })
        ));
    }

    #[test]
    fn relative_and_absolute_sockets_compare_equal() {
        let mut a = vif("a", 1);
        a.socket = PathBuf::from("a.sock");
        let mut b = a.clone();
        b.socket = std::env::current_dir().unwrap().join("a.sock");
        assert!(changed_fields(&a, &b).is_empty());
        assert!(same_path(
            Path::new("x/../a.sock"),
            Path::new("x/../a.sock")
        ));
    }

    fn library(acl_port: u16, qos_size: u64) -> PolicyLibrary {
        let acl: vif_core::acl::AclSpec = toml::from_str(&format!(
            "name = \"web\"\nrules = [{{ action = \"deny\", protocol = \"tcp\", dst_ports = \"{acl_port}\" }}]"
        ))
        .unwrap();
        let qos: vif_core::qos::QosSpec = toml::from_str(&format!(
            "name = \"gold\"\ntx = {{ ops = {{ size = {qos_size}, refill_time_ms = 10 }} }}"
        ))
        .unwrap();
        PolicyLibrary::new(vec![acl], vec![qos]).unwrap()
    }

    /// A desired state: an empty text's defaults, with `vifs` and `policy`.
    fn desired(vifs: &[VifConfig], policy: PolicyLibrary) -> DaemonConfig {
        let mut config = DaemonConfig::parse_vifs("", "test", Path::new("/"), true).unwrap();
        config.vifs = vifs.to_vec();
        config.policy = policy;
        config
    }

    #[test]
    fn policy_only_changes_are_made_in_place() {
        let mut a = vif("a", 1);
        a.spec.acl.egress = Some("web".into());
        let b = vif("b", 2);
        let c = vif("c", 3);
        let current = running(&[a.clone(), b.clone(), c.clone()]);
        let before = library(80, 8);

        // b takes a QoS policy (a spec change, but only a policy one); the ACL a names changes
        // content; c changes its MTU (a restart) and nothing else.
        let mut b2 = b.clone();
        b2.spec.qos = Some("gold".into());
        b2.spec.labels.insert("tenant".into(), "acme".into());
        let mut c2 = c.clone();
        c2.spec.mtu = 9000;
        c2.spec.qos = Some("gold".into());
        let after = library(22, 8);
        let want = desired(&[a.clone(), b2.clone(), c2.clone()], after.clone());
        let mut planned = plan(&current, &want.vifs, Scope::Apply, None).unwrap();
        plan_policies(&mut planned, &current, &before, &want, Scope::Apply);

        let fields = |id: &str| {
            planned
                .repolicy
                .iter()
                .find(|c| c.config.spec.id.as_str() == id)
                .map(|c| c.fields.clone())
        };
        assert_eq!(fields("a"), Some(vec!["acl".to_owned()]));
        assert_eq!(
            fields("b"),
            Some(vec!["labels".to_owned(), "qos".to_owned()])
        );
        assert_eq!(fields("c"), None);
        assert_eq!(planned.restart.len(), 1, "c restarts for its MTU");
        assert!(planned.unchanged.is_empty());
        assert_eq!(planned.policies.as_ref(), Some(&after));
        assert_eq!(planned.conntrack, Some(ConntrackConfig::default()));
        let report = planned.report(false);
        assert!(report
            .changed
            .iter()
            .any(|c| c.id == "a" && c.action == "policy updated"));
    }

    #[test]
    fn an_update_redefining_a_table_reaches_every_vif_that_names_it() {
        let mut a = vif("a", 1);
        a.spec.qos = Some("gold".into());
        let mut b = vif("b", 2);
        b.spec.qos = Some("gold".into());
        let current = running(&[a.clone(), b.clone()]);
        // The update names only b, but redefines gold, which a uses too.
        let want = desired(&[b.clone()], library(80, 16));
        let mut planned = plan(&current, &want.vifs, Scope::Update, None).unwrap();
        plan_policies(
            &mut planned,
            &current,
            &library(80, 8),
            &want,
            Scope::Update,
        );
        let mut ids: Vec<&str> = planned
            .repolicy
            .iter()
            .map(|c| c.config.spec.id.as_str())
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, ["a", "b"]);
        assert!(planned.remove.is_empty());
        assert_eq!(planned.conntrack, None, "update keeps [conntrack]");
    }

    #[test]
    fn changed_fields_names_socket_and_mode() {
        let a = vif("a", 1);
        let mut b = a.clone();
        assert!(changed_fields(&a, &b).is_empty());
        b.mode = SocketMode::Client;
        b.socket = PathBuf::from("/x.sock");
        b.spec.queue_pairs = 2;
        assert_eq!(changed_fields(&a, &b), ["queue_pairs", "socket", "mode"]);
    }
}
