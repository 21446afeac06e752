//! rtpengine's "ng" control protocol, by which Kamailio's and OpenSIPS's `rtpengine` modules
//! drive a media relay: over UDP, each message is a cookie, a space and a bencoded dictionary
//! ([`bencode`]); the reply repeats the cookie.

pub mod bencode;
