//! A small blocking `NETLINK_ROUTE` socket: one request, then its ack, error or data reply,
//! matched by sequence number (netlink(7)).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::parse::{ne_u32, parse_error, parse_vf_reports};
use super::*;

/// A blocking `NETLINK_ROUTE` socket for control-plane requests.
pub struct RtNetlink {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl RtNetlink {
    pub fn open() -> Result<RtNetlink, NetlinkError> {
        // SAFETY: socket(2) with constant arguments; the result is checked before use.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(NetlinkError::Socket(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // Best effort: a capped ack with the kernel's reason in it. Kernels before 4.12 lack
        // extended acks; errors then carry only the errno.
        for option in [NETLINK_CAP_ACK, NETLINK_EXT_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: `one` outlives the call and its size is passed.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    option,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(RtNetlink {
            fd,
            seq: std::process::id().wrapping_mul(0x9e37_79b9),
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Sends `request` (a message from this module) with a fresh sequence number and returns
    /// the reply with that number: `Ok(None)` for an ack, `Ok(Some(message))` for data.
    fn transact(
        &mut self,
        request_name: &'static str,
        request: &mut [u8],
    ) -> Result<Option<Vec<u8>>, NetlinkError> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        if let Some(field) = request.get_mut(8..12) {
            field.copy_from_slice(&seq.to_ne_bytes());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; family is set next (pid 0 = the kernel).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `request` and `kernel` are valid for the lengths passed.
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(NetlinkError::Send {
                request: request_name,
                source: io::Error::last_os_error(),
            });
        }
        loop {
            // SAFETY: `buf` is valid for writes of its length.
            let got = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if got < 0 {
                let source = io::Error::last_os_error();
                if source.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(NetlinkError::Recv {
                    request: request_name,
                    source,
                });
            }
            let datagram = self.buf.get(..got as usize).unwrap_or_default();
            let mut at = 0usize;
            while let Some(header) = datagram.get(at..at.saturating_add(NLMSG_HDR_LEN)) {
                let len = ne_u32(header, 0).unwrap_or(0) as usize;
                let msg_type = u16::from_ne_bytes([header[4], header[5]]);
                let flags = u16::from_ne_bytes([header[6], header[7]]);
                let msg_seq = ne_u32(header, 2).unwrap_or(0);
                let Some(msg) = (len >= NLMSG_HDR_LEN)
                    .then(|| datagram.get(at..at.saturating_add(len)))
                    .flatten()
                else {
                    return Err(NetlinkError::Malformed {
                        what: "nlmsg_len",
                        offset: at,
                    });
                };
                at = at.saturating_add(len.saturating_add(3) & !3);
                if msg_seq != seq {
                    continue; // a late reply to an earlier, abandoned request
                }
                match msg_type {
                    NLMSG_ERROR => {
                        let (code, message) = parse_error(msg, flags)?;
                        if code == 0 {
                            return Ok(None);
                        }
                        return Err(NetlinkError::Kernel {
                            source: io::Error::from_raw_os_error(code.saturating_neg()),
                            message,
                        });
                    }
                    NLMSG_DONE => return Ok(None),
                    _ => return Ok(Some(msg.to_vec())),
                }
            }
        }
    }

    /// Applies `config` to a VF of the PF whose ifindex is `pf_ifindex`; waits for the ack.
    pub fn set_vf(&mut self, pf_ifindex: i32, config: &VfConfig) -> Result<(), NetlinkError> {
        let mut request = set_vf_request(pf_ifindex, config)?;
        self.transact("RTM_NEWLINK (set VF)", &mut request)
            .map(|_| ())
    }

    /// Every VF of `pf` with its settings and counters.
    pub fn vf_reports(&mut self, pf: &str) -> Result<Vec<VfReport>, NetlinkError> {
        let mut request = get_vfs_request(pf)?;
        match self.transact("RTM_GETLINK (VF info)", &mut request)? {
            Some(reply) => parse_vf_reports(&reply),
            None => Ok(Vec::new()),
        }
    }
}
