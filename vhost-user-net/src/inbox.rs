//! Cross-VIF delivery: a VIF's per-queue-pair inboxes, and [`VifPort`], the [`Port`] a VIF
//! attaches to its segment.
//!
//! VIF A's worker never touches VIF B's rings. It copies the frame into B's bounded inbox and,
//! once per burst, wakes B's worker through an eventfd registered on B's epoll; B's own thread
//! then writes its RX ring. So counters stay single-writer, a stuck or broken B costs A at most a
//! counted drop when B's inbox is full, and a guest can only slow down its own worker.
//!
//! An inbox is a double-buffered arena: producers append under a short mutex (a `memcpy` of one
//! frame), the consumer swaps the whole arena for its empty one under the same mutex and delivers
//! outside it. Both arenas are allocated once with fixed capacity, so steady state allocates
//! nothing. A `wake_owed` flag makes at most one eventfd write per consumer drain: the producer
//! that sets it owes the wake-up; the consumer clears it just before swapping.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vif_core::offload::TxOffload;
use vif_core::stats::DropReason;
use vmm_sys_util::eventfd::EventFd;

use crate::port::{Enqueued, FrameRef, Port};

/// Bytes of frames one inbox holds: enough for a burst of 64 KiB TSO frames or thousands of
/// small ones.
pub const INBOX_BYTES: usize = 1 << 20;
/// Frames one inbox holds.
pub const INBOX_FRAMES: usize = 2048;

/// Where one frame sits in an arena.
#[derive(Debug, Clone, Copy)]
struct FrameSlot {
    start: usize,
    len: usize,
    offload: TxOffload,
}

/// Frames back to back in one buffer, with fixed capacity.
pub struct FrameArena {
    bytes: Vec<u8>,
    frames: Vec<FrameSlot>,
    /// Frames before this index were already delivered (the consumer's read cursor).
    cursor: usize,
    /// The receiving VIF's policy already let the frame at `cursor` through: it waits for
    /// guest buffers and must not be judged (nor counted, nor charged tokens) twice.
    head_judged: bool,
}

impl FrameArena {
    pub fn new() -> FrameArena {
        FrameArena {
            bytes: Vec::with_capacity(INBOX_BYTES),
            frames: Vec::with_capacity(INBOX_FRAMES),
            cursor: 0,
            head_judged: false,
        }
    }

    /// Appends a copy of `frame`; `false` if the arena is full (nothing is allocated).
    pub fn push(&mut self, frame: FrameRef<'_>) -> bool {
        let start = self.bytes.len();
        let fits_bytes = start
            .checked_add(frame.bytes.len())
            .is_some_and(|end| end <= INBOX_BYTES);
        if !fits_bytes || self.frames.len() >= INBOX_FRAMES {
            return false;
        }
        self.bytes.extend_from_slice(frame.bytes);
        self.frames.push(FrameSlot {
            start,
            len: frame.bytes.len(),
            offload: frame.offload,
        });
        true
    }

    /// The next undelivered frame.
    pub fn peek(&self) -> Option<FrameRef<'_>> {
        let slot = self.frames.get(self.cursor)?;
        let bytes = self
            .bytes
            .get(slot.start..slot.start.checked_add(slot.len)?)?;
        Some(FrameRef {
            offload: slot.offload,
            bytes,
        })
    }

    /// The next undelivered frame, writable: the receive path completes checksums in place.
    pub fn peek_mut(&mut self) -> Option<(TxOffload, &mut [u8])> {
        let slot = *self.frames.get(self.cursor)?;
        let bytes = self
            .bytes
            .get_mut(slot.start..slot.start.checked_add(slot.len)?)?;
        Some((slot.offload, bytes))
    }

    /// Marks the frame returned by [`FrameArena::peek`] delivered (or dropped).
    pub fn advance(&mut self) {
        self.head_judged = false;
        if self.cursor < self.frames.len() {
            self.cursor += 1;
        }
        if self.cursor == self.frames.len() {
            self.clear();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.cursor >= self.frames.len()
    }

    pub fn len(&self) -> usize {
        self.frames.len().saturating_sub(self.cursor)
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames.clear();
        self.cursor = 0;
        self.head_judged = false;
    }

    /// True once [`FrameArena::mark_head_judged`] was called for the current first frame.
    pub fn head_judged(&self) -> bool {
        self.head_judged
    }

    /// Records that the receive policy passed the first frame; [`FrameArena::advance`] and
    /// [`FrameArena::clear`] forget it.
    pub fn mark_head_judged(&mut self) {
        self.head_judged = !self.is_empty();
    }
}

impl Default for FrameArena {
    fn default() -> Self {
        FrameArena::new()
    }
}

/// The frames waiting for one receive queue of a VIF.
pub struct Inbox {
    pending: Mutex<FrameArena>,
    wake_owed: AtomicBool,
    /// Registered on the epoll of the worker serving this queue pair.
    wake: EventFd,
}

impl Inbox {
    pub fn new(wake: EventFd) -> Inbox {
        Inbox {
            pending: Mutex::new(FrameArena::new()),
            wake_owed: AtomicBool::new(false),
            wake,
        }
    }

