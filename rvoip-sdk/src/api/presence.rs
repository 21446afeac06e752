//! Presence in the API: subscribing to a buddy's presence (RFC 3856) or a line's dialogs (RFC
//! 4235, busy-lamp field) with [`Account::subscribe`], publishing one's own status (RFC 3903)
//! with [`Account::publish_presence`]. Notifications arrive as [`super::Event::BuddyPresence`],
//! [`super::Event::LineState`] and [`super::Event::SubscriptionState`].

use std::time::Instant;

use super::endpoint::lock;
use super::net::parse_uri;
use super::{Account, ApiError, Endpoint, EventPackage, SubscriptionId};

/// The lifetime a subscription or publication asks for (s); refreshed before it runs out.
pub const PRESENCE_EXPIRES_S: u32 = 600;

impl Account {
    /// Subscribes through the account's server to `target`'s (a SIP URI) `package`: presence
    /// (buddy status) or dialog (its line: idle, ringing, in call). Kept refreshed until
    /// [`Endpoint::unsubscribe`]. Errors: [`ApiError::InvalidArgument`] (URI),
    /// [`ApiError::NotFound`] (account removed), [`ApiError::Shutdown`].
    pub fn subscribe(
        &self,
        target: &str,
        package: EventPackage,
    ) -> Result<SubscriptionId, ApiError> {
        let target = parse_uri(target)?;
        let id = self.id();
        self.with(|_, core| {
            Ok(core
                .ua
                .subscribe(Instant::now(), id, target, package, PRESENCE_EXPIRES_S)?)
        })
    }

    /// Publishes the account's presence (RFC 3903 PUBLISH of a PIDF document): `online` or
    /// offline, with an optional `note` (e.g. `Away`) and RPID `activity` (`away`, `busy`,
    /// `on-the-phone`, ...). Kept refreshed until [`Account::unpublish_presence`]; a new call
    /// replaces the status. The result arrives as [`super::Event::PublishResult`].
    /// Errors: [`ApiError::InvalidArgument`] (an activity with other than letters, digits,
    /// `-`, `_`), [`ApiError::NotFound`], [`ApiError::Shutdown`].
    pub fn publish_presence(
        &self,
        online: bool,
        note: Option<&str>,
        activity: Option<&str>,
    ) -> Result<(), ApiError> {
        let id = self.id();
        self.with(|_, core| {
            Ok(core.ua.publish(
                Instant::now(),
                id,
                online,
                note,
                activity,
                PRESENCE_EXPIRES_S,
            )?)
        })
    }

    /// Removes the account's published presence (PUBLISH with Expires 0).
    /// Errors: [`ApiError::NotFound`] (nothing published), [`ApiError::Shutdown`].
    pub fn unpublish_presence(&self) -> Result<(), ApiError> {
        let id = self.id();
        self.with(|_, core| Ok(core.ua.unpublish(Instant::now(), id)?))
    }
}

impl Endpoint {
    /// Ends a subscription (SUBSCRIBE with Expires 0); it is reported terminated
    /// (`unsubscribed`). Errors: [`ApiError::NotFound`] (unknown or already terminated),
    /// [`ApiError::Shutdown`].
    pub fn unsubscribe(&self, subscription: SubscriptionId) -> Result<(), ApiError> {
        if self.inner.is_shut_down() {
            return Err(ApiError::Shutdown);
        }
        let shared = &self.inner.shared;
        let mut core = lock(&shared.core);
        let r = core.ua.unsubscribe(Instant::now(), subscription);
        shared.pump(&mut core);
        Ok(r?)
    }
}
