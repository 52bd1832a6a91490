//! The vhost-user handshake, in QEMU's order (`vhost_user_backend_init`, `vhost_dev_start`,
//! `vhost_virtqueue_start`): features, protocol features, queue count, owner, config space,
//! then memory table and per-vring number, base, addresses, kick, call and enable.
//!
//! The device offers and the driver chooses (VIRTIO 1.2 § 3.1.1); `VHOST_USER_F_PROTOCOL_FEATURES`
//! is vhost-user's own bit and, once acked, leaves rings disabled until `SET_VRING_ENABLE`
//! (vhost-user spec, "Ring states"). With `REPLY_ACK` every request asks for an ack, so a
//! backend's rejection surfaces at the step that caused it.

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::VhostBackend;

use super::config::{feature, GuestConfig, NetConfig, NET_CONFIG_READ_LEN};
use super::error::{vhost_err, GuestError};
use super::memory::GuestRam;
use super::vring::DriverRing;

/// Protocol features the guest uses when offered: `MQ` (`GET_QUEUE_NUM`), `REPLY_ACK`
/// (synchronous errors), `CONFIG` (`GET_CONFIG`).
pub const WANTED_PROTOCOL_FEATURES: VhostUserProtocolFeatures = VhostUserProtocolFeatures::MQ
    .union(VhostUserProtocolFeatures::REPLY_ACK)
    .union(VhostUserProtocolFeatures::CONFIG);

/// What the handshake settled.
#[derive(Debug, Clone, Copy)]
pub struct Negotiated {
    /// `GET_FEATURES`.
    pub offered_features: u64,
    /// Sent in `SET_FEATURES` (includes `PROTOCOL_FEATURES` when negotiated).
    pub acked_features: u64,
    /// `GET_PROTOCOL_FEATURES` (empty without `PROTOCOL_FEATURES`).
    pub offered_protocol_features: VhostUserProtocolFeatures,
    pub acked_protocol_features: VhostUserProtocolFeatures,
    /// Queue pairs the device can serve: `GET_QUEUE_NUM / 2` and `max_virtqueue_pairs`, or 1.
    pub max_queue_pairs: u16,
    /// The config space, when `CONFIG` was negotiated.
    pub net_config: Option<NetConfig>,
}

impl Negotiated {
    pub fn has(&self, mask: u64) -> bool {
        self.acked_features & mask == mask
    }
}

