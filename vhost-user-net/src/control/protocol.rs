//! The control socket's wire protocol: JSON lines. Each request is one JSON object on one line
//! (ending in `\n`), each response one JSON object on one line, in request order; a connection
//! may carry many requests. Requests are at most [`MAX_REQUEST`] bytes.
//!
//! Every request names its operation in `op`; unknown operations and unknown fields are refused
//! (`bad_request`), so a typo is an error, not a silently ignored option:
//!
//! | request | result |
//! |---|---|
//! | `{"op":"status"}` | [`DaemonStatus`] |
//! | `{"op":"list"}` | `[`[`VifSummary`]`]` (an SR-IOV VIF's with its [`VfSummary`]) |
//! | `{"op":"show","vif":"web-1"}` | [`VifDetail`] |
//! | `{"op":"stats"}` / `{"op":"stats","vif":"web-1"}` | `[`[`VifCounters`]`]` |
//! | `{"op":"segments"}` | `[`[`SegmentSummary`]`]` |
//! | `{"op":"create","config":"<TOML>","base":"/dir"}` | [`ChangeReport`] |
//! | `{"op":"update","config":"<TOML>","base":"/dir"}` | [`ChangeReport`] |
//! | `{"op":"remove","vif":"web-1"}` | [`ChangeReport`] |
//! | `{"op":"apply","config":"<TOML>","base":"/dir","dry_run":false}` | [`ChangeReport`] |
//! | `{"op":"set_acl","vif":"web-1","direction":"ingress","acl":{...}}` | [`PolicyReport`] |
//! | `{"op":"set_qos","vif":"web-1","qos":{...}}` | [`PolicyReport`] |
//!
//! `config` is config-file text (`[[vif]]` tables, see `crate::config`); `base` is the directory
//! relative `socket` paths are resolved against (the file's directory; default: the daemon's
//! working directory). `create` adds VIFs that must not exist, `update` replaces VIFs that must
//! exist, `apply` makes the VIF set equal to the text (adding, changing and removing), and
//! `dry_run` reports what `apply` would do without doing it.
//!
//! `set_acl` replaces one direction's ACL of a VIF (`acl` is a `vif_core::acl::AclSpec`;
//! absent clears it), `set_qos` its rate limits (`qos` is a `vif_core::qos::QosSpec`; absent
//! clears them). The policy is compiled first (an invalid one is `invalid_config` and changes
//! nothing), then swapped in atomically while traffic flows: each packet is judged by the old
//! or the new rule set, and the VIF's other traffic is not disturbed. The definition joins the
//! daemon's policy tables under its name; a name another VIF uses with other content is
//! refused (`invalid_config`). `apply` with changed `[[acl]]`/`[[qos]]` tables or references
//! changes policies in place too (`policy updated` in its report).
//!
//! A response is `{"ok":true,"result":...}` or `{"ok":false,"error":{"code":"...","message":"..."}}`
//! with a [`ErrorCode`]. A request refused for validation changes nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use vif_core::acl::AclSpec;
use vif_core::qos::QosSpec;

/// Longest request line: a desired state of a thousand VIFs fits with room to spare.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// A control request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    // Operations without arguments are empty struct variants: serde ignores extra fields of a
    // unit variant even under deny_unknown_fields, and a typo must not pass silently.
    Status {},
    List {},
    Show {
        vif: String,
    },
    Stats {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vif: Option<String>,
    },
    Segments {},
    Create {
        config: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<PathBuf>,
    },
    Update {
        config: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<PathBuf>,
    },
    Remove {
        vif: String,
    },
    Apply {
        config: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base: Option<PathBuf>,
        #[serde(default)]
        dry_run: bool,
    },
    SetAcl {
        vif: String,
        direction: AclDirection,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acl: Option<AclSpec>,
    },
    SetQos {
        vif: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        qos: Option<QosSpec>,
    },
}

/// A direction of a VIF's ACLs, the guest's (`vif_core::acl::Direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AclDirection {
    /// Frames delivered to the guest.
    Ingress,
    /// Frames the guest sends.
    Egress,
}

