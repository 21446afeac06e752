//! Parse + serialize throughput of our SIP message module against rsip 0.4.
//!
//! `cargo bench -p rvoip-sdk --bench sip_parser -- --warm-up-time 1 --measurement-time 3`
//!
//! Each group runs one message through `parse` then `to_bytes` / `to_string`; with
//! `Throughput::Elements(1)` criterion reports messages per second.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rvoip_sdk::sip::msg::{Limits, Message};

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10:5060>;expires=3600\r\n\
Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"ea9c8e88df84f1cec4341ae6cbe5a359\", uri=\"sip:example.com\", response=\"dfe56131d1958046689d83306477ecc\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"0a4f113b\"\r\n\
User-Agent: rvoip-bench/1.0\r\n\
Content-Length: 0\r\n\
\r\n";

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 151\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com\r\n\
s=-\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0\r\n\
a=rtpmap:0 PCMU/8000\r\n";

const OK200: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1;received=192.0.2.3\r\n\
Via: SIP/2.0/UDP bigbox3.site3.atlanta.example.com;branch=z9hG4bK77ef4c2312983.1;received=192.0.2.2\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n\
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\
\r\n";

fn bench_message(c: &mut Criterion, name: &str, text: &'static str) {
    let limits = Limits::default();
    // A refcounted buffer, as a socket read produces (slices cost an atomic increment).
    let wire = Bytes::from(text.as_bytes().to_vec());
    // Both parsers must accept the message, or the comparison means nothing.
    assert!(
        Message::parse(wire.clone(), &limits).is_ok(),
        "rvoip rejects {name}"
    );
    assert!(
        rsip::SipMessage::try_from(text.as_bytes()).is_ok(),
        "rsip rejects {name}"
    );

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("rvoip parse+serialize", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(wire.clone()), &limits).unwrap();
            black_box(m.to_bytes())
        })
    });
    g.bench_function("rsip parse+serialize", |b| {
        b.iter(|| {
            let m = rsip::SipMessage::try_from(black_box(text.as_bytes())).unwrap();
            black_box(m.to_string())
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_message(c, "REGISTER with digest", REGISTER);
    bench_message(c, "INVITE with SDP", INVITE);
    bench_message(c, "200 OK with 3 Via", OK200);
}

criterion_group!(sip_parser, benches);
criterion_main!(sip_parser);
