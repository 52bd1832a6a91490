//! The AF_PACKET socket of a VLAN parent interface, and batched I/O on it.
//!
//! One `SOCK_RAW` packet socket per parent (packet(7)) carries every VID of that parent: frames
//! are sent whole, tag included, with `sendmmsg(2)`, and received in batches with `recvmmsg(2)`,
//! so steady state costs one system call per batch, not per frame. The socket:
//!
//! - is created with protocol 0 (receives nothing) and only then bound to the parent with
//!   `ETH_P_ALL`, so no frame of another interface is ever queued on it;
//! - asks for `PACKET_AUXDATA`: on receive, Linux usually moves the 802.1Q tag out of the frame
//!   into the skb (`skb_vlan_untag` in `__netif_receive_skb_core`, or the NIC's VLAN stripping),
//!   and the tag then only reaches a packet socket as `tp_vlan_tci` in that ancillary data
//!   (`TP_STATUS_VLAN_VALID`). A frame whose tag stayed in the data is handled too (see
//!   `rx.rs`);
//! - sets `PACKET_IGNORE_OUTGOING` (Linux 4.20): frames the host itself sends on the parent are
//!   not looped back to it; `rx.rs` also checks `sll_pkttype` for older kernels;
//! - puts the parent in promiscuous mode (`PACKET_MR_PROMISC`, reference counted by the kernel
//!   and dropped when the socket closes), because the guests' MACs are not the parent's.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Frames per `sendmmsg`/`recvmmsg` call.
pub const BATCH: usize = 64;
/// Socket buffer sizes asked for (best effort; capped by `net.core.{r,w}mem_max` unless root).
const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;
/// Room for a `cmsghdr` and a `tpacket_auxdata`, with alignment slack.
const CONTROL_LEN: usize = 64;

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// `setsockopt` with a plain value.
fn set_option<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(last_error())
    }
}

/// `ETH_P_ALL` in network byte order, as `sll_protocol` and `socket(2)` take it.
fn eth_p_all_be() -> u16 {
    (libc::ETH_P_ALL as u16).to_be()
}

/// An AF_PACKET socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    /// The interface's MTU when the socket was opened.
    mtu: u32,
}

impl PacketSocket {
    /// Opens and binds the socket of `ifname`. Needs `CAP_NET_RAW`.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        let name = std::ffi::CString::new(ifname)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: `name` is a valid NUL-terminated string for the duration of the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(last_error());
        }
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "ifindex out of range"))?;
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(last_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        set_option(fd.as_fd(), libc::SOL_PACKET, libc::PACKET_AUXDATA, &one)?;
        // Older kernels lack it; rx.rs filters PACKET_OUTGOING itself.
        let _ = set_option(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
        );
        let _ = set_option(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &SOCKET_BUFFER_BYTES,
        );
        let _ = set_option(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &SOCKET_BUFFER_BYTES,
        );
        let promisc = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        set_option(
            fd.as_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            &promisc,
        )?;
        // SAFETY: all-zero is a valid sockaddr_ll; the fields that matter are set next.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = eth_p_all_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a valid sockaddr_ll and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last_error());
        }
        let mtu = interface_mtu(fd.as_fd(), ifname)?;
        Ok(PacketSocket { fd, ifindex, mtu })
    }

    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// Sends `frames` with as few `sendmmsg` calls as it takes, never blocking. Returns how
    /// many were sent and, if it stopped early, why (`EAGAIN`/`ENOBUFS`: the parent's queue is
    /// full; the rest are the caller's to count as dropped).
    pub fn send_frames<'a>(
        &self,
        frames: impl ExactSizeIterator<Item = &'a [u8]>,
    ) -> (usize, Option<io::Error>) {
        let mut sent = 0usize;
        let mut frames = frames.peekable();
        while frames.peek().is_some() {
            // SAFETY: all-zero iovec/mmsghdr are valid (null pointers, zero lengths).
            let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
            // SAFETY: as above.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            let mut count = 0usize;
            for (iov, msg) in iovecs.iter_mut().zip(msgs.iter_mut()) {
                let Some(frame) = frames.next() else { break };
                iov.iov_base = frame.as_ptr().cast_mut().cast();
                iov.iov_len = frame.len();
                msg.msg_hdr.msg_iov = iov;
                msg.msg_hdr.msg_iovlen = 1;
                count += 1;
            }
            let mut at = 0usize;
            while at < count {
                let Some(pending) = msgs.get_mut(at..count) else {
                    break;
                };
                // SAFETY: `pending` holds `pending.len()` initialised headers, each pointing at
                // one iovec of `iovecs` that points into a frame borrowed for this call; the
                // kernel only reads them (and writes `msg_len`).
                let rc = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        pending.as_mut_ptr(),
                        pending.len() as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if rc < 0 {
                    let error = last_error();
                    if error.kind() == io::ErrorKind::Interrupted {
                        continue;
                    }
                    return (sent, Some(error));
                }
                let done = rc as usize;
                if done == 0 {
                    return (sent, Some(io::Error::from(io::ErrorKind::WouldBlock)));
                }
                at += done;
                sent += done;
            }
        }
        (sent, None)
    }

    /// Receives up to [`BATCH`] frames into `batch`, never blocking. Returns how many.
    pub fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        batch.prepare();
        loop {
            // SAFETY: `batch.msgs` holds BATCH headers whose buffers (frame slots, control
            // buffers, addresses) live in `batch` and are sized as the headers say; `prepare`
            // reset the lengths the kernel overwrote last time.
            let rc = unsafe {
                libc::recvmmsg(
                    self.fd.as_raw_fd(),
                    batch.msgs.as_mut_ptr(),
                    BATCH as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if rc >= 0 {
                batch.received = rc as usize;
                return Ok(batch.received);
            }
            let error = last_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    batch.received = 0;
                    return Ok(0);
                }
                _ => return Err(error),
            }
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// `SIOCGIFMTU` on any socket.
fn interface_mtu(fd: BorrowedFd<'_>, ifname: &str) -> io::Result<u32> {
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req
        .ifr_name
        .iter_mut()
        .zip(ifname.bytes().take(libc::IFNAMSIZ - 1))
    {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq with a NUL-terminated name; SIOCGIFMTU writes ifru_mtu.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFMTU, &mut req) };
    if rc != 0 {
        return Err(last_error());
    }
    // SAFETY: the ioctl succeeded, so the union holds ifru_mtu.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "negative MTU"))
}