/// Why a request failed, for scripts: stable snake_case strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not a known operation, or a field of the wrong type.
    BadRequest,
    /// The request is longer than [`MAX_REQUEST`].
    TooLarge,
    /// The config text is invalid; nothing changed.
    InvalidConfig,
    /// No VIF with that id.
    NotFound,
    /// `create` of a VIF that exists.
    Exists,
    /// A socket or resource could not be set up; see the message for what was applied.
    Failed,
    /// A valid request the daemon cannot carry out yet; nothing changed.
    Unsupported,
}

/// A response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl Response {
    pub fn success<T: Serialize>(result: &T) -> Response {
        match serde_json::to_value(result) {
            Ok(value) => Response {
                ok: true,
                result: Some(value),
                error: None,
            },
            Err(e) => Response::failure(ErrorCode::Failed, format!("cannot encode: {e}")),
        }
    }

    pub fn failure(code: ErrorCode, message: impl Into<String>) -> Response {
        Response {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code,
                message: message.into(),
            }),
        }
    }

    /// The response as one line, `\n` included.
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_else(|e| {
            format!(
                r#"{{"ok":false,"error":{{"code":"failed","message":"cannot encode the response: {e}"}}}}"#
            )
            .into_bytes()
        });
        line.push(b'\n');
        line
    }
}

/// `status`: the daemon itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub uptime_seconds: f64,
    pub vifs: usize,
    pub segments: usize,
    pub control_socket: PathBuf,
    /// The metrics endpoint's address, when it runs.
    pub metrics_listen: Option<String>,
}

/// One VIF in `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifSummary {
    pub id: String,
    /// `listening`, `connecting`, `connected`, `reconnecting` or `stopped`; `assigned` for an
    /// SR-IOV VIF (its VF is with vfio-pci, for the VMM to take).
    pub state: String,
    /// Empty for an SR-IOV VIF, which has no socket.
    pub socket: PathBuf,
    /// `server` (the daemon listens), `client`, or `vfio` (an SR-IOV VF).
    pub mode: String,
    pub segment: String,
    pub mac: String,
    pub mtu: u16,
    pub queue_pairs: u16,
    /// The VIF's `tenant` label, if any.
    pub tenant: Option<String>,
    /// Frontend connections served so far.
    pub connections: u64,
    /// An SR-IOV VIF's VF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vf: Option<VfSummary>,
}

/// The VF an SR-IOV VIF was given, and what its VMM needs to take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfSummary {
    /// The physical function's interface.
    pub pf: String,
    pub vf_index: u16,
    /// The VF's PCI address (`0000:3b:02.1`).
    pub bdf: String,
    /// The host driver the VF goes back to when released.
    pub host_driver: Option<String>,
    /// True when this daemon found the VF prepared by a previous one and kept it.
    pub adopted: bool,
    /// `-device vfio-pci,host=BDF,id=VIF`.
    pub qemu_args: Vec<String>,
    /// `--device path=/sys/bus/pci/devices/BDF/,id=VIF`.
    pub cloud_hypervisor_args: Vec<String>,
}

/// `show`: a VIF's summary, its full spec and its provisioning times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VifDetail {
    #[serde(flatten)]
    pub summary: VifSummary,
    /// The VIF spec as the config file writes it (`vif_core::model::VifSpec`).
    pub spec: serde_json::Value,
    pub socket_ready_seconds: Option<f64>,
    pub driver_ok_seconds: Option<f64>,
}

/// One direction's counters (see `vif_core::stats::QueueCounters`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DirectionCounters {
    pub packets: u64,
    pub bytes: u64,
    pub unicast_packets: u64,
    pub multicast_packets: u64,
    pub broadcast_packets: u64,
    /// Frames per size bin label (`64`, `65_127`, ...).
    pub size_bins: BTreeMap<String, u64>,
    /// Drops per reason label; reasons with no drop are left out.
    pub drops: BTreeMap<String, u64>,
    pub notifications_sent: u64,
    pub notifications_suppressed: u64,
    pub throttled: u64,
}

