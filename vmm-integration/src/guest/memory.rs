//! Guest RAM: one memfd-backed region shared with the backend, and a bump allocator for rings
//! and buffers inside it.
//!
//! vhost-user passes guest memory as file descriptors in `SET_MEM_TABLE` (vhost-user spec,
//! "Memory regions"), so the RAM must be a shareable file: a memfd mapped `MAP_SHARED` by
//! vm-memory's `MmapRegion::from_file`. The backend maps the same pages; everything the guest
//! writes is visible to it. Pages are allocated lazily by the kernel, so a large region costs
//! only what is touched.
//!
//! The allocator never frees: rings and buffers live as long as the guest, and a fresh
//! reconnect reuses them. All accesses go through vm-memory's bounds-checked `Bytes` accessors,
//! on the one region directly: `GuestMemoryMmap`'s region lookup costs ten times the access
//! itself on the per-packet paths.

use std::fs::File;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{
    AtomicAccess, ByteValued, Bytes, FileOffset, GuestAddress, GuestMemoryError, GuestMemoryMmap,
    GuestRegionMmap, MemoryRegionAddress,
};

use super::error::GuestError;

/// The guest's RAM: a single memfd region at `[base, base + size)`.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMemoryMmap,
    /// The single region of `mem`, for lookup-free accesses.
    region: Arc<GuestRegionMmap>,
    base: u64,
    size: u64,
    /// Offset from `base` of the first byte not yet handed out.
    next_free: u64,
}

impl GuestRam {
    /// Creates `size` bytes of memfd-backed RAM at guest-physical `base`.
    pub fn new(base: u64, size: u64) -> Result<GuestRam, GuestError> {
        let map_err = |reason: String| GuestError::GuestMemoryMap { base, size, reason };
        let len = usize::try_from(size).map_err(|_| map_err("size exceeds usize".into()))?;
        if size == 0 || base.checked_add(size).is_none() {
            return Err(map_err("empty or wrapping range".into()));
        }
        let file = memfd(size)?;
        file.set_len(size)
            .map_err(|source| GuestError::MemfdCreate { size, source })?;
        let region =
            GuestRegionMmap::from_range(GuestAddress(base), len, Some(FileOffset::new(file, 0)))
                .map_err(|e| map_err(e.to_string()))?;
        let region = Arc::new(region);
        let mem = GuestMemoryMmap::from_arc_regions(vec![region.clone()])
            .map_err(|e| map_err(e.to_string()))?;
        Ok(GuestRam {
            mem,
            region,
            base,
            size,
            next_free: 0,
        })
    }

    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// One past the last guest-physical address of RAM.
    pub fn end(&self) -> u64 {
        self.base + self.size
    }

    /// Bytes not yet handed out by [`GuestRam::alloc`].
    pub fn available(&self) -> u64 {
        self.size - self.next_free
    }

    /// Hands out `len` bytes aligned to `align` (a power of two), zero-filled by the kernel on
    /// first touch.
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<GuestAddress, GuestError> {
        let exhausted = || GuestError::OutOfGuestMemory {
            requested: len,
            align,
            available: self.available(),
            size: self.size,
        };
        if !align.is_power_of_two() {
            return Err(exhausted());
        }
        // `base` is page-aligned in practice, but align the absolute address anyway.
        let start = (self.base + self.next_free)
            .checked_next_multiple_of(align)
            .ok_or_else(exhausted)?;
        let end = start.checked_add(len).ok_or_else(exhausted)?;
        if end > self.end() {
            return Err(exhausted());
        }
        self.next_free = end - self.base;
        Ok(GuestAddress(start))
    }

    /// The region as `SET_MEM_TABLE` describes it: GPA, size, our mapping's address and the fd.
    pub fn region_info(&self) -> Result<VhostUserMemoryRegionInfo, GuestError> {
        VhostUserMemoryRegionInfo::from_guest_region(&self.region).map_err(|source| {
            GuestError::Vhost {
                request: "SET_MEM_TABLE",
                source,
            }
        })
    }

    /// Our process's address of `addr`: vring addresses in `SET_VRING_ADDR` are front-end
    /// virtual addresses (vhost-user spec, "Vring address description").
    pub fn host_address(&self, addr: GuestAddress) -> Result<u64, GuestError> {
        use vm_memory::GuestMemoryBackend;
        self.mem
            .get_host_address(addr)
            .map(|ptr| ptr as u64)
            .map_err(|source| access_err(addr, 0, source))
    }

    /// `addr` as an offset into the region; out-of-range addresses fail in the accessor.
    #[inline]
    fn offset(&self, addr: GuestAddress) -> MemoryRegionAddress {
        // An address below `base` wraps to a huge offset, which the region rejects.
        MemoryRegionAddress(addr.0.wrapping_sub(self.base))
    }