/// Feature and protocol negotiation, `SET_OWNER` and `GET_CONFIG`.
pub fn negotiate(frontend: &mut Frontend, cfg: &GuestConfig) -> Result<Negotiated, GuestError> {
    let offered = frontend.get_features().map_err(vhost_err("GET_FEATURES"))?;
    for mask in bits(cfg.required_features) {
        if offered & mask == 0 {
            return Err(GuestError::FeatureMissing {
                feature: feature::name(mask),
            });
        }
    }
    let use_protocol = cfg.use_protocol_features && offered & feature::PROTOCOL_FEATURES != 0;
    let mut offered_protocol = VhostUserProtocolFeatures::empty();
    let mut acked_protocol = VhostUserProtocolFeatures::empty();
    let mut max_queues: u64 = 2;
    if use_protocol {
        offered_protocol = frontend
            .get_protocol_features()
            .map_err(vhost_err("GET_PROTOCOL_FEATURES"))?;
        acked_protocol = offered_protocol & WANTED_PROTOCOL_FEATURES;
        frontend
            .set_protocol_features(acked_protocol)
            .map_err(vhost_err("SET_PROTOCOL_FEATURES"))?;
        if acked_protocol.contains(VhostUserProtocolFeatures::REPLY_ACK) {
            frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        }
        if acked_protocol.contains(VhostUserProtocolFeatures::MQ) {
            // vhost-user-backend answers with the number of vrings, not pairs.
            max_queues = frontend
                .get_queue_num()
                .map_err(vhost_err("GET_QUEUE_NUM"))?;
        }
    }
    frontend.set_owner().map_err(vhost_err("SET_OWNER"))?;

    let mut acked = offered & cfg.accept_features & feature::DRIVER_SUPPORTED;
    if use_protocol {
        acked |= feature::PROTOCOL_FEATURES;
    }
    frontend
        .set_features(acked)
        .map_err(vhost_err("SET_FEATURES"))?;

    let net_config = if acked_protocol.contains(VhostUserProtocolFeatures::CONFIG) {
        let request = [0u8; NET_CONFIG_READ_LEN];
        let (_, payload) = frontend
            .get_config(
                0,
                NET_CONFIG_READ_LEN as u32,
                VhostUserConfigFlags::empty(),
                &request,
            )
            .map_err(vhost_err("GET_CONFIG"))?;
        let mut raw = [0u8; NET_CONFIG_READ_LEN];
        // The frontend already checked that the reply has the size asked for.
        let n = payload.len().min(NET_CONFIG_READ_LEN);
        raw[..n].copy_from_slice(&payload[..n]);
        Some(NetConfig::parse(raw, acked))
    } else {
        None
    };

    let mut max_queue_pairs = if acked & feature::MQ != 0 {
        u16::try_from(max_queues / 2).unwrap_or(u16::MAX).max(1)
    } else {
        1
    };
    if let Some(pairs) = net_config.and_then(|config| config.max_virtqueue_pairs) {
        max_queue_pairs = max_queue_pairs.min(pairs.max(1));
    }
    if cfg.queue_pairs == 0 || cfg.queue_pairs > max_queue_pairs {
        return Err(GuestError::QueuePairsUnavailable {
            requested: cfg.queue_pairs,
            offered: max_queue_pairs,
        });
    }
    Ok(Negotiated {
        offered_features: offered,
        acked_features: acked,
        offered_protocol_features: offered_protocol,
        acked_protocol_features: acked_protocol,
        max_queue_pairs,
        net_config,
    })
}

/// `SET_MEM_TABLE` with the guest's one memfd region.
pub fn set_mem_table(frontend: &mut Frontend, ram: &GuestRam) -> Result<(), GuestError> {
    let region = ram.region_info()?;
    frontend
        .set_mem_table(&[region])
        .map_err(vhost_err("SET_MEM_TABLE"))?;
    Ok(())
}

/// Starts one vring at `base`: `SET_VRING_NUM`, `SET_VRING_BASE`, `SET_VRING_ADDR`,
/// `SET_VRING_KICK`, `SET_VRING_CALL`.
pub fn start_vring(
    frontend: &mut Frontend,
    ram: &GuestRam,
    ring: &DriverRing,
    base: u16,
) -> Result<(), GuestError> {
    let index = usize::from(ring.index());
    frontend
        .set_vring_num(index, ring.size())
        .map_err(vhost_err("SET_VRING_NUM"))?;
    frontend
        .set_vring_base(index, base)
        .map_err(vhost_err("SET_VRING_BASE"))?;
    frontend
        .set_vring_addr(index, &ring.config_data(ram)?)
        .map_err(vhost_err("SET_VRING_ADDR"))?;
    frontend
        .set_vring_kick(index, ring.kick_fd())
        .map_err(vhost_err("SET_VRING_KICK"))?;
    frontend
        .set_vring_call(index, ring.call_fd())
        .map_err(vhost_err("SET_VRING_CALL"))?;
    Ok(())
}

/// `SET_VRING_ENABLE`, only meaningful (and only allowed) with `PROTOCOL_FEATURES`.
pub fn enable_vring(
    frontend: &mut Frontend,
    negotiated: &Negotiated,
    index: u16,
    enable: bool,
) -> Result<(), GuestError> {
    if negotiated.acked_features & feature::PROTOCOL_FEATURES == 0 {
        return Ok(());
    }
    frontend
        .set_vring_enable(usize::from(index), enable)
        .map_err(vhost_err("SET_VRING_ENABLE"))
}

/// The single-bit masks set in `mask`.
fn bits(mask: u64) -> impl Iterator<Item = u64> {
    (0..64)
        .map(|bit| 1u64 << bit)
        .filter(move |b| mask & b != 0)
}
