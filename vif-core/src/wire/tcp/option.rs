//! TCP options (RFC 9293 § 3.2): typed values and a walk over the option list that always
//! terminates.
//!
//! Kinds with a fixed length (MSS, window scale, SACK-permitted, timestamps) must have exactly
//! that length; any other kind is returned as `Unknown` with its data. Validation here is about
//! structure only: which options may appear on which segments is an endpoint's concern.

use crate::wire::{Result, WireError};

const HEADER: &str = "tcp option";

/// Option kinds (IANA "TCP Option Kind Numbers").
pub mod option_kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MAX_SEG_SIZE: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// One TCP option. Kinds vif does not interpret (SACK blocks, MD5, TCP-AO, MPTCP, …) are
/// `Unknown` with their data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: the end of the list; what follows is padding (RFC 9293 § 3.2).
    EndOfList,
    /// Kind 1: alignment padding.
    NoOperation,
    /// Kind 2, length 4 (RFC 9293 § 3.7.1).
    MaxSegmentSize(u16),
    /// Kind 3, length 3: the shift count. Values above 14 are kept as sent; RFC 7323 § 2.3
    /// tells the endpoint, not a middlebox, to clamp them.
    WindowScale(u8),
    /// Kind 4, length 2 (RFC 2018 § 2).
    SackPermitted,
    /// Kind 8, length 10 (RFC 7323 § 3).
    Timestamps {
        tsval: u32,
        tsecr: u32,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// Bytes the option occupies on the wire.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buf` and returns its length. `Unknown` is written
    /// as given: it is meant for kinds other than the six above.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        let len_byte = u8::try_from(len).map_err(|_| WireError::BadField {
            header: HEADER,
            field: "option length",
            value: u32::try_from(len).unwrap_or(u32::MAX),
            bound: "<= 255",
        })?;
        let buf_len = buf.len();
        let out = buf.get_mut(..len).ok_or(WireError::Truncated {
            header: HEADER,
            need: len,
            len: buf_len,
        })?;
        // `out` is exactly `len` bytes, so every index below is in bounds by construction.
        let (kind, value) = out.split_at_mut(1);
        match *self {
            TcpOption::EndOfList => kind[0] = option_kind::END_OF_LIST,
            TcpOption::NoOperation => kind[0] = option_kind::NO_OPERATION,
            TcpOption::MaxSegmentSize(mss) => {
                kind[0] = option_kind::MAX_SEG_SIZE;
                value[0] = len_byte;
                value[1..].copy_from_slice(&mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => {
                kind[0] = option_kind::WINDOW_SCALE;
                value.copy_from_slice(&[len_byte, shift]);
            }
            TcpOption::SackPermitted => {
                kind[0] = option_kind::SACK_PERMITTED;
                value[0] = len_byte;
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                kind[0] = option_kind::TIMESTAMPS;
                value[0] = len_byte;
                value[1..5].copy_from_slice(&tsval.to_be_bytes());
                value[5..9].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind: k, data } => {
                kind[0] = k;
                value[0] = len_byte;
                value[1..].copy_from_slice(data);
            }
        }
        Ok(len)
    }
}

/// Walks an option list. Yields `Err` once and then stops on an option whose length byte is
/// missing, below 2, past the end of the list, or wrong for a kind of fixed size; stops after
/// [`TcpOption::EndOfList`]. Every step consumes at least one byte, so it ends within as many
/// steps as the list has bytes (at most 40).
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        TcpOptionIter { rest: options }
    }

    /// Ends the walk and reports `err`: a list with one broken option cannot be trusted past it.
    fn fail(&mut self, err: WireError) -> Option<Result<TcpOption<'a>>> {
        self.rest = &[];
        Some(Err(err))
    }
}

