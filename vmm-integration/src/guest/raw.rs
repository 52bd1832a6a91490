//! Hostile access to a virtqueue, for tests of the backend's defences (anchors § 8.A: loops,
//! out-of-range indices, addresses outside guest memory, indirect-table abuse, wrong access
//! direction, chains shorter than the header, avail-index jumps).
//!
//! The raw API writes exactly what it is told. To keep the normal path usable on the same queue
//! afterwards, take descriptors with [`RawQueue::take_descriptors`] (they leave the free list
//! for good) and write only those; the normal path then skips used elements whose head is raw.
//! Pushing heads the normal path owns, or jumping `avail.idx`, is allowed — the guest's own
//! bookkeeping of that queue is then only as good as the test makes it.
//!
//! ```no_run
//! # use vmm_integration::guest::{GuestConfig, VirtualGuest, VringDesc};
//! # let mut guest = VirtualGuest::connect("/tmp/vif.sock", GuestConfig::default())?;
//! let mut tx = guest.raw_queue(1)?;
//! let d = tx.take_descriptors(2)?;
//! // A two-descriptor loop: d0 -> d1 -> d0.
//! tx.write_desc(d[0], VringDesc::readable(tx.mem_base(), 64).with_next(d[1]))?;
//! tx.write_desc(d[1], VringDesc::readable(tx.mem_base(), 64).with_next(d[0]))?;
//! tx.push_avail(d[0])?;
//! tx.kick()?;
//! # Ok::<(), vmm_integration::guest::GuestError>(())
//! ```

use std::time::{Duration, Instant};

use virtio_queue::desc::split::Descriptor;
use vm_memory::GuestAddress;

use super::error::GuestError;
use super::memory::GuestRam;
use super::vring::{
    DriverRing, DESC_LEN, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};

/// A descriptor exactly as written to the table (`struct virtq_desc`, VIRTIO 1.2 § 2.7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VringDesc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

impl VringDesc {
    pub const F_NEXT: u16 = VRING_DESC_F_NEXT;
    pub const F_WRITE: u16 = VRING_DESC_F_WRITE;
    pub const F_INDIRECT: u16 = VRING_DESC_F_INDIRECT;

    /// A device-readable buffer (what TX chains use).
    pub const fn readable(addr: u64, len: u32) -> VringDesc {
        VringDesc {
            addr,
            len,
            flags: 0,
            next: 0,
        }
    }

    /// A device-writable buffer (what RX chains use).
    pub const fn writable(addr: u64, len: u32) -> VringDesc {
        VringDesc {
            addr,
            len,
            flags: VRING_DESC_F_WRITE,
            next: 0,
        }
    }

    /// A descriptor pointing at an indirect table of `entries` descriptors at `addr`.
    pub const fn indirect(addr: u64, entries: u32) -> VringDesc {
        VringDesc {
            addr,
            len: entries.wrapping_mul(DESC_LEN as u32),
            flags: VRING_DESC_F_INDIRECT,
            next: 0,
        }
    }

    /// Sets `NEXT` and the index it points at.
    pub const fn with_next(mut self, next: u16) -> VringDesc {
        self.flags |= VRING_DESC_F_NEXT;
        self.next = next;
        self
    }

    /// ORs in arbitrary flag bits.
    pub const fn with_flags(mut self, flags: u16) -> VringDesc {
        self.flags |= flags;
        self
    }

    fn encode(self) -> Descriptor {
        Descriptor::new(self.addr, self.len, self.flags, self.next)
    }
}

/// Raw handle on one vring of a [`super::VirtualGuest`].
#[derive(Debug)]
pub struct RawQueue<'g> {
    ring: &'g mut DriverRing,
    ram: &'g mut GuestRam,
}