/// One queue pair's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuePairCounters {
    pub queue: usize,
    pub rx: DirectionCounters,
    pub tx: DirectionCounters,
}

/// `stats`: a VIF's totals and per-queue-pair detail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifCounters {
    pub id: String,
    pub rx: DirectionCounters,
    pub tx: DirectionCounters,
    pub queue_pairs: Vec<QueuePairCounters>,
}

/// One segment in `segments`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    pub name: String,
    pub vifs: Vec<String>,
    pub fdb_entries: usize,
}

/// A VIF that changed, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VifChange {
    pub id: String,
    /// The top-level keys that differ (`mtu`, `uplink`, `labels`, `socket`, ...).
    pub fields: Vec<String>,
    /// `relabelled` (only labels changed: applied in place), `policy updated` (ACLs, QoS or
    /// port security swapped in place, labels with them) or `restarted` (a new device on the
    /// same id: the frontend reconnects and the VIF's counters start again).
    pub action: String,
}

/// What `set_acl` or `set_qos` installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyReport {
    pub vif: String,
    /// `acl.ingress`, `acl.egress` or `qos`.
    pub field: String,
    /// The policy's name; `None` when it was cleared.
    pub name: Option<String>,
    /// ACLs: how many rules the compiled set has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<usize>,
}

/// What `create`, `update`, `remove` and `apply` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChangeReport {
    pub dry_run: bool,
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<VifChange>,
    pub unchanged: Vec<String>,
}

impl ChangeReport {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_parse_from_their_documented_form() {
        let cases = [
            (r#"{"op":"status"}"#, Request::Status {}),
            (r#"{"op":"list"}"#, Request::List {}),
            (r#"{"op":"segments"}"#, Request::Segments {}),
            (
                r#"{"op":"show","vif":"web-1"}"#,
                Request::Show {
                    vif: "web-1".into(),
                },
            ),
            (r#"{"op":"stats"}"#, Request::Stats { vif: None }),
            (
                r#"{"op":"apply","config":"x","dry_run":true}"#,
                Request::Apply {
                    config: "x".into(),
                    base: None,
                    dry_run: true,
                },
            ),
            (
                r#"{"op":"remove","vif":"a"}"#,
                Request::Remove { vif: "a".into() },
            ),
        ];
        for (text, request) in cases {
            assert_eq!(
                serde_json::from_str::<Request>(text).unwrap(),
                request,
                "{text}"
            );
            let back = serde_json::to_string(&request).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&back).unwrap(), request);
        }
    }

    #[test]
    fn unknown_ops_and_fields_are_refused() {
        for bad in [
            r#"{"op":"reboot"}"#,
            r#"{"op":"list","all":true}"#,
            r#"{"op":"show"}"#,
            r#"{"vif":"a"}"#,
            r#"{"op":"apply","config":"x","dryrun":true}"#,
        ] {
            assert!(serde_json::from_str::<Request>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses_are_one_line() {
        let ok = Response::success(&ChangeReport::default()).to_line();
        assert_eq!(ok.iter().filter(|&&b| b == b'\n').count(), 1);
        let text = String::from_utf8(ok).unwrap();
        assert!(text.starts_with(r#"{"ok":true,"result":{"#), "{text}");
        assert!(text.contains(r#""dry_run":false"#), "{text}");
        let err = Response::failure(ErrorCode::NotFound, "no vif\nx").to_line();
        let text = String::from_utf8(err).unwrap();
        assert_eq!(
            text,
            "{\"ok\":false,\"error\":{\"code\":\"not_found\",\"message\":\"no vif\\nx\"}}\n"
        );
    }

    proptest! {
        /// Arbitrary text never panics the request parser.
        #[test]
        fn arbitrary_text(text in ".{0,200}") {
            let _ = serde_json::from_str::<Request>(&text);
        }
    }
}
