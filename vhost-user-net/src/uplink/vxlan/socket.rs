//! The VTEP's sockets and their batched I/O: every `unsafe` of the VXLAN uplink is here.
//!
//! - Receive: one UDP socket bound to (local address, VXLAN port), read with `recvmmsg(2)` into
//!   a fixed set of slots. The kernel has already checked the outer IP header and the UDP
//!   checksum (and dropped a zero UDP checksum over IPv6, RFC 8200 § 8.1), so each datagram is
//!   a VXLAN header and an inner frame.
//! - Transmit ([`TxMode::Raw`]): a raw IP socket with the header included (`IPPROTO_RAW`, which
//!   implies `IP_HDRINCL` for IPv4 and, since Linux 4.5, `IPV6_HDRINCL` for IPv6), so vif
//!   writes the outer IP and UDP headers itself and each flow gets its own UDP source port
//!   (RFC 7348 § 5: "it is recommended that the UDP source port number be calculated using a
//!   hash of fields from the inner packet"). A UDP socket cannot: its source port is the one it
//!   is bound to. Needs `CAP_NET_RAW`.
//! - Transmit ([`TxMode::Udp`]): without `CAP_NET_RAW`, datagrams leave through the receive
//!   socket, with the VXLAN port as their source port for every flow (still valid VXLAN; the
//!   underlay just cannot spread flows by port).
//!
//! Both directions use `sendmmsg(2)`/`recvmmsg(2)` with one scatter-gather entry for the outer
//! headers and one for the inner frame, so replicated frames share one copy of the payload.

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Most datagrams one `sendmmsg`/`recvmmsg` call handles.
pub const IO_BATCH: usize = 64;
/// Bytes of one receive slot: the largest UDP payload (65535 - 8), rounded up, so no datagram
/// is ever truncated.
pub const RX_SLOT_LEN: usize = 1 << 16;
/// Socket buffer size asked for (best effort, capped by `net.core.[rw]mem_max`).
const SOCKET_BUFFER_BYTES: libc::c_int = 4 << 20;

/// How datagrams leave the VTEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// A raw IP socket; vif writes the outer IP/UDP headers (per-flow source port).
    Raw,
    /// The receive UDP socket; the kernel writes the outer headers (fixed source port).
    Udp,
}

/// A socket address in the kernel's layout, built once per remote.
#[derive(Clone, Copy)]
pub enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    pub fn new(addr: SocketAddr) -> SockAddr {
        match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: sockaddr_in is plain integers; all-zero is a valid value.
                let mut raw: libc::sockaddr_in = unsafe { mem::zeroed() };
                raw.sin_family = libc::AF_INET as libc::sa_family_t;
                raw.sin_port = v4.port().to_be();
                raw.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                SockAddr::V4(raw)
            }
            SocketAddr::V6(v6) => {
                // SAFETY: sockaddr_in6 is plain integers; all-zero is a valid value.
                let mut raw: libc::sockaddr_in6 = unsafe { mem::zeroed() };
                raw.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                raw.sin6_port = v6.port().to_be();
                raw.sin6_addr.s6_addr = v6.ip().octets();
                raw.sin6_flowinfo = v6.flowinfo();
                raw.sin6_scope_id = v6.scope_id();
                SockAddr::V6(raw)
            }
        }
    }

    fn as_raw(&self) -> (*const libc::c_void, libc::socklen_t) {
        match self {
            SockAddr::V4(raw) => (
                (raw as *const libc::sockaddr_in).cast(),
                mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            SockAddr::V6(raw) => (
                (raw as *const libc::sockaddr_in6).cast(),
                mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
            ),
        }
    }
}

impl std::fmt::Debug for SockAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SockAddr::V4(raw) => write!(
                f,
                "{}",
                SocketAddrV4::new(
                    raw.sin_addr.s_addr.to_ne_bytes().into(),
                    u16::from_be(raw.sin_port)
                )
            ),
            SockAddr::V6(raw) => write!(
                f,
                "{}",
                SocketAddrV6::new(
                    raw.sin6_addr.s6_addr.into(),
                    u16::from_be(raw.sin6_port),
                    raw.sin6_flowinfo,
                    raw.sin6_scope_id
                )
            ),
        }
    }
}

