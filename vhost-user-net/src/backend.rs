//! `VhostUserBackend` for one VIF: event dispatch only.
//!
//! (being written: skeleton with the names the daemon builds against)

use std::io;
use std::sync::Arc;

use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost_user_backend::{VhostUserBackend, VringRwLock};
use vif_core::model::VifSpec;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::switch::Segment;

/// Why a VIF's backend cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("queue pairs {queue_pairs} out of range [1, {max}]")]
    QueuePairs { queue_pairs: u16, max: u16 },
    #[error("cannot create the wake eventfd of worker {worker}: {source}")]
    WakeEventFd { worker: usize, source: io::Error },
}

/// The vhost-user-net backend of one VIF.
pub struct NetBackend {
    spec: VifSpec,
    segment: Arc<Segment>,
}

impl NetBackend {
    pub fn new(spec: &VifSpec, segment: Arc<Segment>) -> Result<Arc<NetBackend>, BackendError> {
        Ok(Arc::new(NetBackend {
            spec: spec.clone(),
            segment,
        }))
    }

    pub fn spec(&self) -> &VifSpec {
        &self.spec
    }

    pub fn segment(&self) -> &Arc<Segment> {
        &self.segment
    }
}

impl VhostUserBackend for NetBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> usize {
        256
    }

    fn features(&self) -> u64 {
        0
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    fn set_event_idx(&self, _enabled: bool) {}

    fn update_memory(&self, _mem: GuestMemoryAtomic<GuestMemoryMmap>) -> io::Result<()> {
        Ok(())
    }

    fn handle_event(
        &self,
        _device_event: u16,
        _evset: EventSet,
        _vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        Ok(())
    }
}
