//! The media relay shared by several workers ([`super::workers`]): one relay thread, one
//! [`RelayHandle`] per worker's anchor, and the relay's events (media timeouts) handed to the
//! worker whose call owns the context.
//!
//! The relay keeps one event queue. A worker polling it may take another worker's event; it
//! passes that event on through [`RelayEvents`] instead of dropping it, so each call's media
//! timeout still ends that call (its BYEs go out of the worker that holds its dialog).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::relay::RelayHandle;
use crate::media::relay::{
    Latching, MediaId, MediaStats, RelayError, RelayEvent, Side, TranscodeSpec,
};
use crate::server::relay::RelayControl;
use crate::server::relay::sdp::Stream;

/// Which worker created each live relay context, and the events waiting for each worker.
#[derive(Debug)]
pub(crate) struct RelayEvents {
    state: Mutex<EventState>,
}

#[derive(Debug)]
struct EventState {
    owner: HashMap<MediaId, usize>,
    queues: Vec<VecDeque<RelayEvent>>,
}

impl RelayEvents {
    /// Routing for `workers` workers.
    pub(crate) fn new(workers: usize) -> Arc<RelayEvents> {
        Arc::new(RelayEvents {
            state: Mutex::new(EventState {
                owner: HashMap::new(),
                queues: (0..workers).map(|_| VecDeque::new()).collect(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EventState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The id of the context an event is about.
fn event_id(ev: &RelayEvent) -> MediaId {
    match ev {
        RelayEvent::MediaTimeout { id } | RelayEvent::MemberMuted { id, .. } => *id,
    }
}

/// One worker's view of the shared relay: a [`RelayHandle`] whose events are those of the
/// contexts this worker created.
pub(crate) struct ShardedRelay {
    inner: RelayHandle,
    events: Arc<RelayEvents>,
    worker: usize,
}

impl ShardedRelay {
    /// Worker `worker`'s view of `inner`, routing events through `events`.
    pub(crate) fn new(inner: RelayHandle, events: Arc<RelayEvents>, worker: usize) -> Self {
        ShardedRelay {
            inner,
            events,
            worker,
        }
    }
}

impl RelayControl for ShardedRelay {
    fn create(&mut self, now: Instant) -> Result<MediaId, RelayError> {
        let id = self.inner.create(now)?;
        self.events.lock().owner.insert(id, self.worker);
        Ok(id)
    }

    fn local_port(&self, id: MediaId, side: Side) -> Option<u16> {
        self.inner.local_port(id, side)
    }

    fn set_remote(&mut self, id: MediaId, side: Side, s: &Stream) -> Result<(), RelayError> {
        self.inner.set_remote(id, side, s)
    }

    fn set_latching(
        &mut self,
        id: MediaId,
        side: Side,
        latching: Latching,
    ) -> Result<(), RelayError> {
        self.inner.set_latching(id, side, latching)
    }

    fn media_stats(&self, id: MediaId) -> Option<MediaStats> {
        self.inner.media_stats(id)
    }

    fn join_room(
        &mut self,
        now: Instant,
        id: MediaId,
        room: u32,
        spec: TranscodeSpec,
    ) -> Result<(), RelayError> {
        self.inner.join_room(now, id, room, spec)
    }

    fn set_recording(&mut self, id: MediaId, recording: Option<u64>) -> Result<(), RelayError> {
        self.inner.set_recording(id, recording)
    }

    fn set_transcoding(
        &mut self,
        now: Instant,
        id: MediaId,
        specs: Option<[TranscodeSpec; 2]>,
    ) -> Result<(), RelayError> {
        self.inner.set_transcoding(now, id, specs)
    }

    fn confirm(&mut self, now: Instant, id: MediaId) {
        self.inner.confirm(now, id)
    }

    fn release(&mut self, id: MediaId) -> Option<MediaStats> {
        let stats = self.inner.release(id);
        self.events.lock().owner.remove(&id);
        stats
    }

    /// This worker's next event: one passed on by another worker, else the relay's next event
    /// about a context of this worker (others' events are queued for them on the way).
    fn poll_event(&mut self) -> Option<RelayEvent> {
        let mut st = self.events.lock();
        if let Some(ev) = st.queues.get_mut(self.worker).and_then(VecDeque::pop_front) {
            return Some(ev);
        }
        while let Some(ev) = self.inner.poll_event() {
            match st.owner.get(&event_id(&ev)).copied() {
                Some(w) if w != self.worker => {
                    if let Some(q) = st.queues.get_mut(w) {
                        q.push_back(ev);
                    }
                }
                // Ours, or a context no worker holds any more (the anchor ignores it).
                _ => return Some(ev),
            }
        }
        None
    }

    fn ports_in_use(&self) -> usize {
        self.inner.ports_in_use()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now)
    }
}
