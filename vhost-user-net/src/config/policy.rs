//! The policy tables of the daemon's file and how VIFs' references to them resolve.
//!
//! ```toml
//! [[acl]]                          # a vif_core::acl::AclSpec
//! name = "web-in"
//! stateful = true
//! default_action = { ingress = "deny", egress = "allow" }
//! rules = [{ action = "allow", protocol = "tcp", dst_ports = "80" }]
//!
//! [[qos]]                          # a vif_core::qos::QosSpec
//! name = "gold"
//! tx = { bandwidth = { size = 12_500_000, refill_time_ms = 100 } }   # 1 Gbit/s
//! rx = { ops = { size = 10_000, refill_time_ms = 100 } }             # 100 kpps
//!
//! [conntrack]                      # vif_core::acl::ConntrackConfig, per VIF; optional
//! capacity = 32768
//!
//! [[vif]]
//! acl = { ingress = "web-in" }
//! qos = "gold"
//! ```
//!
//! Names are unique per kind; every `[[acl]]` and `[[qos]]` is validated whether or not a VIF
//! uses it, and a VIF naming one that is not defined is refused with the VIF and the field.
//! An ACL table's `default_action` holds both directions; a VIF uses the one of the direction
//! it attaches the ACL to.

use std::collections::BTreeMap;

use vif_core::acl::conntrack::{MAX_CAPACITY, MIN_CAPACITY};
use vif_core::acl::{AclError, AclSpec, ConntrackConfig};
use vif_core::model::{VifId, VifSpec};
use vif_core::qos::{QosError, QosSpec};

use crate::policy::ResolvedPolicy;

/// Why the policy tables, or a VIF's references to them, are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyConfigError {
    #[error("{kind} {name:?} is defined twice ({kind}[{first}] and {kind}[{second}])")]
    DuplicateName {
        kind: &'static str,
        name: String,
        first: usize,
        second: usize,
    },
    #[error("acl[{index}]: {source}")]
    Acl {
        index: usize,
        #[source]
        source: AclError,
    },
    #[error("qos[{index}]: {source}")]
    Qos {
        index: usize,
        #[source]
        source: QosError,
    },
    #[error("vif {vif}: {field} names {kind} {name:?}, which no [[{kind}]] table defines")]
    UnknownReference {
        vif: VifId,
        field: &'static str,
        kind: &'static str,
        name: String,
    },
    #[error("conntrack.capacity is {capacity}, must be in {min}..={max}")]
    ConntrackCapacity {
        capacity: usize,
        min: usize,
        max: usize,
    },
}

/// The `[[acl]]` and `[[qos]]` tables, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyLibrary {
    pub acls: BTreeMap<String, AclSpec>,
    pub qos: BTreeMap<String, QosSpec>,
}

impl PolicyLibrary {
    /// Validates every table and indexes them by name.
    pub fn new(acls: Vec<AclSpec>, qos: Vec<QosSpec>) -> Result<PolicyLibrary, PolicyConfigError> {
        let mut library = PolicyLibrary::default();
        let mut first: BTreeMap<String, usize> = BTreeMap::new();
        for (index, acl) in acls.into_iter().enumerate() {
            acl.validate()
                .map_err(|source| PolicyConfigError::Acl { index, source })?;
            unique("acl", &acl.name, index, &mut first)?;
            library.acls.insert(acl.name.clone(), acl);
        }
        first.clear();
        for (index, policy) in qos.into_iter().enumerate() {
            policy
                .validate()
                .map_err(|source| PolicyConfigError::Qos { index, source })?;
            unique("qos", &policy.name, index, &mut first)?;
            library.qos.insert(policy.name.clone(), policy);
        }
        Ok(library)
    }

