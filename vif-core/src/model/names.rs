//! Syntax of the names a VIF spec carries: the VIF id, references to ACLs, QoS policies and
//! segments, Linux interface names, and label keys.
//!
//! Names end up in places with their own rules, so each check is the strictest of those places:
//! - object names (VIF id, ACL, QoS, segment) become Prometheus label values and parts of socket
//!   paths: `[A-Za-z0-9._-]`, 1..=64 bytes, not `.` or `..` (path components);
//! - interface names follow the kernel's `dev_valid_name` (net/core/dev.c): 1..=15 bytes
//!   (`IFNAMSIZ` 16 counts the NUL), not `.` or `..`, no `/`, `:` or whitespace. Control
//!   characters are refused too (stricter than the kernel) because names are logged;
//! - label keys follow the Prometheus label-name syntax `[A-Za-z_][A-Za-z0-9_]*`, without the
//!   reserved `__` prefix, so the daemon can export labels on an info metric.
//!
//! Other modules that define the referenced objects (ACLs, QoS policies) should check their names
//! with [`check_name`] so that every definable name can be referenced.

use std::fmt;
use std::str::FromStr;

use super::error::{ModelError, NameError};

/// Longest object name (VIF id, ACL, QoS policy, segment), in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// `IFNAMSIZ` from `include/uapi/linux/if.h`: interface names are at most 15 bytes plus a NUL.
pub const IFNAMSIZ: usize = 16;
/// Longest label key, in bytes.
pub const MAX_LABEL_KEY_LEN: usize = 63;

const NAME_CHARS: &str = "[A-Za-z0-9._-]";
const LABEL_KEY_CHARS: &str = "[A-Za-z_] then [A-Za-z0-9_]";
const IFNAME_CHARS: &str = "anything but '/', ':', whitespace and control characters";

/// Checks an object name: 1..=[`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), NameError> {
    check_len(name, MAX_NAME_LEN)?;
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')))
    {
        return Err(NameError::BadChar {
            ch,
            at,
            allowed: NAME_CHARS,
        });
    }
    check_not_dots(name)
}

/// Checks a Linux interface name as the kernel's `dev_valid_name` does, and also refuses control
/// characters.
pub fn check_ifname(name: &str) -> Result<(), NameError> {
    check_len(name, IFNAMSIZ - 1)?;
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, ch)| matches!(ch, '/' | ':') || ch.is_whitespace() || ch.is_control())
    {
        return Err(NameError::BadChar {
            ch,
            at,
            allowed: IFNAME_CHARS,
        });
    }
    check_not_dots(name)
}

/// Checks a label key against the Prometheus label-name syntax, without the reserved `__` prefix.
pub fn check_label_key(key: &str) -> Result<(), NameError> {
    check_len(key, MAX_LABEL_KEY_LEN)?;
    if let Some((at, ch)) = key.char_indices().find(|&(at, ch)| {
        !(ch.is_ascii_alphabetic() || ch == '_' || (at > 0 && ch.is_ascii_digit()))
    }) {
        return Err(NameError::BadChar {
            ch,
            at,
            allowed: LABEL_KEY_CHARS,
        });
    }
    if key.starts_with("__") {
        return Err(NameError::Reserved {
            reason: "the \"__\" prefix is reserved by Prometheus",
        });
    }
    Ok(())
}

fn check_len(name: &str, max: usize) -> Result<(), NameError> {
    match name.len() {
        0 => Err(NameError::Empty),
        len if len > max => Err(NameError::TooLong { len, max }),
        _ => Ok(()),
    }
}

fn check_not_dots(name: &str) -> Result<(), NameError> {
    if name == "." || name == ".." {
        return Err(NameError::Reserved {
            reason: "\".\" and \"..\" are path components",
        });
    }
    Ok(())
}

/// The identifier of a VIF: a valid object name (see [`check_name`]). A value of this type is
/// always valid; it is the `vif` label on every metric and names the VIF's socket.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VifId(String);