    /// Producer side: copies `frame` in. `Err(NoRxBuffer)` when full.
    pub fn push(&self, frame: FrameRef<'_>) -> Result<bool, DropReason> {
        let pushed = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(frame);
        if !pushed {
            return Err(DropReason::NoRxBuffer);
        }
        // Whoever flips the flag owes the consumer one wake-up.
        Ok(!self.wake_owed.swap(true, Ordering::AcqRel))
    }

    /// Consumer side: moves every pending frame into `into`, which must be empty, leaving the
    /// inbox with `into`'s (empty, pre-allocated) buffers.
    pub fn take(&self, into: &mut FrameArena) {
        // Clear first: a frame pushed after this owes a new wake-up, so none is lost.
        self.wake_owed.store(false, Ordering::Release);
        into.clear();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *pending, into);
    }

    /// Writes the wake eventfd. A failure means the counter is saturated (the worker is already
    /// woken) or the fd is gone (the worker is gone); neither needs action.
    pub fn wake(&self) {
        let _ = self.wake.write(1);
    }

    pub fn wake_fd(&self) -> &EventFd {
        &self.wake
    }

    /// Consumes the eventfd's count after a wake-up (non-blocking fd).
    pub fn consume_wake(&self) {
        let _ = self.wake.read();
    }

    /// Drops everything pending (the VIF's frontend went away).
    pub fn discard(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.wake_owed.store(false, Ordering::Release);
    }
}

/// A VIF as a port on its segment: one inbox per queue pair.
pub struct VifPort {
    name: String,
    inboxes: Box<[Inbox]>,
    /// False while no frontend is connected: frames are refused (a counted drop at the sender)
    /// instead of piling up for a guest that is not there.
    serving: AtomicBool,
}

impl VifPort {
    pub fn new(name: &str, inboxes: Vec<Inbox>) -> VifPort {
        VifPort {
            name: name.to_owned(),
            inboxes: inboxes.into_boxed_slice(),
            serving: AtomicBool::new(false),
        }
    }

    pub fn inbox(&self, queue: usize) -> Option<&Inbox> {
        self.inboxes.get(queue)
    }

    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Release);
        if !serving {
            self.inboxes.iter().for_each(Inbox::discard);
        }
    }

    pub fn is_serving(&self) -> bool {
        self.serving.load(Ordering::Acquire)
    }
}

impl Port for VifPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn enqueue(&self, frame: FrameRef<'_>, flow_hint: u16) -> Result<Enqueued, DropReason> {
        if !self.is_serving() {
            return Err(DropReason::PortDown);
        }
        let count = self.inboxes.len().max(1);
        let queue = usize::from(flow_hint) % count;
        let inbox = self.inboxes.get(queue).ok_or(DropReason::PortDown)?;
        match inbox.push(frame)? {
            // `queue < inboxes.len() <= 16`: fits a u16.
            true => Ok(Enqueued::WakeOwed {
                queue: queue as u16,
            }),
            false => Ok(Enqueued::Queued),
        }
    }

    fn wake(&self, queue: u16) {
        if let Some(inbox) = self.inboxes.get(usize::from(queue)) {
            inbox.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(bytes: &[u8]) -> FrameRef<'_> {
        FrameRef {
            offload: TxOffload::None,
            bytes,
        }
    }

    fn inbox() -> Inbox {
        Inbox::new(EventFd::new(libc::EFD_NONBLOCK).unwrap())
    }

    #[test]
    fn arena_is_bounded_and_fifo() {
        let mut arena = FrameArena::new();
        assert!(arena.push(frame(&[1; 100])));
        assert!(arena.push(frame(&[2; 50])));
        assert!(!arena.push(frame(&vec![0; INBOX_BYTES])));
        assert_eq!(arena.len(), 2);
        assert_eq!(arena.peek().unwrap().bytes, &[1; 100][..]);
        arena.advance();
        assert_eq!(arena.peek().unwrap().bytes, &[2; 50][..]);
        arena.advance();
        assert!(arena.is_empty() && arena.peek().is_none());
        for _ in 0..INBOX_FRAMES {
            assert!(arena.push(frame(&[0; 1])));
        }
        assert!(!arena.push(frame(&[0; 1])), "frame count bound");
    }

    #[test]
    fn one_wake_per_drain() {
        let inbox = inbox();
        assert_eq!(
            inbox.push(frame(&[1])),
            Ok(true),
            "first push owes the wake"
        );
        assert_eq!(inbox.push(frame(&[2])), Ok(false));
        let mut local = FrameArena::new();
        inbox.take(&mut local);
        assert_eq!(local.len(), 2);
        assert_eq!(
            inbox.push(frame(&[3])),
            Ok(true),
            "owed again after a drain"
        );
    }

    #[test]
    fn port_refuses_while_not_serving() {
        let port = VifPort::new("b", vec![inbox(), inbox()]);
        assert_eq!(port.enqueue(frame(&[1]), 0), Err(DropReason::PortDown));
        port.set_serving(true);
        assert_eq!(
            port.enqueue(frame(&[1]), 3),
            Ok(Enqueued::WakeOwed { queue: 1 })
        );
        port.wake(1);
        assert_eq!(port.inbox(1).unwrap().wake_fd().read().unwrap(), 1);
        port.set_serving(false);
        let mut local = FrameArena::new();
        port.inbox(1).unwrap().take(&mut local);
        assert!(local.is_empty(), "discarded when the frontend left");
    }
}
