//! Zero-copy, bounds-checked views over frames, in the style of smoltcp's `wire` module.
//!
//! Every header has one file with the same shape:
//! - a private `mod field` naming byte ranges (`const LENGTH: Field = 2..4`);
//! - a view `XxxPacket<T: AsRef<[u8]>>` with `new_unchecked`, `check_len` (proves that no accessor
//!   can panic: every length field is checked against the buffer) and `new_checked` (both);
//!   getters for `T: AsRef<[u8]>`, setters for `T: AsMut<[u8]>`;
//! - where useful, a typed `XxxRepr` with `parse`, `buffer_len` and `emit`.
//!
//! Use `new_checked` on anything a guest or peer sent. Views never allocate and never panic on a
//! checked buffer. They borrow a backend-owned frame buffer, never guest memory directly: a guest
//! can rewrite its buffers while we parse.

pub mod arp;
pub mod encap;
pub mod ethernet;
pub mod frame;
pub mod icmpv4;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;
pub mod vxlan;

pub use crate::ids::{VlanId, Vni};
pub use crate::mac::MacAddr;

/// Byte ranges inside a header.
pub(crate) mod field {
    pub type Field = core::ops::Range<usize>;
    pub type Rest = core::ops::RangeFrom<usize>;
}

/// Why a buffer is not a valid header. Variants name the header, the field and the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{header}: needs {need} bytes, buffer has {len}")]
    Truncated {
        header: &'static str,
        need: usize,
        len: usize,
    },
    #[error("{header}: field {field} is {value}, must be {bound}")]
    BadField {
        header: &'static str,
        field: &'static str,
        value: u32,
        bound: &'static str,
    },
    #[error("{header}: checksum does not verify")]
    BadChecksum { header: &'static str },
    #[error("{header}: {what} is not supported")]
    Unsupported {
        header: &'static str,
        what: &'static str,
    },
}

pub type Result<T> = core::result::Result<T, WireError>;

/// How a `Repr` treats checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Csum {
    /// `parse` verifies the checksum; `emit` computes and writes it.
    #[default]
    Verify,
    /// The checksum is partial, as with virtio `NEEDS_CSUM`: `parse` accepts any value; `emit`
    /// writes the pseudo-header sum for the device (or the segmenter) to complete.
    Partial,
    /// `parse` does not look at it (the device already verified it, virtio `DATA_VALID`); `emit`
    /// leaves the field as it is.
    Ignore,
}

/// Returns `Truncated` unless `buffer` has at least `need` bytes.
#[inline]
pub(crate) fn ensure_len(header: &'static str, buffer: &[u8], need: usize) -> Result<()> {
    if buffer.len() < need {
        Err(WireError::Truncated {
            header,
            need,
            len: buffer.len(),
        })
    } else {
        Ok(())
    }
}