impl<'g> RawQueue<'g> {
    pub(super) fn new(ring: &'g mut DriverRing, ram: &'g mut GuestRam) -> RawQueue<'g> {
        RawQueue { ring, ram }
    }

    pub fn size(&self) -> u16 {
        self.ring.size()
    }

    /// First guest-physical address of RAM.
    pub fn mem_base(&self) -> u64 {
        self.ram.base()
    }

    /// One past the last guest-physical address of RAM: addresses from here are outside.
    pub fn mem_end(&self) -> u64 {
        self.ram.end()
    }

    /// Removes `count` free descriptors from the normal path for the raw user's exclusive use.
    pub fn take_descriptors(&mut self, count: u16) -> Result<Vec<u16>, GuestError> {
        self.ring.take_free(count)
    }

    /// Writes descriptor `index` of the table (must be `< size`: the table itself is guest RAM
    /// the test does not mean to corrupt).
    pub fn write_desc(&mut self, index: u16, desc: VringDesc) -> Result<(), GuestError> {
        self.ring.write_desc_raw(self.ram, index, desc.encode())
    }

    /// Allocates `len` bytes of guest RAM (for buffers and tables); returns the address.
    pub fn alloc(&mut self, len: u64) -> Result<u64, GuestError> {
        Ok(self.ram.alloc(len, 64)?.0)
    }

    /// Writes bytes anywhere in guest RAM.
    pub fn write_bytes(&mut self, addr: u64, bytes: &[u8]) -> Result<(), GuestError> {
        self.ram.write(GuestAddress(addr), bytes)
    }

    /// Reads bytes from guest RAM (e.g. what the device wrote into a raw RX buffer).
    pub fn read_bytes(&self, addr: u64, out: &mut [u8]) -> Result<(), GuestError> {
        self.ram.read(GuestAddress(addr), out)
    }

    /// Allocates and writes an indirect table of `descs`; returns its address for a
    /// [`VringDesc::indirect`] descriptor.
    pub fn write_indirect_table(&mut self, descs: &[VringDesc]) -> Result<u64, GuestError> {
        let len = DESC_LEN * descs.len().max(1) as u64;
        let table = self.ram.alloc(len, 16)?;
        for (i, desc) in descs.iter().enumerate() {
            self.ram
                .write_obj(desc.encode(), GuestAddress(table.0 + DESC_LEN * i as u64))?;
        }
        Ok(table.0)
    }

    /// Appends `head` (any value, in range or not) to the available ring and publishes it.
    pub fn push_avail(&mut self, head: u16) -> Result<(), GuestError> {
        self.ring.push_avail_raw(self.ram, head)
    }

    /// Stores `idx` into `avail.idx` as is: a jump past (or behind) what was written.
    pub fn set_avail_idx(&mut self, idx: u16) -> Result<(), GuestError> {
        self.ring.set_avail_idx_raw(self.ram, idx)
    }

    pub fn avail_idx(&self) -> u16 {
        self.ring.avail_idx()
    }

    pub fn used_idx(&self) -> Result<u16, GuestError> {
        self.ring.used_idx(self.ram)
    }

    /// The used element at ring position `idx` (taken modulo the size): `(id, len)` exactly as
    /// the device wrote them.
    pub fn used_elem(&self, idx: u16) -> Result<(u32, u32), GuestError> {
        self.ring.used_elem_raw(self.ram, idx)
    }

    /// Writes the kick eventfd, whatever the device's suppression state.
    pub fn kick(&mut self) -> Result<(), GuestError> {
        self.ring.kick()
    }

    /// Waits until `used.idx` is `count` entries past the driver's last consumed position
    /// (the normal path consumes; the raw API does not), or `Timeout`. To wait for a
    /// position read earlier with [`RawQueue::used_idx`], use [`RawQueue::wait_used_idx`].
    pub fn wait_used(&mut self, count: u16, timeout: Duration) -> Result<(), GuestError> {
        let deadline = Instant::now() + timeout;
        let have = count.saturating_sub(1);
        self.ring
            .wait_used(self.ram, have, deadline, "raw wait_used", timeout)
    }

    /// Waits until `used.idx` reaches `target` (in 16-bit ring arithmetic), or `Timeout`.
    pub fn wait_used_idx(&mut self, target: u16, timeout: Duration) -> Result<(), GuestError> {
        let deadline = Instant::now() + timeout;
        let ahead = target.wrapping_sub(self.ring.last_used());
        if ahead == 0 || ahead > 0x8000 {
            return Ok(());
        }
        self.ring
            .wait_used(self.ram, ahead - 1, deadline, "raw wait_used_idx", timeout)
    }
}
