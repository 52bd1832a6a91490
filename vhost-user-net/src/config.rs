//! The daemon's config file (TOML) and quick command-line flags, turned into `vif-core` model
//! specs plus what only the daemon cares about: each VIF's socket path and which side listens.
//!
//! ```toml
//! [[vif]]
//! id = "web-1"
//! mac = "52:54:00:12:34:56"
//! socket = "/run/vif/web-1.sock"   # default: <runtime dir>/vif/<id>.sock
//! mode = "server"                  # "server" (daemon listens, default) or "client"
//! uplink = { type = "local", segment = "lab" }
//! ```
//!
//! Every other key of a `[[vif]]` table is a [`VifSpec`] field (see `vif_core::model`). Besides
//! `[[vif]]`, a file may hold a `[metrics]` table ([`MetricsConfig`]), a `[control]` table
//! ([`ControlConfig`]) and a `[flow_log]` table ([`FlowLogConfig`]), and the policy tables VIFs
//! refer to by name: `[[acl]]`, `[[qos]]` and `[conntrack]` ([`policy`]). The file
//! is refused as a whole, before any socket is touched, if any part is wrong: syntax and type
//! errors carry the line and column, validation errors name the VIF, the field and the bound,
//! and every message starts with the file path. VIF ids and socket paths must be unique.
//!
//! The `[[vif]]` tables are split here rather than with `#[serde(flatten)]` because `VifSpec`
//! refuses unknown fields (a misspelt key must be an error), and serde's `flatten` cannot be
//! combined with that; splitting the parsed table keeps the source spans for error messages.

pub mod policy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;
use vif_core::acl::{AclSpec, ConntrackConfig};
use vif_core::mac::MacAddr;
use vif_core::model::{LocalUplink, ModelError, UplinkSpec, VifId, VifSpec};
use vif_core::qos::QosSpec;

use self::policy::{PolicyConfigError, PolicyLibrary};
use crate::control::ControlConfig;
use crate::flowlog::FlowLogConfig;
use crate::metrics::MetricsConfig;

/// The default VIF id when the daemon runs without a config file.
pub const DEFAULT_VIF_ID: &str = "vif0";
/// The default MAC: QEMU's locally administered prefix 52:54:00 (U/L bit set, IEEE 802-2014
/// § 8.2), then 0x76 0x69 ("vi") and 0x00 for `vif0`. Change it when running two daemons'
/// defaults on one segment.
pub const DEFAULT_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x76, 0x69, 0x00]);
/// The local segment VIFs join when nothing else is said.
pub const DEFAULT_SEGMENT: &str = "default";
/// Environment variable overriding the directory of default socket paths (tests use it).
pub const RUNTIME_DIR_ENV: &str = "VIF_RUNTIME_DIR";
/// Longest socket path: `sockaddr_un.sun_path` is 108 bytes including the NUL (unix(7)).
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// Which side of a VIF's vhost-user socket the daemon is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketMode {
    /// The daemon listens; after the VMM disconnects it listens again.
    #[default]
    Server,
    /// The VMM listens; the daemon connects, retrying with backoff, and reconnects after a
    /// disconnect.
    Client,
}

/// One VIF to serve: the model spec plus its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifConfig {
    pub spec: VifSpec,
    pub socket: PathBuf,
    pub mode: SocketMode,
}

/// Everything the daemon serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Where the config came from, for messages: a file path or "command line".
    pub source: String,
    pub vifs: Vec<VifConfig>,
    /// The `[metrics]` table; defaults when absent.
    pub metrics: MetricsConfig,
    /// The `[control]` table; defaults when absent.
    pub control: ControlConfig,
    /// The `[flow_log]` table; off when absent.
    pub flow_log: FlowLogConfig,
    /// The `[[acl]]` and `[[qos]]` tables.
    pub policy: PolicyLibrary,
    /// The `[conntrack]` table: each VIF's flow table, once it has a policy.
    pub conntrack: ConntrackConfig,
}