/// The length a fixed-size option kind must have, with the field name errors report.
fn fixed_len(kind: u8) -> Option<(usize, &'static str, &'static str)> {
    match kind {
        option_kind::MAX_SEG_SIZE => Some((4, "MSS option length", "4")),
        option_kind::WINDOW_SCALE => Some((3, "window scale option length", "3")),
        option_kind::SACK_PERMITTED => Some((2, "SACK-permitted option length", "2")),
        option_kind::TIMESTAMPS => Some((10, "timestamps option length", "10")),
        _ => None,
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            option_kind::END_OF_LIST => {
                self.rest = &[];
                return Some(Ok(TcpOption::EndOfList));
            }
            option_kind::NO_OPERATION => {
                self.rest = after_kind;
                return Some(Ok(TcpOption::NoOperation));
            }
            _ => {}
        }
        let Some(&len_byte) = after_kind.first() else {
            return self.fail(WireError::Truncated {
                header: HEADER,
                need: 2,
                len: 1,
            });
        };
        let len = usize::from(len_byte);
        if let Some((fixed, field, bound)) = fixed_len(kind) {
            if len != fixed {
                return self.fail(WireError::BadField {
                    header: HEADER,
                    field,
                    value: len_byte.into(),
                    bound,
                });
            }
        } else if len < 2 {
            return self.fail(WireError::BadField {
                header: HEADER,
                field: "option length",
                value: len_byte.into(),
                bound: ">= 2",
            });
        }
        let Some(data) = self.rest.get(2..len) else {
            let err = WireError::Truncated {
                header: HEADER,
                need: len,
                len: self.rest.len(),
            };
            return self.fail(err);
        };
        let option = match (kind, data) {
            (option_kind::MAX_SEG_SIZE, &[hi, lo]) => {
                TcpOption::MaxSegmentSize(u16::from_be_bytes([hi, lo]))
            }
            (option_kind::WINDOW_SCALE, &[shift]) => TcpOption::WindowScale(shift),
            (option_kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (option_kind::TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            // fixed_len above guarantees the data length of the four known kinds.
            _ => TcpOption::Unknown { kind, data },
        };
        self.rest = self.rest.get(len..).unwrap_or(&[]);
        Some(Ok(option))
    }
}

impl core::iter::FusedIterator for TcpOptionIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The options of a Linux SYN (MSS 1460, SACK-permitted, timestamps, NOP, window scale 7),
    /// laid out by hand as `tcpdump -x` shows a Linux 6.x SYN; TSval 123456.
    const LINUX_SYN_OPTIONS: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn walk(bytes: &[u8]) -> Vec<Result<TcpOption<'_>>> {
        TcpOptionIter::new(bytes).collect()
    }

    #[test]
    fn walks_linux_syn() {
        assert_eq!(
            walk(&LINUX_SYN_OPTIONS),
            vec![
                Ok(TcpOption::MaxSegmentSize(1460)),
                Ok(TcpOption::SackPermitted),
                Ok(TcpOption::Timestamps {
                    tsval: 123_456,
                    tsecr: 0
                }),
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::WindowScale(7)),
            ]
        );
    }

    #[test]
    fn stops_at_end_of_list_and_keeps_unknown() {
        assert_eq!(
            walk(&[0x01, 0x1e, 0x04, 0xaa, 0xbb, 0x00, 0x02, 0x00]),
            vec![
                Ok(TcpOption::NoOperation),
                Ok(TcpOption::Unknown {
                    kind: 0x1e,
                    data: &[0xaa, 0xbb]
                }),
                Ok(TcpOption::EndOfList),
            ]
        );
    }

    #[test]
    fn malformed_lengths_end_the_walk() {
        fn bad(bytes: &[u8]) -> Option<Result<TcpOption<'_>>> {
            let items = walk(bytes);
            assert!(items.last().is_some_and(|r| r.is_err()), "{bytes:?}");
            items.into_iter().last()
        }
        assert_eq!(
            bad(&[0x02, 0x03, 0x05, 0x01, 0x01]),
            Some(Err(WireError::BadField {
                header: "tcp option",
                field: "MSS option length",
                value: 3,
                bound: "4"
            }))
        );
        // Length 0 and 1 would not advance a naive walker: they are errors.
        for len in [0, 1] {
            assert!(matches!(
                bad(&[0x1e, len, 0, 0]),
                Some(Err(WireError::BadField { value, .. })) if value == u32::from(len)
            ));
        }
        assert_eq!(
            bad(&[0x01, 0x1e, 0x09, 0x00]),
            Some(Err(WireError::Truncated {
                header: "tcp option",
                need: 9,
                len: 3
            }))
        );
        assert!(matches!(
            bad(&[0x01, 0x08]),
            Some(Err(WireError::Truncated {
                need: 2,
                len: 1,
                ..
            }))
        ));
        assert!(bad(&[0x08, 0x0a, 0, 0, 0]).is_some());
    }

    #[test]
    fn emit_checks_room() {
        let mut buf = [0u8; 3];
        assert!(TcpOption::MaxSegmentSize(1).emit(&mut buf).is_err());
        assert_eq!(TcpOption::WindowScale(9).emit(&mut buf), Ok(3));
        assert_eq!(buf, [0x03, 0x03, 0x09]);
        let data = [0u8; 254];
        let huge = TcpOption::Unknown {
            kind: 0x1e,
            data: &data,
        };
        assert!(huge.emit(&mut [0u8; 300]).is_err());
    }

    fn any_option() -> impl Strategy<Value = (u8, Vec<u8>, u16, u8, u32, u32)> {
        (
            0u8..7,
            proptest::collection::vec(any::<u8>(), 0..8),
            any::<u16>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
        )
    }

    proptest! {
        #[test]
        fn emit_then_walk(picks in proptest::collection::vec(any_option(), 0..4)) {
            let options: Vec<TcpOption<'_>> = picks
                .iter()
                .map(|(which, data, mss, shift, tsval, tsecr)| match which {
                    0 => TcpOption::NoOperation,
                    1 => TcpOption::MaxSegmentSize(*mss),
                    2 => TcpOption::WindowScale(*shift),
                    3 => TcpOption::SackPermitted,
                    4 => TcpOption::Timestamps { tsval: *tsval, tsecr: *tsecr },
                    5 => TcpOption::Unknown { kind: 0x1e, data },
                    _ => TcpOption::Unknown { kind: option_kind::SACK, data },
                })
                .collect();
            let mut buf = [0u8; 64];
            let mut at = 0;
            for option in &options {
                at += option.emit(&mut buf[at..]).unwrap();
            }
            let walked: Vec<_> = TcpOptionIter::new(&buf[..at]).collect::<Result<_>>().unwrap();
            prop_assert_eq!(walked, options);
        }

        #[test]
        fn arbitrary_bytes_terminate(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut errors = 0;
            let mut steps = 0;
            for item in TcpOptionIter::new(&bytes) {
                steps += 1;
                errors += usize::from(item.is_err());
            }
            prop_assert!(steps <= bytes.len());
            prop_assert!(errors <= 1);
        }
    }
}