impl VifId {
    pub fn new(id: impl Into<String>) -> Result<VifId, ModelError> {
        let id = id.into();
        match check_name(&id) {
            Ok(()) => Ok(VifId(id)),
            Err(reason) => Err(ModelError::InvalidVifId { id, reason }),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VifId {
    type Error = ModelError;
    fn try_from(id: String) -> Result<Self, ModelError> {
        VifId::new(id)
    }
}

impl From<VifId> for String {
    fn from(id: VifId) -> String {
        id.0
    }
}

impl FromStr for VifId {
    type Err = ModelError;
    fn from_str(id: &str) -> Result<Self, ModelError> {
        VifId::new(id)
    }
}

impl AsRef<str> for VifId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Lets a `BTreeMap<VifId, _>` be looked up by `&str`; `Eq`, `Ord` and `Hash` agree with `str`'s.
impl std::borrow::Borrow<str> for VifId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VifId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for VifId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VifId({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vif_id_accepts_the_name_alphabet() {
        for ok in ["web-1", "a", "A.b_c-9", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(VifId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn vif_id_refusals_name_the_rule() {
        let err = VifId::new("").unwrap_err();
        assert_eq!(
            err,
            ModelError::InvalidVifId {
                id: String::new(),
                reason: NameError::Empty
            }
        );
        let long = "x".repeat(MAX_NAME_LEN + 1);
        assert!(VifId::new(long.as_str())
            .unwrap_err()
            .to_string()
            .contains("is 65 bytes long, more than 64"));
        let err = VifId::new("web/1").unwrap_err();
        assert!(matches!(
            err,
            ModelError::InvalidVifId {
                reason: NameError::BadChar { ch: '/', at: 3, .. },
                ..
            }
        ));
        assert!(err.to_string().contains("[A-Za-z0-9._-]"), "{err}");
        assert!(matches!(
            VifId::new(".."),
            Err(ModelError::InvalidVifId {
                reason: NameError::Reserved { .. },
                ..
            })
        ));
        // Non-ASCII letters are refused: the id is a socket path component and a label value.
        assert!(VifId::new("wéb").is_err());
    }

    #[test]
    fn vif_id_serde_checks_syntax() {
        let id: VifId = serde_json::from_str("\"web-1\"").unwrap();
        assert_eq!(id.as_str(), "web-1");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"web-1\"");
        let err = serde_json::from_str::<VifId>("\"web 1\"").unwrap_err();
        assert!(err.to_string().contains("' '"), "{err}");
    }

    #[test]
    fn ifname_follows_dev_valid_name() {
        for ok in [
            "eth0",
            "enp3s0f1",
            "br-ex",
            "a",
            "vxlan.100",
            &"x".repeat(15),
        ] {
            assert_eq!(check_ifname(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_ifname(""), Err(NameError::Empty));
        assert_eq!(
            check_ifname(&"x".repeat(16)),
            Err(NameError::TooLong { len: 16, max: 15 })
        );
        for (bad, ch) in [
            ("eth/0", '/'),
            ("eth0:1", ':'),
            ("eth 0", ' '),
            ("eth\t", '\t'),
        ] {
            assert!(
                matches!(check_ifname(bad), Err(NameError::BadChar { ch: c, .. }) if c == ch),
                "{bad}"
            );
        }
        assert!(matches!(check_ifname("."), Err(NameError::Reserved { .. })));
    }

    #[test]
    fn label_keys_follow_prometheus() {
        for ok in ["tenant", "owner_team", "_x", "a1"] {
            assert_eq!(check_label_key(ok), Ok(()), "{ok}");
        }
        assert!(matches!(
            check_label_key("1a"),
            Err(NameError::BadChar { ch: '1', at: 0, .. })
        ));
        assert!(matches!(
            check_label_key("app.kubernetes.io"),
            Err(NameError::BadChar { ch: '.', at: 3, .. })
        ));
        assert!(matches!(
            check_label_key("__name__"),
            Err(NameError::Reserved { .. })
        ));
        assert_eq!(check_label_key(""), Err(NameError::Empty));
    }
}