/// Why a config is refused. Every message starts with where the config came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config {path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type, a missing or unknown key; the message shows line and column.
    #[error("config {path}: {location}: {source}")]
    Syntax {
        path: String,
        /// `"file"` or `"vif[<index>] (<id>)"`.
        location: String,
        #[source]
        source: Box<toml::de::Error>,
    },
    #[error("config {path}: `vif` must be an array of tables ([[vif]]), not {found}")]
    VifNotArray { path: String, found: &'static str },
    #[error("config {path}: vif[{index}] must be a table, not {found}")]
    VifNotTable {
        path: String,
        index: usize,
        found: &'static str,
    },
    #[error("config {path}: no [[vif]] table; a daemon without VIFs serves nothing")]
    NoVifs { path: String },
    #[error("config {path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: Box<ModelError>,
    },
    #[error("config {path}: vif id {vif} appears twice (vif[{first}] and vif[{second}])")]
    DuplicateId {
        path: String,
        vif: VifId,
        first: usize,
        second: usize,
    },
    #[error("config {path}: vif {vif}: socket {socket:?} is also the socket of vif {other}")]
    DuplicateSocket {
        path: String,
        vif: VifId,
        other: VifId,
        socket: PathBuf,
    },
    #[error(
        "config {path}: vif {vif}: socket {socket:?} is {len} bytes long, more than {max} \
         (sockaddr_un.sun_path, unix(7))"
    )]
    SocketPathTooLong {
        path: String,
        vif: VifId,
        socket: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("config {path}: {source}")]
    Policy {
        path: String,
        #[source]
        source: PolicyConfigError,
    },
    #[error("config {path}: vif {vif}: socket path is empty")]
    SocketPathEmpty { path: String, vif: VifId },
    #[error("config {path}: vif {vif}: socket {socket:?} is the daemon's control socket; give the VIF another socket")]
    SocketIsControl {
        path: String,
        vif: VifId,
        socket: PathBuf,
    },
}

/// The directory default socket paths live in: `$VIF_RUNTIME_DIR`, else
/// `$XDG_RUNTIME_DIR/vif`, else `/tmp/vif`.
pub fn default_socket_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(RUNTIME_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("vif"),
        None => PathBuf::from("/tmp/vif"),
    }
}

/// The default socket of a VIF: `<default_socket_dir()>/<id>.sock`. VIF ids are safe path
/// components (`vif_core::model::names`), so this cannot escape the directory.
pub fn default_socket_path(id: &VifId) -> PathBuf {
    default_socket_dir().join(format!("{id}.sock"))
}

/// One VIF from command-line flags; unset fields take the defaults of a no-argument start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuickVif {
    pub id: Option<String>,
    pub socket: Option<PathBuf>,
    pub mac: Option<MacAddr>,
    pub mtu: Option<u16>,
    pub queue_pairs: Option<u16>,
    pub queue_size: Option<u16>,
    pub client: bool,
    pub segment: Option<String>,
}