/// What the kernel says about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Bytes of the frame in its slot.
    pub len: usize,
    /// The frame was longer than its slot and was cut (`MSG_TRUNC`).
    pub truncated: bool,
    /// `sll_pkttype` (`PACKET_HOST`, `PACKET_OTHERHOST`, `PACKET_OUTGOING`, …).
    pub pkttype: u8,
    /// The 802.1Q tag the kernel took out of the frame, as `(tpid, tci)`.
    pub stripped_tag: Option<(u16, u16)>,
}

/// Preallocated buffers for one `recvmmsg` batch. Built on the thread that uses it: it holds
/// raw pointers into its own heap buffers, which do not move when the struct does.
pub struct RecvBatch {
    slot_len: usize,
    frames: Vec<u8>,
    control: Vec<u8>,
    addrs: Vec<libc::sockaddr_ll>,
    iovecs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    received: usize,
}

impl RecvBatch {
    /// Slots of `slot_len` bytes each.
    pub fn new(slot_len: usize) -> RecvBatch {
        // SAFETY: all-zero sockaddr_ll/iovec/mmsghdr are valid values.
        let zero_addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        let mut batch = RecvBatch {
            slot_len,
            frames: vec![0; slot_len.saturating_mul(BATCH)],
            control: vec![0; CONTROL_LEN * BATCH],
            addrs: vec![zero_addr; BATCH],
            // SAFETY: as above.
            iovecs: vec![unsafe { std::mem::zeroed() }; BATCH],
            // SAFETY: as above.
            msgs: vec![unsafe { std::mem::zeroed() }; BATCH],
            received: 0,
        };
        let RecvBatch {
            frames,
            control,
            addrs,
            iovecs,
            msgs,
            ..
        } = &mut batch;
        let slots = frames.chunks_exact_mut(slot_len.max(1));
        let controls = control.chunks_exact_mut(CONTROL_LEN);
        let per_message = iovecs.iter_mut().zip(msgs.iter_mut()).zip(addrs.iter_mut());
        for (((iov, msg), addr), (slot, control)) in per_message.zip(slots.zip(controls)) {
            // The pointers stay valid while `batch` lives: they point into its own heap
            // buffers, which are never resized.
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            msg.msg_hdr.msg_iov = iov;
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_control = control.as_mut_ptr().cast();
            msg.msg_hdr.msg_name = (addr as *mut libc::sockaddr_ll).cast();
        }
        batch
    }

    /// Resets what the kernel overwrites on every call.
    fn prepare(&mut self) {
        for msg in &mut self.msgs {
            msg.msg_hdr.msg_controllen = CONTROL_LEN;
            msg.msg_hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            msg.msg_hdr.msg_flags = 0;
            msg.msg_len = 0;
        }
        self.received = 0;
    }

    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Frames in the last batch.
    pub fn len(&self) -> usize {
        self.received
    }

    pub fn is_empty(&self) -> bool {
        self.received == 0
    }