    /// The policies `spec` names, looked up.
    pub fn resolve(&self, spec: &VifSpec) -> Result<ResolvedPolicy, PolicyConfigError> {
        let unknown = |field: &'static str, kind: &'static str, name: &str| {
            PolicyConfigError::UnknownReference {
                vif: spec.id.clone(),
                field,
                kind,
                name: name.to_owned(),
            }
        };
        let acl = |field: &'static str, name: &Option<String>| {
            name.as_deref()
                .map(|name| {
                    self.acls
                        .get(name)
                        .cloned()
                        .ok_or_else(|| unknown(field, "acl", name))
                })
                .transpose()
        };
        let qos = spec
            .qos
            .as_deref()
            .map(|name| {
                self.qos
                    .get(name)
                    .cloned()
                    .ok_or_else(|| unknown("qos", "qos", name))
            })
            .transpose()?;
        Ok(ResolvedPolicy {
            ingress: acl("acl.ingress", &spec.acl.ingress)?,
            egress: acl("acl.egress", &spec.acl.egress)?,
            qos,
            port_security: spec.port_security.as_ref().and_then(|config| config.spec()),
        })
    }

    /// Adds (or replaces) the tables of `other`: a create or update request brings its own.
    pub fn merge(&mut self, other: &PolicyLibrary) {
        for (name, acl) in &other.acls {
            self.acls.insert(name.clone(), acl.clone());
        }
        for (name, qos) in &other.qos {
            self.qos.insert(name.clone(), qos.clone());
        }
    }
}

fn unique(
    kind: &'static str,
    name: &str,
    index: usize,
    first: &mut BTreeMap<String, usize>,
) -> Result<(), PolicyConfigError> {
    if let Some(&earlier) = first.get(name) {
        return Err(PolicyConfigError::DuplicateName {
            kind,
            name: name.to_owned(),
            first: earlier,
            second: index,
        });
    }
    first.insert(name.to_owned(), index);
    Ok(())
}