impl DaemonConfig {
    /// Reads and checks a config file.
    pub fn from_file(path: &Path) -> Result<DaemonConfig, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        // Relative socket paths are relative to the file, not to wherever the daemon starts.
        let base = path.parent().unwrap_or(Path::new("."));
        DaemonConfig::parse(&text, &shown, base)
    }

    /// Parses config text; `source` names it in messages and `base` anchors relative sockets.
    pub fn parse(text: &str, source: &str, base: &Path) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse_vifs(text, source, base, false)
    }

    /// [`Self::parse`], optionally accepting a text without VIFs: a desired state sent to the
    /// control socket may be empty (remove every VIF), a file the daemon starts from may not.
    pub fn parse_vifs(
        text: &str,
        source: &str,
        base: &Path,
        allow_empty: bool,
    ) -> Result<DaemonConfig, ConfigError> {
        let syntax = |location: &str, mut e: toml::de::Error| {
            e.set_input(Some(text));
            ConfigError::Syntax {
                path: source.to_owned(),
                location: location.to_owned(),
                source: Box::new(e),
            }
        };
        let root = DeTable::parse(text).map_err(|e| syntax("file", e))?;
        let root_span = root.span();
        let mut root = root.into_inner();
        let vif_value = root.remove("vif");

        // What is left must be known top-level tables: refusing the rest keeps a misspelt
        // `[[vifs]]` from silently serving nothing.
        let rest = Spanned::new(root_span, DeValue::Table(root));
        let rest =
            FileRest::deserialize(ValueDeserializer::from(rest)).map_err(|e| syntax("file", e))?;

        let mut tables = match vif_value.map(Spanned::into_inner) {
            None if allow_empty => toml::de::DeArray::new(),
            None => {
                return Err(ConfigError::NoVifs {
                    path: source.to_owned(),
                })
            }
            Some(DeValue::Array(tables)) => tables,
            Some(_) => {
                return Err(ConfigError::VifNotArray {
                    path: source.to_owned(),
                    found: "a single value",
                })
            }
        };
        let mut vifs = Vec::with_capacity(tables.len());
        for (index, slot) in tables.iter_mut().enumerate() {
            let placeholder = Spanned::new(0..0, DeValue::Boolean(false));
            let table = std::mem::replace(slot, placeholder);
            let span = table.span();
            let found = table.get_ref().type_str();
            let DeValue::Table(mut table) = table.into_inner() else {
                return Err(ConfigError::VifNotTable {
                    path: source.to_owned(),
                    index,
                    found,
                });
            };
            let id_hint = table
                .get("id")
                .and_then(|v| v.get_ref().as_str())
                .map(|id| format!("vif[{index}] ({id})"))
                .unwrap_or_else(|| format!("vif[{index}]"));
            let socket = table
                .remove("socket")
                .map(|v| PathBuf::deserialize(ValueDeserializer::from(v)))
                .transpose()
                .map_err(|e| syntax(&id_hint, e))?;
            let mode = table
                .remove("mode")
                .map(|v| SocketMode::deserialize(ValueDeserializer::from(v)))
                .transpose()
                .map_err(|e| syntax(&id_hint, e))?
                .unwrap_or_default();
            let spec = VifSpec::deserialize(ValueDeserializer::from(Spanned::new(
                span,
                DeValue::Table(table),
            )))
            .map_err(|e| syntax(&id_hint, e))?;
            let socket = match socket {
                Some(socket) => base.join(socket),
                None => default_socket_path(&spec.id),
            };
            vifs.push(VifConfig { spec, socket, mode });
        }
        let policy =
            PolicyLibrary::new(rest.acl, rest.qos).map_err(|error| ConfigError::Policy {
                path: source.to_owned(),
                source: error,
            })?;
        let config = DaemonConfig {
            source: source.to_owned(),
            vifs,
            metrics: rest.metrics,
            control: rest.control,
            flow_log: rest.flow_log,
            policy,
            conntrack: rest.conntrack,
        };
        config.check(allow_empty)?;
        Ok(config)
    }

    /// One VIF from flags; with no flags at all, the default VIF `vif0`.
    pub fn from_flags(quick: &QuickVif) -> Result<DaemonConfig, ConfigError> {
        let source = "command line".to_owned();
        let invalid = |source_err: ModelError| ConfigError::Invalid {
            path: source.clone(),
            source: Box::new(source_err),
        };
        let id = VifId::new(quick.id.as_deref().unwrap_or(DEFAULT_VIF_ID)).map_err(invalid)?;
        let uplink = UplinkSpec::Local(LocalUplink {
            segment: quick
                .segment
                .clone()
                .unwrap_or_else(|| DEFAULT_SEGMENT.to_owned()),
        });
        let mut spec = VifSpec::new(id, quick.mac.unwrap_or(DEFAULT_MAC), uplink);
        if let Some(mtu) = quick.mtu {
            spec.mtu = mtu;
        }
        if let Some(queue_pairs) = quick.queue_pairs {
            spec.queue_pairs = queue_pairs;
        }
        if let Some(queue_size) = quick.queue_size {
            spec.queue_size = queue_size;
        }
        let socket = quick
            .socket
            .clone()
            .unwrap_or_else(|| default_socket_path(&spec.id));
        let mode = if quick.client {
            SocketMode::Client
        } else {
            SocketMode::Server
        };
        let config = DaemonConfig {
            source,
            vifs: vec![VifConfig { spec, socket, mode }],
            metrics: MetricsConfig::default(),
            control: ControlConfig::default(),
            flow_log: FlowLogConfig::default(),
            policy: PolicyLibrary::default(),
            conntrack: ConntrackConfig::default(),
        };
        config.check(false)?;
        Ok(config)
    }

    /// Validates every spec, then the rules across VIFs.
    fn check(&self, allow_empty: bool) -> Result<(), ConfigError> {
        let path = || self.source.clone();
        if self.vifs.is_empty() && !allow_empty {
            return Err(ConfigError::NoVifs { path: path() });
        }
        let control = self.control.path();
        let refused = |source| ConfigError::Policy {
            path: path(),
            source,
        };
        policy::check_conntrack(&self.conntrack).map_err(refused)?;
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut sockets: BTreeMap<&Path, &VifId> = BTreeMap::new();
        for (index, vif) in self.vifs.iter().enumerate() {
            vif.spec.validate().map_err(|source| ConfigError::Invalid {
                path: path(),
                source: Box::new(source),
            })?;
            if let Some(&first) = ids.get(vif.spec.id.as_str()) {
                return Err(ConfigError::DuplicateId {
                    path: path(),
                    vif: vif.spec.id.clone(),
                    first,
                    second: index,
                });
            }
            ids.insert(vif.spec.id.as_str(), index);
            self.policy.resolve(&vif.spec).map_err(refused)?;
            let len = vif.socket.as_os_str().len();
            if len == 0 {
                return Err(ConfigError::SocketPathEmpty {
                    path: path(),
                    vif: vif.spec.id.clone(),
                });
            }
            if len > MAX_SOCKET_PATH_LEN {
                return Err(ConfigError::SocketPathTooLong {
                    path: path(),
                    vif: vif.spec.id.clone(),
                    socket: vif.socket.clone(),
                    len,
                    max: MAX_SOCKET_PATH_LEN,
                });
            }
            // Paths are compared as written (after joining the base); two spellings of one file
            // are caught when the second bind finds the first listening.
            if control.as_deref() == Some(vif.socket.as_path()) {
                return Err(ConfigError::SocketIsControl {
                    path: path(),
                    vif: vif.spec.id.clone(),
                    socket: vif.socket.clone(),
                });
            }
            if let Some(other) = sockets.insert(&vif.socket, &vif.spec.id) {
                return Err(ConfigError::DuplicateSocket {
                    path: path(),
                    vif: vif.spec.id.clone(),
                    other: other.clone(),
                    socket: vif.socket.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Top-level tables other than `vif`; any other key is refused with its span.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRest {
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    control: ControlConfig,
    #[serde(default)]
    flow_log: FlowLogConfig,
    #[serde(default)]
    acl: Vec<AclSpec>,
    #[serde(default)]
    qos: Vec<QosSpec>,
    #[serde(default)]
    conntrack: ConntrackConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DaemonConfig, ConfigError> {
        DaemonConfig::parse(text, "test.toml", Path::new("/etc/vif"))
    }

    const TWO_VIFS: &str = r#"
[[vif]]
id = "web-1"
mac = "52:54:00:00:00:01"
socket = "/run/vif/web-1.sock"
uplink = { type = "local", segment = "lab" }

[[vif]]
id = "web-2"
mac = "52:54:00:00:00:02"
mtu = 9000
queue_pairs = 2
socket = "web-2.sock"
mode = "client"
uplink = { type = "local", segment = "lab" }
"#;

    #[test]
    fn parses_two_vifs() {
        let config = parse(TWO_VIFS).unwrap();
        assert_eq!(config.vifs.len(), 2);
        let (a, b) = (&config.vifs[0], &config.vifs[1]);
        assert_eq!(a.spec.id.as_str(), "web-1");
        assert_eq!(a.socket, Path::new("/run/vif/web-1.sock"));
        assert_eq!(a.mode, SocketMode::Server);
        assert_eq!(a.spec.mtu, 1500);
        assert_eq!(b.socket, Path::new("/etc/vif/web-2.sock"));
        assert_eq!(b.mode, SocketMode::Client);
        assert_eq!((b.spec.mtu, b.spec.queue_pairs), (9000, 2));
        assert_eq!(
            b.spec.uplink,
            UplinkSpec::Local(LocalUplink {
                segment: "lab".into()
            })
        );
    }

    #[test]
    fn unknown_key_names_vif_line_and_column() {
        let text = TWO_VIFS.replace("mtu = 9000", "mtux = 9000");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(msg.starts_with("config test.toml: vif[1] (web-2)"), "{msg}");
        assert!(msg.contains("mtux"), "{msg}");
        assert!(msg.contains("line 11, column 1"), "{msg}");
    }

    #[test]
    fn wrong_type_is_a_syntax_error() {
        let text = TWO_VIFS.replace("mtu = 9000", "mtu = \"big\"");
        let err = parse(&text).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("line 11, column 7"), "{err}");
    }

    #[test]
    fn bad_mode_is_refused() {
        let text = TWO_VIFS.replace("mode = \"client\"", "mode = \"both\"");
        let msg = parse(&text).unwrap_err().to_string();
        assert!(
            msg.contains("vif[1] (web-2)") && msg.contains("both"),
            "{msg}"
        );
    }

    #[test]
    fn validation_error_names_field_and_bound() {
        let text = TWO_VIFS.replace("mtu = 9000", "mtu = 20");
        let err = parse(&text).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{msg}");
        assert!(
            msg.starts_with("config test.toml: vif web-2: mtu 20"),
            "{msg}"
        );
        assert!(msg.contains("68"), "{msg}");
    }

    #[test]
    fn duplicate_ids_and_sockets_refused() {
        let dup_id = TWO_VIFS.replace("\"web-2\"", "\"web-1\"");
        assert!(matches!(
            parse(&dup_id),
            Err(ConfigError::DuplicateId {
                first: 0,
                second: 1,
                ..
            })
        ));
        let dup_socket = TWO_VIFS.replace("\"web-2.sock\"", "\"/run/vif/web-1.sock\"");
        let err = parse(&dup_socket).unwrap_err();
        assert!(matches!(err, ConfigError::DuplicateSocket { .. }), "{err}");
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(parse(""), Err(ConfigError::NoVifs { .. })));
        assert!(matches!(
            parse("vif = 3"),
            Err(ConfigError::VifNotArray { .. })
        ));
        assert!(matches!(
            parse("vif = [3]"),
            Err(ConfigError::VifNotTable { index: 0, .. })
        ));
        let misspelt = parse("[[vifs]]\nid = \"a\"").unwrap_err().to_string();
        assert!(misspelt.contains("vifs"), "{misspelt}");
        let broken = parse("[[vif]\n").unwrap_err().to_string();
        assert!(broken.contains("line 1"), "{broken}");
    }

    #[test]
    fn long_socket_path_refused() {
        let long = format!("/{}", "s".repeat(MAX_SOCKET_PATH_LEN));
        let text = TWO_VIFS.replace("/run/vif/web-1.sock", &long);
        assert!(matches!(
            parse(&text),
            Err(ConfigError::SocketPathTooLong {
                len: 108,
                max: 107,
                ..
            })
        ));
    }

    #[test]
    fn flags_default_and_override() {
        let config = DaemonConfig::from_flags(&QuickVif::default()).unwrap();
        let vif = &config.vifs[0];
        assert_eq!(vif.spec.id.as_str(), DEFAULT_VIF_ID);
        assert_eq!(vif.spec.mac, DEFAULT_MAC);
        assert!(DEFAULT_MAC.is_local() && DEFAULT_MAC.is_unicast());
        assert_eq!(vif.mode, SocketMode::Server);
        assert!(vif.socket.ends_with("vif0.sock"));

        let quick = QuickVif {
            mtu: Some(10),
            ..QuickVif::default()
        };
        let msg = DaemonConfig::from_flags(&quick).unwrap_err().to_string();
        assert!(
            msg.starts_with("config command line: vif vif0: mtu 10"),
            "{msg}"
        );
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../../examples/vif.toml");
        let config = DaemonConfig::parse(text, "examples/vif.toml", Path::new("examples")).unwrap();
        let modes: Vec<_> = config
            .vifs
            .iter()
            .map(|v| (v.spec.id.as_str(), v.mode))
            .collect();
        assert_eq!(
            modes,
            [("web-1", SocketMode::Server), ("db-1", SocketMode::Client)]
        );
    }

    #[test]
    fn arbitrary_text_never_panics() {
        use proptest::prelude::*;
        proptest!(|(text in "[\\[\\]a-z=\"0-9 \n.{},:_-]{0,200}")| {
            let _ = parse(&text);
        });
        // Mutations of a valid file reach the split and the model, not just the TOML parser.
        proptest!(|(at in 0usize..TWO_VIFS.len(), byte in any::<u8>())| {
            let mut bytes = TWO_VIFS.as_bytes().to_vec();
            bytes[at] = byte;
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse(text);
            }
        });
    }
}
