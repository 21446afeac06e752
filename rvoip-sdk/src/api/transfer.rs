//! Call transfer in the API (RFC 3515 REFER, RFC 3891 Replaces): [`Call::transfer`] and
//! [`Call::transfer_to_call`] for the transferor, [`Endpoint::accept_transfer`] and
//! [`Endpoint::reject_transfer`] for the transferee of an [`super::Event::TransferRequested`].

use std::time::Instant;

use super::endpoint::lock;
use super::net::parse_uri;
use super::{ApiError, Call, CallOptions, Endpoint, TransferId};

impl Call {
    /// Blind transfer (RFC 3515, RFC 5589 §6): asks the peer to call `target` (a SIP URI).
    /// Progress arrives as [`super::Event::TransferStatus`] up to a final one; the transferee
    /// ends this call once its new call is up.
    /// Errors: [`ApiError::InvalidArgument`] (URI), [`ApiError::InvalidState`] (not
    /// established), [`ApiError::NotFound`], [`ApiError::Shutdown`].
    pub fn transfer(&self, target: &str) -> Result<(), ApiError> {
        let target = parse_uri(target)?;
        self.with(|_, core| Ok(core.ua.transfer(Instant::now(), self.id(), target)?))
    }

    /// Attended transfer (RFC 5589 §7): asks the peer of this call to call the peer of the
    /// consultation call `other`, replacing it there (Refer-To with `Replaces`, RFC 3891).
    /// Progress arrives as [`super::Event::TransferStatus`].
    /// Errors: [`ApiError::InvalidState`] (either call not established), [`ApiError::NotFound`],
    /// [`ApiError::Shutdown`].
    pub fn transfer_to_call(&self, other: &Call) -> Result<(), ApiError> {
        let other = other.id();
        self.with(|_, core| Ok(core.ua.transfer_to_call(Instant::now(), self.id(), other)?))
    }
}

impl Endpoint {
    /// Accepts a transfer request ([`super::Event::TransferRequested`]): the REFER is answered
    /// 202, the new call placed to its target (through the transferred call's account, with
    /// `opts`' audio), its progress reported to the transferor, and the transferred call ended
    /// once the new one is up. Returns the new call.
    /// Errors: [`ApiError::NotFound`] (unknown, already decided or expired),
    /// [`ApiError::Network`] (resolution, media ports), [`ApiError::Shutdown`].
    pub fn accept_transfer(
        &self,
        transfer: TransferId,
        opts: CallOptions,
    ) -> Result<Call, ApiError> {
        let (target, account) = lock(&self.inner.shared.core).ua.transfer_target(transfer)?;
        self.place_call(
            account,
            &target,
            opts,
            move |ua, dest, transport, local, media| {
                ua.accept_transfer(Instant::now(), transfer, dest, transport, local, media)
            },
        )
    }

    /// Refuses a transfer request with a final status 300..=699 (e.g. 603 Decline).
    /// Errors: [`ApiError::NotFound`] (unknown, already decided or expired),
    /// [`ApiError::InvalidArgument`] (status), [`ApiError::Shutdown`].
    pub fn reject_transfer(&self, transfer: TransferId, status: u16) -> Result<(), ApiError> {
        if self.inner.is_shut_down() {
            return Err(ApiError::Shutdown);
        }
        let shared = &self.inner.shared;
        let mut core = lock(&shared.core);
        let r = core.ua.reject_transfer(Instant::now(), transfer, status);
        shared.pump(&mut core);
        Ok(r?)
    }
}