    #[inline]
    pub fn write(&self, addr: GuestAddress, bytes: &[u8]) -> Result<(), GuestError> {
        self.region
            .write_slice(bytes, self.offset(addr))
            .map_err(|source| access_err(addr, bytes.len(), source))
    }

    #[inline]
    pub fn read(&self, addr: GuestAddress, out: &mut [u8]) -> Result<(), GuestError> {
        self.region
            .read_slice(out, self.offset(addr))
            .map_err(|source| access_err(addr, out.len(), source))
    }

    #[inline]
    pub fn write_obj<T: ByteValued>(&self, value: T, addr: GuestAddress) -> Result<(), GuestError> {
        self.region
            .write_obj(value, self.offset(addr))
            .map_err(|source| access_err(addr, size_of::<T>(), source))
    }

    #[inline]
    pub fn read_obj<T: ByteValued>(&self, addr: GuestAddress) -> Result<T, GuestError> {
        self.region
            .read_obj(self.offset(addr))
            .map_err(|source| access_err(addr, size_of::<T>(), source))
    }

    /// Atomic store, for ring indices the device reads concurrently (VIRTIO 1.2 § 2.7.13).
    #[inline]
    pub fn store<T: AtomicAccess>(
        &self,
        value: T,
        addr: GuestAddress,
        order: Ordering,
    ) -> Result<(), GuestError> {
        self.region
            .store(value, self.offset(addr), order)
            .map_err(|source| access_err(addr, size_of::<T>(), source))
    }

    /// Atomic load, for ring indices the device writes concurrently.
    #[inline]
    pub fn load<T: AtomicAccess>(
        &self,
        addr: GuestAddress,
        order: Ordering,
    ) -> Result<T, GuestError> {
        self.region
            .load(self.offset(addr), order)
            .map_err(|source| access_err(addr, size_of::<T>(), source))
    }

    /// Zeroes `len` bytes at `addr` (ring reset on a fresh reconnect).
    pub fn zero(&self, addr: GuestAddress, len: usize) -> Result<(), GuestError> {
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(CHUNK.len());
            self.write(GuestAddress(addr.0.wrapping_add(done as u64)), &CHUNK[..n])?;
            done += n;
        }
        Ok(())
    }
}

#[cold]
pub(crate) fn access_err(addr: GuestAddress, len: usize, source: GuestMemoryError) -> GuestError {
    GuestError::MemoryAccess {
        addr: addr.0,
        len,
        source,
    }
}

/// An anonymous, shareable file of `size` bytes' worth of name: `memfd_create(2)`.
fn memfd(size: u64) -> Result<File, GuestError> {
    // SAFETY: the name is a valid NUL-terminated C string that outlives the call, and the flags
    // are a valid combination; memfd_create has no other preconditions. The result is checked.
    let fd = unsafe { libc::memfd_create(c"vif-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(GuestError::MemfdCreate {
            size,
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: `fd` was just returned by memfd_create, is open, and nothing else owns it, so the
    // OwnedFd becomes its only owner and closes it exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_aligns_and_stops_at_the_end() {
        let mut ram = GuestRam::new(0x10_0000, 0x2000).unwrap();
        let a = ram.alloc(3, 1).unwrap();
        assert_eq!(a.0, 0x10_0000);
        let b = ram.alloc(16, 16).unwrap();
        assert_eq!(b.0, 0x10_0010);
        assert!(matches!(
            ram.alloc(0x2000, 16),
            Err(GuestError::OutOfGuestMemory { .. })
        ));
        assert!(ram.alloc(u64::MAX, 16).is_err());
        assert!(ram.alloc(1, 3).is_err());
    }

    #[test]
    fn memory_is_shared_through_the_fd() {
        let ram = GuestRam::new(0x10_0000, 0x1000).unwrap();
        ram.write(GuestAddress(0x10_0100), b"vif").unwrap();
        let info = ram.region_info().unwrap();
        assert_eq!(
            (info.guest_phys_addr, info.memory_size),
            (0x10_0000, 0x1000)
        );
        // Map the same file a second time, as the backend does, and read the bytes back.
        use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
        let region = ram.memory().find_region(GuestAddress(0x10_0000)).unwrap();
        let file = region.file_offset().unwrap().file().try_clone().unwrap();
        assert!(info.mmap_handle >= 0);
        let peer = GuestMemoryMmap::<()>::from_ranges_with_files([(
            GuestAddress(0),
            0x1000,
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap();
        let mut got = [0u8; 3];
        peer.read_slice(&mut got, GuestAddress(0x100)).unwrap();
        assert_eq!(&got, b"vif");
        assert!(ram.write(GuestAddress(0x10_0ffe), b"abc").is_err());
        assert!(ram.read_obj::<u64>(GuestAddress(0)).is_err());
    }
}
