//! Event delivery to foreign code: the [`EndpointListener`] foreign trait, the
//! [`Subscription`] handle that ends a subscription when dropped, and the dispatcher that fans
//! the SDK's one ordered event stream out to every listener and to the waiting `async` calls
//! ([`crate::account::Account::register`]).

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::oneshot;

use crate::event::{Event, RegistrationState};

/// Receives an endpoint's events, implemented in Swift, Kotlin or Python.
///
/// `on_event` runs on one SDK event thread, one event at a time, in the order things
/// happened; it may call any rvoip method (answer, hang up, even `Endpoint.shutdown`). Keep it
/// short: the next event waits for it. An exception it raises is logged and dropped.
#[uniffi::export(with_foreign)]
pub trait EndpointListener: Send + Sync {
    /// One event.
    fn on_event(&self, event: Event);
}

/// What a registration waiter waits for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Await {
    /// `Registered` or `Failed`.
    Registered,
    /// `Unregistered` or `Failed`.
    Unregistered,
}

type Waiter = (Await, oneshot::Sender<RegistrationState>);

/// Fans events out to the subscribed listeners and wakes registration waiters.
#[derive(Default)]
pub(crate) struct Dispatcher {
    listeners: Mutex<Vec<(u64, Arc<dyn EndpointListener>)>>,
    next_id: AtomicU64,
    waiters: Mutex<HashMap<u64, Vec<Waiter>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatcher {
    /// Delivers one event: first to each listener, then to the waiters it completes (so an
    /// awaited `register()` returns after every listener has seen the new state).
    pub(crate) fn dispatch(&self, event: Event) {
        let listeners: Vec<Arc<dyn EndpointListener>> = lock(&self.listeners)
            .iter()
            .map(|(_, l)| l.clone())
            .collect();
        for l in listeners {
            let ev = event.clone();
            if catch_unwind(AssertUnwindSafe(|| l.on_event(ev))).is_err() {
                tracing::error!("an EndpointListener failed (exception in on_event)");
            }
        }
        if let Event::RegistrationChanged { account_id, state } = &event {
            self.wake(*account_id, state);
        }
    }

    fn wake(&self, account_id: u64, state: &RegistrationState) {
        let done = |w: Await| match state {
            RegistrationState::Registered { .. } => w == Await::Registered,
            RegistrationState::Unregistered => w == Await::Unregistered,
            RegistrationState::Failed { .. } => true,
            RegistrationState::Registering => false,
        };
        let mut waiters = lock(&self.waiters);
        let Some(list) = waiters.get_mut(&account_id) else {
            return;
        };
        let mut keep = Vec::new();
        for (w, tx) in list.drain(..) {
            if done(w) {
                let _ = tx.send(state.clone());
            } else {
                keep.push((w, tx));
            }
        }
        if keep.is_empty() {
            waiters.remove(&account_id);
        } else {
            *list = keep;
        }
    }

    /// A receiver completed by the next registration state of `account_id` that `what` waits
    /// for. Register it before sending the request so the answer cannot be missed.
    pub(crate) fn wait_for(
        &self,
        account_id: u64,
        what: Await,
    ) -> oneshot::Receiver<RegistrationState> {
        let (tx, rx) = oneshot::channel();
        let mut waiters = lock(&self.waiters);
        let list = waiters.entry(account_id).or_default();
        // Waiters whose call returned early (an error, a cancelled future) are gone.
        list.retain(|(_, tx)| !tx.is_closed());
        list.push((what, tx));
        rx
    }

    /// Adds a listener; the returned id removes it.
    fn add(&self, listener: Arc<dyn EndpointListener>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.listeners).push((id, listener));
        id
    }

    fn remove(&self, id: u64) {
        lock(&self.listeners).retain(|(i, _)| *i != id);
    }

    /// Forgets every listener and fails every waiter (shutdown: breaks reference cycles
    /// between foreign listeners and the endpoint they hold).
    pub(crate) fn clear(&self) {
        lock(&self.listeners).clear();
        lock(&self.waiters).clear();
    }

    /// Subscribes `listener`, returning its handle.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        listener: Arc<dyn EndpointListener>,
    ) -> Arc<Subscription> {
        let id = self.add(listener);
        Arc::new(Subscription {
            dispatcher: Arc::downgrade(self),
            id,
        })
    }

    /// Number of subscribed listeners.
    pub(crate) fn listener_count(&self) -> usize {
        lock(&self.listeners).len()
    }
}

/// A listener's subscription: events stop when it is dropped (Swift `deinit`, Kotlin `close()`
/// / `use {}`, Python garbage collection or `with`) or when [`Subscription::cancel`] is
/// called. An event being delivered at that moment may still arrive once.
#[derive(uniffi::Object)]
pub struct Subscription {
    dispatcher: Weak<Dispatcher>,
    id: u64,
}

