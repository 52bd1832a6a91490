//! The virtio-net device a VIF presents: the feature bits offered and the config space.
//!
//! (being written)
