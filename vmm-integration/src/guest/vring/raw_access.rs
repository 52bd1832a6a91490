//! Ring operations only the raw API uses (`guest/raw.rs`): they write what they are told and
//! keep the shadow state only as consistent as that allows.

use std::sync::atomic::Ordering;

use virtio_queue::desc::split::Descriptor;
use vm_memory::GuestAddress;

use super::{DriverRing, HeadState};
use crate::guest::error::GuestError;
use crate::guest::memory::GuestRam;

impl DriverRing {
    /// Removes `count` descriptors from the free list for the raw API's exclusive use.
    pub(crate) fn take_free(&mut self, count: u16) -> Result<Vec<u16>, GuestError> {
        if count > self.num_free {
            return Err(self.ring_full(usize::from(count)));
        }
        let mut taken = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let index = self.free_head;
            self.free_head = self.links[usize::from(index)];
            self.num_free -= 1;
            self.chains[usize::from(index)].state = HeadState::Raw;
            taken.push(index);
        }
        Ok(taken)
    }

    pub(crate) fn write_desc_raw(
        &mut self,
        ram: &GuestRam,
        index: u16,
        desc: Descriptor,
    ) -> Result<(), GuestError> {
        if index >= self.size {
            return Err(GuestError::DescIndexOutOfRange {
                queue: self.index,
                index,
                size: self.size,
            });
        }
        ram.write_obj(desc, self.desc_addr(index))
    }

    /// Pushes any head value, even out of range, and publishes it.
    pub(crate) fn push_avail_raw(&mut self, ram: &GuestRam, head: u16) -> Result<(), GuestError> {
        self.push_avail(ram, head)?;
        self.publish(ram)
    }

    /// Stores `idx` into `avail.idx` directly: a jump the device must survive.
    pub(crate) fn set_avail_idx_raw(&mut self, ram: &GuestRam, idx: u16) -> Result<(), GuestError> {
        self.counts_trusted = false;
        ram.store(idx, GuestAddress(self.avail_ring.0 + 2), Ordering::Release)?;
        self.next_avail = idx;
        self.published_avail = idx;
        Ok(())
    }

    /// The used element at ring position `idx`, unchecked: what the device wrote.
    pub(crate) fn used_elem_raw(&self, ram: &GuestRam, idx: u16) -> Result<(u32, u32), GuestError> {
        self.read_used(ram, idx.wrapping_sub(self.last_used))
    }
}
