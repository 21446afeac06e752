//! Media cores (sans-IO, no clock): codecs and tone tools. The RTP/RTCP session, jitter buffer,
//! SRTP and call-quality statistics of the SDK user agent build on these (issue 3, in progress).

pub mod g711;
pub mod jitter;
pub mod stats;
pub mod tone;