/// Reads the address the kernel wrote into `storage` (`len` bytes); `None` for another family
/// or a short address.
fn parse_sockaddr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    let len = usize::try_from(len).ok()?;
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, which fits inside
            // sockaddr_storage and has a weaker alignment.
            let raw =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                raw.sin_addr.s_addr.to_ne_bytes().into(),
                u16::from_be(raw.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let raw = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                raw.sin6_addr.s6_addr.into(),
                u16::from_be(raw.sin6_port),
                raw.sin6_flowinfo,
                raw.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and the length passed is its size; the kernel only reads.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(ret).map(drop)
}

/// `SO_BINDTODEVICE`: only traffic of `interface` (the model checked the name's length).
fn bind_to_device(fd: RawFd, interface: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `interface`'s bytes, which outlive the call; the
    // kernel copies at most IFNAMSIZ of them and does not need a terminator when given a length.
    let ret = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            interface.as_ptr().cast(),
            libc::socklen_t::try_from(interface.len()).unwrap_or(libc::socklen_t::MAX),
        )
    };
    cvt(ret).map(drop)
}

/// The receive socket: UDP bound to `local`, non-blocking, optionally bound to `interface`.
pub fn bind_udp(local: SocketAddr, interface: Option<&str>) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(local)?;
    socket.set_nonblocking(true)?;
    let fd = socket.as_raw_fd();
    if let Some(interface) = interface {
        bind_to_device(fd, interface)?;
    }
    // Best effort: bursts from many remotes queue here while the receive thread works.
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, SOCKET_BUFFER_BYTES);
    let _ = set_int_option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, SOCKET_BUFFER_BYTES);
    if local.is_ipv4() {
        // In TxMode::Udp, set DF as the raw path does (RFC 7348 § 5 leaves fragmentation to the
        // underlay design; vif never fragments).
        let _ = set_int_option(
            fd,
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
        );
    }
    Ok(socket)
}