#[uniffi::export]
impl Subscription {
    /// Ends the subscription now (idempotent).
    pub fn cancel(&self) {
        if let Some(d) = self.dispatcher.upgrade() {
            d.remove(self.id);
        }
    }

    /// Whether the listener still receives events (false after `cancel`, drop, or endpoint
    /// shutdown).
    pub fn is_active(&self) -> bool {
        self.dispatcher
            .upgrade()
            .is_some_and(|d| lock(&d.listeners).iter().any(|(i, _)| *i == self.id))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl EndpointListener for Count {
        fn on_event(&self, _event: Event) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Panics;

    impl EndpointListener for Panics {
        fn on_event(&self, _event: Event) {
            panic!("listener bug");
        }
    }

    fn reg(state: RegistrationState) -> Event {
        Event::RegistrationChanged {
            account_id: 7,
            state,
        }
    }

    #[test]
    fn every_listener_sees_every_event_until_its_subscription_drops() {
        let d = Arc::new(Dispatcher::default());
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        let sa = d.subscribe(a.clone());
        let sb = d.subscribe(b.clone());
        d.dispatch(reg(RegistrationState::Registering));
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (1, 1)
        );
        drop(sb);
        assert_eq!(d.listener_count(), 1);
        d.dispatch(reg(RegistrationState::Unregistered));
        assert_eq!(
            (a.0.load(Ordering::SeqCst), b.0.load(Ordering::SeqCst)),
            (2, 1)
        );
        sa.cancel();
        sa.cancel();
        assert!(!sa.is_active());
        assert_eq!(d.listener_count(), 0);
    }

    #[test]
    fn a_panicking_listener_does_not_stop_the_others() {
        let d = Arc::new(Dispatcher::default());
        let _bad = d.subscribe(Arc::new(Panics));
        let good = Arc::new(Count::default());
        let _s = d.subscribe(good.clone());
        d.dispatch(reg(RegistrationState::Registering));
        assert_eq!(good.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn waiters_complete_on_their_outcome_only() {
        let d = Dispatcher::default();
        let mut reg_rx = d.wait_for(7, Await::Registered);
        let mut unreg_rx = d.wait_for(7, Await::Unregistered);
        let mut other = d.wait_for(8, Await::Registered);
        d.dispatch(reg(RegistrationState::Registering));
        assert!(reg_rx.try_recv().is_err());
        d.dispatch(reg(RegistrationState::Registered { expires_s: 60 }));
        assert_eq!(
            reg_rx.try_recv().ok(),
            Some(RegistrationState::Registered { expires_s: 60 })
        );
        assert!(unreg_rx.try_recv().is_err());
        let failed = RegistrationState::Failed {
            status: 403,
            reason: "Forbidden".into(),
            retry_in_ms: 0,
        };
        d.dispatch(reg(failed.clone()));
        assert_eq!(unreg_rx.try_recv().ok(), Some(failed));
        assert!(other.try_recv().is_err(), "another account's waiter stays");
        d.clear();
        assert!(
            matches!(
                other.try_recv(),
                Err(tokio::sync::oneshot::error::TryRecvError::Closed)
            ),
            "shutdown fails the waiters"
        );
    }

    /// Sees whether the waiter was already completed when the event reached the listener.
    struct Peek(
        Mutex<oneshot::Receiver<RegistrationState>>,
        Mutex<Vec<bool>>,
    );

    impl EndpointListener for Peek {
        fn on_event(&self, _event: Event) {
            let done = lock(&self.0).try_recv().is_ok();
            lock(&self.1).push(done);
        }
    }

    #[test]
    fn listeners_see_the_state_before_register_returns() {
        let d = Arc::new(Dispatcher::default());
        let peek = Arc::new(Peek(
            Mutex::new(d.wait_for(7, Await::Registered)),
            Mutex::default(),
        ));
        let _s = d.subscribe(peek.clone());
        d.dispatch(reg(RegistrationState::Registered { expires_s: 60 }));
        assert_eq!(
            *lock(&peek.1),
            vec![false],
            "waiter completed before the listener ran"
        );
        assert!(
            lock(&peek.0).try_recv().is_ok(),
            "then the waiter completes"
        );
    }

    #[test]
    fn abandoned_waiters_are_pruned() {
        let d = Dispatcher::default();
        for _ in 0..100 {
            drop(d.wait_for(7, Await::Registered));
        }
        let _rx = d.wait_for(7, Await::Registered);
        assert_eq!(lock(&d.waiters).get(&7).map(Vec::len), Some(1));
    }
}
