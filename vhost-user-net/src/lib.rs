//! vhost-user-net backend (skeleton; see issue 4).