    /// Frame `i` of the last batch: its slot (writable, for popping a tag in place) and what
    /// the kernel said about it.
    pub fn frame_mut(&mut self, i: usize) -> Option<(&mut [u8], Received)> {
        if i >= self.received {
            return None;
        }
        let msg = self.msgs.get(i)?;
        let len = (msg.msg_len as usize).min(self.slot_len);
        let truncated = msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        let control_len = msg.msg_hdr.msg_controllen.min(CONTROL_LEN);
        let control_start = i.checked_mul(CONTROL_LEN)?;
        let control = self
            .control
            .get(control_start..control_start.checked_add(control_len)?)?;
        let stripped_tag = parse_auxdata(control);
        let pkttype = self.addrs.get(i)?.sll_pkttype;
        let start = i.checked_mul(self.slot_len)?;
        let slot = self.frames.get_mut(start..start.checked_add(len)?)?;
        Some((
            slot,
            Received {
                len,
                truncated,
                pkttype,
                stripped_tag,
            },
        ))
    }
}

/// The stripped tag in a control buffer holding a `PACKET_AUXDATA` message, if the kernel set
/// `TP_STATUS_VLAN_VALID`. A `tp_vlan_tpid` of 0 (no `TP_STATUS_VLAN_TPID_VALID`, kernels
/// before 3.14) means 802.1Q.
pub fn parse_auxdata(control: &[u8]) -> Option<(u16, u16)> {
    // cmsghdr: cmsg_len (size_t), cmsg_level (int), cmsg_type (int); data at CMSG_ALIGN of it.
    let word = size_of::<usize>();
    let header_len = size_of::<libc::cmsghdr>().next_multiple_of(word);
    let mut at = 0usize;
    while let Some(header) = control.get(at..at.checked_add(header_len)?) {
        let len = usize::from_ne_bytes(header.get(..word)?.try_into().ok()?);
        let level = i32::from_ne_bytes(header.get(word..word + 4)?.try_into().ok()?);
        let kind = i32::from_ne_bytes(header.get(word + 4..word + 8)?.try_into().ok()?);
        if len < header_len {
            return None;
        }
        let data = control.get(at + header_len..at.checked_add(len)?)?;
        if level == libc::SOL_PACKET && kind == libc::PACKET_AUXDATA {
            return auxdata_tag(data);
        }
        at = at.checked_add(len.next_multiple_of(word))?;
    }
    None
}

/// `struct tpacket_auxdata`: tp_status u32, tp_len u32, tp_snaplen u32, tp_mac u16, tp_net
/// u16, tp_vlan_tci u16, tp_vlan_tpid u16.
fn auxdata_tag(data: &[u8]) -> Option<(u16, u16)> {
    let status = u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?);
    if status & libc::TP_STATUS_VLAN_VALID == 0 {
        return None;
    }
    let tci = u16::from_ne_bytes(data.get(16..18)?.try_into().ok()?);
    let tpid = u16::from_ne_bytes(data.get(18..20)?.try_into().ok()?);
    let tpid_valid = status & libc::TP_STATUS_VLAN_TPID_VALID != 0 && tpid != 0;
    Some((if tpid_valid { tpid } else { 0x8100 }, tci))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A control buffer as Linux lays out one PACKET_AUXDATA message on x86_64 (cmsghdr of 16
    /// bytes, then the 20-byte tpacket_auxdata), built by hand from packet(7) and
    /// include/uapi/linux/if_packet.h.
    fn control(status: u32, tci: u16, tpid: u16) -> Vec<u8> {
        let mut c = Vec::new();
        c.extend_from_slice(&(16usize + 20).to_ne_bytes());
        c.extend_from_slice(&libc::SOL_PACKET.to_ne_bytes());
        c.extend_from_slice(&libc::PACKET_AUXDATA.to_ne_bytes());
        for word in [status, 60, 60] {
            c.extend_from_slice(&word.to_ne_bytes());
        }
        for half in [0u16, 14, tci, tpid] {
            c.extend_from_slice(&half.to_ne_bytes());
        }
        c.resize(40, 0);
        c
    }

    #[test]
    fn reads_the_stripped_tag() {
        let valid = libc::TP_STATUS_VLAN_VALID | libc::TP_STATUS_VLAN_TPID_VALID;
        assert_eq!(
            parse_auxdata(&control(valid, 0xa064, 0x8100)),
            Some((0x8100, 0xa064))
        );
        assert_eq!(
            parse_auxdata(&control(valid, 0x0005, 0x88a8)),
            Some((0x88a8, 5))
        );
        // No TPID_VALID: an old kernel, 802.1Q.
        let old = libc::TP_STATUS_VLAN_VALID;
        assert_eq!(parse_auxdata(&control(old, 7, 0)), Some((0x8100, 7)));
        assert_eq!(
            parse_auxdata(&control(0, 0xa064, 0x8100)),
            None,
            "no tag stripped"
        );
        assert_eq!(parse_auxdata(&[]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_control_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_auxdata(&bytes);
        }
    }
}
