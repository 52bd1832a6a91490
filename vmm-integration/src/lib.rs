//! VMM integration (skeleton; see issue 4).