/// Checks the `[conntrack]` table without allocating a table.
pub fn check_conntrack(config: &ConntrackConfig) -> Result<(), PolicyConfigError> {
    if !(MIN_CAPACITY..=MAX_CAPACITY).contains(&config.capacity) {
        return Err(PolicyConfigError::ConntrackCapacity {
            capacity: config.capacity,
            min: MIN_CAPACITY,
            max: MAX_CAPACITY,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vif_core::mac::MacAddr;
    use vif_core::model::{LocalUplink, UplinkSpec};

    fn acl(name: &str) -> AclSpec {
        AclSpec::new(name, vec![])
    }

    fn qos(name: &str) -> QosSpec {
        toml::from_str(&format!(
            "name = \"{name}\"\ntx = {{ ops = {{ size = 10, refill_time_ms = 100 }} }}"
        ))
        .unwrap()
    }

    fn vif() -> VifSpec {
        VifSpec::new(
            VifId::new("web-1").unwrap(),
            MacAddr([0x52, 0x54, 0, 0, 0, 1]),
            UplinkSpec::Local(LocalUplink {
                segment: "lab".into(),
            }),
        )
    }

    #[test]
    fn references_resolve_by_name() {
        let library = PolicyLibrary::new(vec![acl("in"), acl("out")], vec![qos("gold")]).unwrap();
        let mut spec = vif();
        spec.acl.ingress = Some("in".into());
        spec.qos = Some("gold".into());
        let resolved = library.resolve(&spec).unwrap();
        assert_eq!(resolved.ingress.unwrap().name, "in");
        assert_eq!(resolved.egress, None);
        assert_eq!(resolved.qos.unwrap().name, "gold");
        assert_eq!(resolved.port_security, None);
    }

    #[test]
    fn unknown_reference_names_vif_and_field() {
        let library = PolicyLibrary::new(vec![acl("in")], vec![]).unwrap();
        let mut spec = vif();
        spec.acl.egress = Some("out".into());
        let err = library.resolve(&spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "vif web-1: acl.egress names acl \"out\", which no [[acl]] table defines"
        );
        spec.acl.egress = None;
        spec.qos = Some("silver".into());
        assert!(matches!(
            library.resolve(&spec),
            Err(PolicyConfigError::UnknownReference { field: "qos", .. })
        ));
    }

    #[test]
    fn duplicates_and_invalid_tables_are_refused() {
        let err = PolicyLibrary::new(vec![acl("a"), acl("b"), acl("a")], vec![]).unwrap_err();
        assert_eq!(
            err,
            PolicyConfigError::DuplicateName {
                kind: "acl",
                name: "a".into(),
                first: 0,
                second: 2
            }
        );
        let err = PolicyLibrary::new(vec![acl("bad name")], vec![]).unwrap_err();
        assert!(err.to_string().starts_with("acl[0]: acl name \"bad name\""));
        let mut zero = qos("gold");
        zero.tx.ops = Some(vif_core::qos::BucketSpec {
            size: 0,
            one_time_burst: 0,
            refill_time_ms: 100,
        });
        assert!(matches!(
            PolicyLibrary::new(vec![], vec![zero]),
            Err(PolicyConfigError::Qos { index: 0, .. })
        ));
    }

    fn parse(text: &str) -> Result<crate::config::DaemonConfig, crate::config::ConfigError> {
        crate::config::DaemonConfig::parse(text, "test.toml", std::path::Path::new("/etc/vif"))
    }

    const VIF: &str = "[[vif]]\nid = \"web-1\"\nmac = \"52:54:00:00:00:01\"\n\
                       uplink = { type = \"local\", segment = \"lab\" }\n";

    #[test]
    fn file_tables_resolve_and_bad_references_name_the_file() {
        let text = format!(
            "{VIF}acl = {{ egress = \"out\" }}\nqos = \"gold\"\n\n\
             [[acl]]\nname = \"out\"\nrules = [{{ action = \"deny\", protocol = \"tcp\", dst_ports = \"80\" }}]\n\n\
             [[qos]]\nname = \"gold\"\nrx = {{ ops = {{ size = 5, refill_time_ms = 10 }} }}\n\n\
             [conntrack]\ncapacity = 1024\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.conntrack.capacity, 1024);
        let resolved = config.policy.resolve(&config.vifs[0].spec).unwrap();
        assert_eq!(resolved.egress.unwrap().rules.len(), 1);
        assert!(resolved.qos.unwrap().rx.ops.is_some());

        let err = parse(&text.replace("name = \"gold\"", "name = \"silver\"")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config test.toml: vif web-1: qos names qos \"gold\", which no [[qos]] table defines"
        );
        // A misspelt rule key is a syntax error with its position.
        let err = parse(&text.replace("dst_ports", "dst_port")).unwrap_err();
        assert!(err.to_string().contains("dst_port"), "{err}");
        let err = parse(&text.replace("capacity = 1024", "capacity = 0")).unwrap_err();
        assert!(err.to_string().contains("conntrack.capacity is 0"), "{err}");
    }

    #[test]
    fn example_file_policies_resolve() {
        let text = include_str!("../../../examples/vif.toml");
        let config = parse(text).unwrap();
        let web = &config.vifs[0].spec;
        let resolved = config.policy.resolve(web).unwrap();
        assert_eq!(
            resolved.ingress.as_ref().map(|a| a.name.as_str()),
            Some("web-in")
        );
        assert_eq!(
            resolved.egress.as_ref().map(|a| a.name.as_str()),
            Some("web-out")
        );
        assert_eq!(resolved.qos.as_ref().map(|q| q.name.as_str()), Some("gold"));
        let security = resolved.port_security.unwrap();
        assert_eq!(security.allowed_ips.len(), 2);
        // Every table compiles with the real engine.
        for acl in config.policy.acls.values() {
            vif_core::acl::CompiledAcl::compile(acl).unwrap();
        }
    }

    #[test]
    fn conntrack_capacity_is_bounded() {
        assert_eq!(check_conntrack(&ConntrackConfig::default()), Ok(()));
        let zero = ConntrackConfig {
            capacity: 0,
            ..ConntrackConfig::default()
        };
        assert_eq!(
            check_conntrack(&zero).unwrap_err().to_string(),
            "conntrack.capacity is 0, must be in 1..=16777216"
        );
    }
}
