//! Notifications in both directions (VIRTIO 1.2 § 2.7.10, § 2.7.13.4): whether a kick is
//! wanted after publishing, asking for or silencing calls, and sleeping on the call eventfd
//! until the used ring moves or a deadline passes.

use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vm_memory::GuestAddress;
use vmm_sys_util::epoll::EpollEvent;

use super::DriverRing;
use crate::guest::error::GuestError;
use crate::guest::memory::GuestRam;

/// `VRING_AVAIL_F_NO_INTERRUPT` (§ 2.7.7), used when `EVENT_IDX` is off.
const VRING_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// `VRING_USED_F_NO_NOTIFY` (§ 2.7.10), honoured when `EVENT_IDX` is off.
const VRING_USED_F_NO_NOTIFY: u16 = 1;

/// `vring_need_event` (VIRTIO 1.2 § 2.7.10, Linux `include/uapi/linux/virtio_ring.h`): whether
/// moving an index from `old` to `new` crossed `event`.
pub fn vring_need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl DriverRing {
    /// Kicks the device if it wants to hear about the entries published since the last
    /// decision: `avail_event` with `EVENT_IDX`, else `VRING_USED_F_NO_NOTIFY`
    /// (VIRTIO 1.2 § 2.7.13.4 and § 2.7.10). Returns whether it kicked.
    pub fn kick_if_needed(&mut self, ram: &GuestRam) -> Result<bool, GuestError> {
        if self.published_avail == self.last_kick_avail {
            return Ok(false);
        }
        // The idx store must be visible before we read the device's suppression state, or both
        // sides may decide the other will act (Linux `virtqueue_kick_prepare`'s `virtio_mb`).
        fence(Ordering::SeqCst);
        let needed = if self.event_idx {
            let avail_event: u16 = ram.load(self.avail_event_addr(), Ordering::Relaxed)?;
            vring_need_event(avail_event, self.published_avail, self.last_kick_avail)
        } else {
            let flags: u16 = ram.load(self.used_ring, Ordering::Relaxed)?;
            flags & VRING_USED_F_NO_NOTIFY == 0
        };
        self.last_kick_avail = self.published_avail;
        if needed {
            self.kick()?;
        } else {
            self.stats.kicks_suppressed += 1;
        }
        Ok(needed)
    }

    /// Writes the kick eventfd unconditionally.
    pub fn kick(&mut self) -> Result<(), GuestError> {
        self.kick.write(1).map_err(|source| GuestError::Notify {
            op: "kick",
            queue: self.index,
            source,
        })?;
        self.stats.kicks += 1;
        Ok(())
    }

    fn avail_event_addr(&self) -> GuestAddress {
        GuestAddress(self.used_ring.0 + 4 + 8 * u64::from(self.size))
    }

    fn used_event_addr(&self) -> GuestAddress {
        GuestAddress(self.avail_ring.0 + 4 + 2 * u64::from(self.size))
    }

    /// Asks for a call once `after + 1` more elements are used (`used_event`, § 2.7.10), or
    /// clears `VRING_AVAIL_F_NO_INTERRUPT` without `EVENT_IDX`.
    fn enable_interrupts(&mut self, ram: &GuestRam, after: u16) -> Result<(), GuestError> {
        if self.event_idx {
            ram.store(
                self.last_used.wrapping_add(after),
                self.used_event_addr(),
                Ordering::Relaxed,
            )?;
        } else {
            ram.store(0u16, self.avail_ring, Ordering::Relaxed)?;
        }
        // Publish the request before re-reading `used.idx`, or a completion between the two
        // could go unsignalled (Linux `virtqueue_enable_cb`).
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Polling mode: no calls wanted. With `EVENT_IDX` a stale `used_event` already silences the
    /// device, so only the flag needs writing.
    pub(super) fn disable_interrupts(&mut self, ram: &GuestRam) -> Result<(), GuestError> {
        if !self.event_idx {
            ram.store(
                VRING_AVAIL_F_NO_INTERRUPT,
                self.avail_ring,
                Ordering::Relaxed,
            )?;
        }
        Ok(())
    }

    /// Waits until more than `have` used elements are pending, sleeping on the call eventfd;
    /// `Timeout` at `deadline`.
    pub fn wait_used(
        &mut self,
        ram: &GuestRam,
        have: u16,
        deadline: Instant,
        op: &'static str,
        timeout: Duration,
    ) -> Result<(), GuestError> {
        let mut events = [EpollEvent::default(); 1];
        loop {
            if self.pending_used(ram)? > have {
                return Ok(());
            }
            self.enable_interrupts(ram, have)?;
            if self.pending_used(ram)? > have {
                return self.disable_interrupts(ram);
            }
            let now = Instant::now();
            if now >= deadline {
                self.disable_interrupts(ram)?;
                return Err(GuestError::Timeout {
                    op,
                    queue: self.index,
                    timeout,
                });
            }
            let remaining = deadline - now;
            let millis = i32::try_from(remaining.as_millis().saturating_add(1)).unwrap_or(i32::MAX);
            self.stats.sleeps += 1;
            match self.epoll.wait(millis, &mut events) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(GuestError::Notify {
                        op,
                        queue: self.index,
                        source,
                    })
                }
            }
            // Non-blocking: EAGAIN just means the wake-up was for an earlier call.
            let _ = self.call.read();
            self.disable_interrupts(ram)?;
        }
    }
}
