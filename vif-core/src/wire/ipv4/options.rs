//! IPv4 options (RFC 791 § 3.1): a bounded walk over the bytes between the fixed header and
//! the payload. The datapath forwards options untouched; this walk exists to reject malformed
//! ones where a caller asks (`Ipv4Repr::parse`, ACLs on options).

use crate::wire::{Result, WireError};

/// One IPv4 option (RFC 791 § 3.1): its type octet and the bytes after the length octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Option<'a> {
    pub kind: u8,
    pub data: &'a [u8],
}

impl Ipv4Option<'_> {
    /// End of option list: the remaining header bytes are padding.
    pub const END: u8 = 0;
    /// No operation: a single byte, used for alignment.
    pub const NOP: u8 = 1;
    /// Router alert (RFC 2113).
    pub const ROUTER_ALERT: u8 = 148;
}

/// Walks IPv4 options. Each step is bounded by the option bytes; a malformed option yields one
/// error and ends the walk, so the loop always terminates.
#[derive(Debug, Clone)]
pub struct Ipv4OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> Ipv4OptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        Ipv4OptionIter { rest: options }
    }
}

impl<'a> Iterator for Ipv4OptionIter<'a> {
    type Item = Result<Ipv4Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (&kind, after_kind) = self.rest.split_first()?;
        match kind {
            Ipv4Option::END => {
                self.rest = &[];
                None
            }
            Ipv4Option::NOP => {
                self.rest = after_kind;
                Some(Ok(Ipv4Option { kind, data: &[] }))
            }
            _ => {
                // Type-length-value: the length octet counts itself and the type octet.
                let len = after_kind.first().copied().map(usize::from);
                let parsed = match len {
                    Some(len) if len < 2 => Err(WireError::BadField {
                        header: "ipv4 option",
                        field: "length",
                        value: len as u32,
                        bound: ">= 2",
                    }),
                    Some(len) => match self.rest.get(2..len) {
                        Some(data) => Ok((Ipv4Option { kind, data }, len)),
                        None => Err(WireError::Truncated {
                            header: "ipv4 option",
                            need: len,
                            len: self.rest.len(),
                        }),
                    },
                    None => Err(WireError::Truncated {
                        header: "ipv4 option",
                        need: 2,
                        len: self.rest.len(),
                    }),
                };
                match parsed {
                    Ok((option, len)) => {
                        self.rest = self.rest.get(len..).unwrap_or_default();
                        Some(Ok(option))
                    }
                    Err(err) => {
                        self.rest = &[];
                        Some(Err(err))
                    }
                }
            }
        }
    }
}

impl core::iter::FusedIterator for Ipv4OptionIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn walks_nop_and_tlv() {
        // Hand-built per RFC 791 § 3.1: NOP, NOP, router alert (RFC 2113: 94 04 00 00), end of
        // list, then padding that must not be read.
        let options = [1, 1, 0x94, 4, 0, 0, 0, 0x55];
        let walked: Vec<_> = Ipv4OptionIter::new(&options).collect();
        assert_eq!(walked.len(), 3);
        assert_eq!(
            walked[2],
            Ok(Ipv4Option {
                kind: Ipv4Option::ROUTER_ALERT,
                data: &[0, 0]
            })
        );
    }

    #[test]
    fn malformed_options_are_errors() {
        // Zero length, length past the end, a lone type octet: each yields one error and stops.
        for options in [
            &[0x94, 0x00, 0, 0][..],
            &[0x94, 0x08, 0, 0],
            &[1, 1, 1, 0x83],
        ] {
            let mut iter = Ipv4OptionIter::new(options);
            let results: Vec<_> = iter.by_ref().collect();
            assert!(results.last().unwrap().is_err(), "{options:?}");
            assert_eq!(iter.next(), None);
        }
        // End of list stops the walk: what follows is padding.
        assert_eq!(Ipv4OptionIter::new(&[1, 0, 0x94, 0]).count(), 1);
    }

    proptest! {
        #[test]
        fn walk_stays_within_bounds(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            // Options tile the bytes they cover: their sizes never sum past the input.
            let mut consumed = 0usize;
            for option in Ipv4OptionIter::new(&bytes) {
                match option {
                    Ok(option) if option.kind == Ipv4Option::NOP => consumed += 1,
                    Ok(option) => consumed += option.data.len() + 2,
                    Err(_) => break,
                }
            }
            prop_assert!(consumed <= bytes.len());
        }
    }
}