/// The transmit socket for [`TxMode::Raw`]: a non-blocking raw IP socket of `family`'s family
/// with the IP header included.
pub fn raw_tx(family: IpAddr, interface: Option<&str>) -> io::Result<OwnedFd> {
    let domain = match family {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = cvt(unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(interface) = interface {
        bind_to_device(owned.as_raw_fd(), interface)?;
    }
    let _ = set_int_option(
        owned.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_SNDBUF,
        SOCKET_BUFFER_BYTES,
    );
    Ok(owned)
}

/// Waits until one of `fds` is readable (or in error), at most `timeout`; returns which.
/// An interrupted wait returns none. (Raw fds: `poll` reports a closed one as `POLLNVAL`, it
/// never touches memory through them.)
pub fn wait_readable(fds: [RawFd; 2], timeout: Duration) -> io::Result<[bool; 2]> {
    let mut pollfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    let timeout_ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pollfds` is a live array of two pollfd; the kernel writes only `revents`.
    let ret = unsafe { libc::poll(pollfds.as_mut_ptr(), 2, timeout_ms) };
    match cvt(ret) {
        Ok(_) => Ok(pollfds.map(|p| p.revents != 0)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok([false, false]),
        Err(e) => Err(e),
    }
}

/// One datagram to send: outer headers then the inner frame, to `to`.
#[derive(Debug, Clone, Copy)]
pub struct OutMsg<'a> {
    pub to: &'a SockAddr,
    pub header: &'a [u8],
    pub payload: &'a [u8],
}

/// Sends up to [`IO_BATCH`] datagrams from `msgs` with one `sendmmsg(2)` (non-blocking);
/// returns how many the kernel took, at least 1 when `msgs` is not empty. An error means the
/// first datagram failed.
pub fn send_batch<'a>(
    fd: BorrowedFd<'_>,
    msgs: impl IntoIterator<Item = OutMsg<'a>>,
) -> io::Result<usize> {
    // SAFETY: iovec and mmsghdr are plain structs; all-zero is valid (null pointers, zero
    // lengths) and every entry passed to the kernel is filled in first.
    let mut iovecs: [[libc::iovec; 2]; IO_BATCH] = unsafe { mem::zeroed() };
    // SAFETY: as above.
    let mut headers: [libc::mmsghdr; IO_BATCH] = unsafe { mem::zeroed() };
    let mut count = 0;
    for ((msg, iov), hdr) in msgs
        .into_iter()
        .zip(iovecs.iter_mut())
        .zip(headers.iter_mut())
    {
        // The kernel only reads through these pointers (sendmsg's iovecs and name are input).
        iov[0] = libc::iovec {
            iov_base: msg.header.as_ptr() as *mut libc::c_void,
            iov_len: msg.header.len(),
        };
        iov[1] = libc::iovec {
            iov_base: msg.payload.as_ptr() as *mut libc::c_void,
            iov_len: msg.payload.len(),
        };
        let (name, name_len) = msg.to.as_raw();
        hdr.msg_hdr.msg_name = name as *mut libc::c_void;
        hdr.msg_hdr.msg_namelen = name_len;
        hdr.msg_hdr.msg_iov = iov.as_mut_ptr();
        hdr.msg_hdr.msg_iovlen = 2;
        count += 1;
    }
    if count == 0 {
        return Ok(0);
    }
    // SAFETY: `headers[..count]` are initialised above; each points at its own two iovecs and
    // at a socket address, borrowed from the `msgs` items (lifetime 'a, outliving the call)
    // and `iovecs`. The kernel writes only `msg_len` of each header.
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    let sent = cvt(sent)?;
    Ok(usize::try_from(sent).unwrap_or(0))
}

/// Preallocated receive slots for `recvmmsg(2)`, owned by the receive thread.
pub struct RecvSlots {
    buffers: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    addr_lens: Box<[libc::socklen_t]>,
    lens: Box<[usize]>,
    truncated: Box<[bool]>,
    filled: usize,
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The sender; `None` if the kernel gave an address of another family (never expected).
    pub from: Option<SocketAddr>,
    pub payload: &'a [u8],
    /// Longer than a slot: the payload is cut and must be dropped.
    pub truncated: bool,
}

impl RecvSlots {
    pub fn new(slots: usize) -> RecvSlots {
        let slots = slots.clamp(1, IO_BATCH);
        RecvSlots {
            buffers: vec![0u8; slots * RX_SLOT_LEN].into_boxed_slice(),
            // SAFETY: sockaddr_storage is plain integers; all-zero is valid.
            addrs: (0..slots).map(|_| unsafe { mem::zeroed() }).collect(),
            addr_lens: vec![0; slots].into_boxed_slice(),
            lens: vec![0; slots].into_boxed_slice(),
            truncated: vec![false; slots].into_boxed_slice(),
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.lens.len()
    }

    /// Reads up to [`capacity`](Self::capacity) datagrams without blocking; returns how many
    /// (0 when none is waiting).
    pub fn recv(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        self.filled = 0;
        let count = self.capacity();
        // SAFETY: plain structs, all-zero valid; the used entries are filled in below.
        let mut iovecs: [libc::iovec; IO_BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut headers: [libc::mmsghdr; IO_BATCH] = unsafe { mem::zeroed() };
        let chunks = self.buffers.chunks_exact_mut(RX_SLOT_LEN);
        for (((chunk, iov), hdr), (addr, addr_len)) in chunks
            .zip(iovecs.iter_mut())
            .zip(headers.iter_mut())
            .zip(self.addrs.iter_mut().zip(self.addr_lens.iter_mut()))
        {
            *iov = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            *addr_len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
            hdr.msg_hdr.msg_namelen = *addr_len;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `headers[..count]` each point at one slot of `buffers` (RX_SLOT_LEN bytes)
        // and at one `sockaddr_storage` with its size as namelen; all are owned by `self` or
        // this frame and outlive the call. The kernel writes at most those lengths.
        let received = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                headers.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let received = match cvt(received) {
            Ok(n) => usize::try_from(n).unwrap_or(0).min(count),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        for (i, hdr) in headers.iter().take(received).enumerate() {
            let len = usize::try_from(hdr.msg_len).unwrap_or(usize::MAX);
            if let (Some(l), Some(a), Some(t)) = (
                self.lens.get_mut(i),
                self.addr_lens.get_mut(i),
                self.truncated.get_mut(i),
            ) {
                *l = len.min(RX_SLOT_LEN);
                *a = hdr.msg_hdr.msg_namelen;
                *t = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len > RX_SLOT_LEN;
            }
        }
        self.filled = received;
        Ok(received)
    }

    /// Datagram `index` of the last [`recv`](Self::recv).
    pub fn datagram(&self, index: usize) -> Option<Datagram<'_>> {
        if index >= self.filled {
            return None;
        }
        let len = *self.lens.get(index)?;
        let start = index.checked_mul(RX_SLOT_LEN)?;
        let payload = self.buffers.get(start..start.checked_add(len)?)?;
        let from = parse_sockaddr(self.addrs.get(index)?, *self.addr_lens.get(index)?);
        Some(Datagram {
            from,
            payload,
            truncated: *self.truncated.get(index)?,
        })
    }

    /// Datagrams of the last receive.
    pub fn len(&self) -> usize {
        self.filled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::os::fd::AsFd;

    #[test]
    fn sockaddr_round_trips() {
        for addr in [
            SocketAddr::from((Ipv4Addr::new(192, 0, 2, 7), 4789)),
            SocketAddr::from(("2001:db8::7".parse::<Ipv6Addr>().unwrap(), 8472)),
        ] {
            let raw = SockAddr::new(addr);
            // SAFETY (test): zeroed storage, then the raw address copied into its front.
            let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
            let (ptr, len) = raw.as_raw();
            // SAFETY (test): `len` bytes are readable at `ptr` and fit in `storage`.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    ptr.cast::<u8>(),
                    (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                    len as usize,
                )
            };
            assert_eq!(parse_sockaddr(&storage, len), Some(addr));
            assert_eq!(parse_sockaddr(&storage, len - 1), None, "short address");
            assert_eq!(format!("{raw:?}"), addr.to_string());
        }
    }

    /// Loopback UDP in this process: sendmmsg with two iovecs arrives as one datagram each,
    /// with the sender's address.
    #[test]
    fn batched_loopback_round_trip() {
        let rx = bind_udp((Ipv4Addr::LOCALHOST, 0).into(), None).unwrap();
        let tx = bind_udp((Ipv4Addr::LOCALHOST, 0).into(), None).unwrap();
        let to = SockAddr::new(rx.local_addr().unwrap());
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|n| vec![n; 100 + usize::from(n)]).collect();
        let msgs: Vec<OutMsg<'_>> = payloads
            .iter()
            .map(|p| OutMsg {
                to: &to,
                header: b"hdr!",
                payload: p,
            })
            .collect();
        assert_eq!(send_batch(tx.as_fd(), msgs.iter().copied()).unwrap(), 5);
        let mut slots = RecvSlots::new(8);
        let mut got = Vec::new();
        // Loopback delivery is synchronous with the send: everything is queued already.
        while got.len() < 5 {
            let n = slots.recv(rx.as_fd()).unwrap();
            assert!(n > 0, "datagrams queued on loopback");
            for i in 0..n {
                let d = slots.datagram(i).unwrap();
                assert!(!d.truncated);
                assert_eq!(d.from, Some(tx.local_addr().unwrap()));
                got.push(d.payload.to_vec());
            }
        }
        for (n, payload) in got.iter().enumerate() {
            assert_eq!(&payload[..4], b"hdr!");
            assert_eq!(&payload[4..], &payloads[n][..]);
        }
        assert_eq!(
            slots.recv(rx.as_fd()).unwrap(),
            0,
            "nothing left, no blocking"
        );
        assert!(slots.datagram(0).is_none());
    }
}
