//! Unit tests of the SIP message parser, serializer and request checks, including the RFC 4475
//! torture corpus in `shared/conformance/rfc4475/`.

use super::*;
use bytes::Bytes;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/conformance/rfc4475/"
);

fn parse(s: &str) -> Result<Message, ParseError> {
    Message::parse(Bytes::copy_from_slice(s.as_bytes()), &Limits::default())
}

fn req(s: &str) -> Request {
    match parse(s) {
        Ok(Message::Request(r)) => r,
        other => panic!("not a request: {other:?}"),
    }
}

fn resp(s: &str) -> Response {
    match parse(s) {
        Ok(Message::Response(r)) => r,
        other => panic!("not a response: {other:?}"),
    }
}

fn bs(s: &str) -> ByteString {
    ByteString::from(s.to_owned())
}

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10:5060>;expires=3600\r\n\
Authorization: Digest username=\"bob\", realm=\"example.com\", nonce=\"abc\", uri=\"sip:example.com\", response=\"0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"x\\\"y\"\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\
\r\n";

const INVITE: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>\r\n\
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

fn without_cl(h: &Headers) -> Vec<Header> {
    h.iter()
        .filter(|h| h.name != HeaderName::ContentLength)
        .cloned()
        .collect()
}

/// Equal up to the position of Content-Length (the serializer writes it last).
fn assert_same(a: &Message, b: &Message) {
    match (a, b) {
        (Message::Request(a), Message::Request(b)) => {
            assert_eq!(a.method, b.method);
            assert_eq!(a.uri, b.uri);
            assert_eq!(without_cl(&a.headers), without_cl(&b.headers));
            assert_eq!(a.body, b.body);
        }
        (Message::Response(a), Message::Response(b)) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.reason, b.reason);
            assert_eq!(without_cl(&a.headers), without_cl(&b.headers));
            assert_eq!(a.body, b.body);
        }
        _ => panic!("kind differs"),
    }
}

#[test]
fn round_trip_typical_messages() {
    for text in [REGISTER, INVITE, OK200] {
        let m = parse(text).unwrap();
        let wire = m.to_bytes();
        // Canonical input serializes byte for byte.
        assert_eq!(std::str::from_utf8(&wire).unwrap(), text);
        let m2 = Message::parse(wire, &Limits::default()).unwrap();
        assert_same(&m, &m2);
    }
}

#[test]
fn register_accessors() {
    let r = req(REGISTER);
    assert_eq!(r.method, Method::Register);
    assert_eq!(r.uri.host, "example.com");
    let h = &r.headers;
    assert_eq!(h.call_id().unwrap(), "843817637684230@998sdasdh09");
    let cseq = h.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1826, Method::Register));
    let via = h.top_via().unwrap();
    assert_eq!(via.transport, "UDP");
    assert_eq!(via.host, "192.0.2.10");
    assert_eq!(via.port, Some(5060));
    assert_eq!(via.branch(), Some("z9hG4bK776asdhds"));
    assert!(via.has_rport());
    assert_eq!(via.received(), None);
    let from = h.from().unwrap();
    assert_eq!(from.display.as_deref(), Some("Bob"));
    assert_eq!(from.tag(), Some("456248"));
    assert_eq!(h.to().unwrap().tag(), None);
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.expires().unwrap(), Some(7200));
    assert_eq!(h.content_type(), None);
    let auth = Auth::parse(h.get(&HeaderName::Authorization).unwrap()).unwrap();
    assert_eq!(auth.scheme, "Digest");
    assert_eq!(auth.get("username"), Some("bob"));
    assert_eq!(auth.get("REALM"), Some("example.com"));
    assert_eq!(auth.get("nc"), Some("00000001"));
    assert_eq!(auth.get("qop"), Some("auth"));
    assert_eq!(auth.get("cnonce"), Some("x\"y"));
    assert_eq!(validate_request(&r), Ok(()));
    let contact = NameAddr::parse(h.get(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.params.get("expires"), Some(Some("3600")));
}

#[test]
fn header_values_are_zero_copy() {
    let buf = Bytes::copy_from_slice(REGISTER.as_bytes());
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let Message::Request(r) = Message::parse(buf.clone(), &Limits::default()).unwrap() else {
        panic!()
    };
    for h in r.headers.iter() {
        assert!(range.contains(&(h.value.as_ptr() as usize)), "{h:?} copied");
    }
    let via = r.headers.top_via().unwrap();
    assert!(range.contains(&(via.params.0.as_ptr() as usize)));
}

#[test]
fn compact_forms_and_case() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nT: sip:c@d\r\n\
i: x@y\r\ncSeQ: 1 OPTIONS\r\nm: <sip:a@h>\r\nc: text/plain\r\nl: 2\r\ns: hi\r\nk: path\r\ne: gzip\r\n\r\nok",
    );
    let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Content-Type",
            "Content-Length",
            "Subject",
            "Supported",
            "Content-Encoding"
        ]
    );
    assert_eq!(&r.body[..], b"ok");
    assert_eq!(validate_request(&r), Ok(()));
    let wire = r.to_bytes();
    let s = std::str::from_utf8(&wire).unwrap();
    assert!(s.contains("\r\nCall-ID: x@y\r\n"));
    assert!(s.ends_with("Content-Length: 2\r\n\r\nok"));
    assert_eq!(
        HeaderName::from_wire(&bs("C%6Fntact")),
        HeaderName::Other(bs("c%6fntact"))
    );
    assert_eq!(
        HeaderName::lookup("WWW-AUTHENTICATE"),
        Some(HeaderName::WwwAuthenticate)
    );
    assert_eq!(HeaderName::lookup("x"), Some(HeaderName::SessionExpires));
    assert_eq!(HeaderName::lookup("q"), None);
    assert_eq!(HeaderName::lookup(""), None);
    assert_eq!(HeaderName::lookup("Vias"), None);
}

#[test]
fn folding_is_unfolded_to_one_space() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nSubject: one  \r\n \t two\r\n\tthree\r\nContact:\r\n  <sip:x@y>\r\n\r\n",
    );
    assert_eq!(
        r.headers.get(&HeaderName::Subject).unwrap(),
        "one two three"
    );
    assert_eq!(r.headers.get(&HeaderName::Contact).unwrap(), "<sip:x@y>");
}

#[test]
fn list_headers_are_split() {
    let r = req(
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b:5061 ;branch=z9hG4bK2\r\n\
Contact: \"Doe, John\" <sip:j@x;a=1,2>;q=0.5 , <sip:k@y>\r\nRecord-Route: <sip:p1;lr>,<sip:p2;lr>\r\nAllow: INVITE, ACK,BYE\r\n\
Accept: a/b, c/d\r\nAuthorization: Digest a=\"1,2\", b=3\r\n\r\n",
    );
    let vias: Vec<&str> = r.headers.get_all(&HeaderName::Via).map(|v| &**v).collect();
    assert_eq!(
        vias,
        [
            "SIP/2.0/UDP a;branch=z9hG4bK1",
            "SIP/2.0/TCP b:5061 ;branch=z9hG4bK2"
        ]
    );
    let second = Via::parse(&bs(vias[1])).unwrap();
    assert_eq!(
        (second.port, second.branch()),
        (Some(5061), Some("z9hG4bK2"))
    );
    let contacts: Vec<&str> = r
        .headers
        .get_all(&HeaderName::Contact)
        .map(|v| &**v)
        .collect();
    assert_eq!(
        contacts,
        ["\"Doe, John\" <sip:j@x;a=1,2>;q=0.5", "<sip:k@y>"]
    );
    assert_eq!(r.headers.count(&HeaderName::RecordRoute), 2);
    assert_eq!(r.headers.count(&HeaderName::Allow), 3);
    assert_eq!(r.headers.count(&HeaderName::Accept), 1);
    assert_eq!(r.headers.count(&HeaderName::Authorization), 1);
}

#[test]
fn content_length_strictness() {
    let base = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n";
    let kind = |s: String| parse(&s).err().map(|e| e.kind);
    assert_eq!(
        kind(format!("{base}Content-Length: -1\r\n\r\n")),
        Some(ParseErrorKind::ContentLength)
    );
    assert_eq!(
        kind(format!("{base}Content-Length: 1x\r\n\r\nab")),
        Some(ParseErrorKind::ContentLength)
    );
    assert_eq!(
        kind(format!("{base}Content-Length:\r\n\r\n")),
        Some(ParseErrorKind::ContentLength)
    );
    assert_eq!(
        kind(format!("{base}l: 1\r\nContent-Length: 1\r\n\r\na")),
        Some(ParseErrorKind::ContentLength)
    );
    assert_eq!(
        kind(format!("{base}l: 5\r\n\r\nabc")),
        Some(ParseErrorKind::ContentLength)
    );
    assert_eq!(
        kind(format!("{base}l: 99999999999999999999999\r\n\r\nabc")),
        Some(ParseErrorKind::ContentLength)
    );
    let r = req(&format!("{base}l: 2\r\n\r\nabcdef"));
    assert_eq!(&r.body[..], b"ab");
    let r = req(&format!("{base}\r\nabcdef"));
    assert_eq!(&r.body[..], b"abcdef");
    let r = req(&format!("\r\n\r\n{base}Content-Length: 0\r\n\r\n"));
    assert!(r.body.is_empty());
}

#[test]
fn start_line_strictness() {
    use ParseErrorKind::*;
    let kind = |s: &str| {
        parse(&format!("{s}\r\nCall-ID: x\r\n\r\n"))
            .err()
            .map(|e| e.kind)
    };
    assert_eq!(kind("INVITE sip:a@b SIP/2.0"), None);
    assert_eq!(kind("INVITE  sip:a@b SIP/2.0"), Some(StartLine));
    assert_eq!(kind("INVITE sip:a@b  SIP/2.0"), Some(StartLine));
    assert_eq!(kind("INVITE sip:a@b SIP/2.0 "), Some(StartLine));
    assert_eq!(kind("INVITE <sip:a@b> SIP/2.0"), Some(StartLine));
    assert_eq!(kind("INVITE sip:a@b SIP/3.0"), Some(Version));
    assert_eq!(kind("INVITE sip:a@b HTTP/1.1"), Some(StartLine));
    assert_eq!(kind("IN(VITE sip:a@b SIP/2.0"), Some(StartLine));
    assert_eq!(kind("INVITE\tsip:a@b SIP/2.0"), Some(StartLine));
    assert_eq!(kind("SIP/2.0 200 OK"), None);
    assert_eq!(kind("SIP/2.0 200 "), None);
    assert_eq!(kind("SIP/2.0 200"), None);
    assert_eq!(kind("SIP/2.0 099 Low"), Some(StartLine));
    assert_eq!(kind("SIP/2.0 700 High"), Some(StartLine));
    assert_eq!(kind("SIP/2.0 2000 OK"), Some(StartLine));
    assert_eq!(kind("SIP/2.1 200 OK"), Some(Version));
    assert_eq!(resp("SIP/2.0 180 \r\n\r\n").reason, "");
    assert_eq!(kind("OPTIONS sip:a@b SIP/2.0\r\nBad Name: x"), Some(Header));
    assert_eq!(kind("OPTIONS sip:a@b SIP/2.0\r\nNoColon"), Some(Header));
    assert_eq!(
        kind("OPTIONS sip:a@b SIP/2.0\r\n folded-onto-start: x"),
        Some(Header)
    );
    assert_eq!(kind("OPTIONS sip:a@b SIP/2.0\r\nX: a\rb"), Some(Header));
    let bad_utf8 = Message::parse(
        Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nX: \xff\r\n\r\n"),
        &Limits::default(),
    );
    assert_eq!(bad_utf8.err().map(|e| e.kind), Some(Header));
}

#[test]
fn limits() {
    let many: String = (0..10).map(|i| format!("X{i}: v\r\n")).collect();
    let s = format!("OPTIONS sip:a@b SIP/2.0\r\n{many}\r\n");
    let lim = Limits {
        max_message_bytes: 65_535,
        max_headers: 5,
    };
    let e = Message::parse(Bytes::from(s.clone()), &lim).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooManyHeaders);
    let lim = Limits {
        max_message_bytes: 20,
        max_headers: 128,
    };
    let e = Message::parse(Bytes::from(s), &lim).unwrap_err();
    assert_eq!(e.kind, ParseErrorKind::TooLarge);
}

#[test]
fn uri_parsing() {
    let u = Uri::parse(&bs(
        "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x",
    ))
    .unwrap();
    assert_eq!(u.scheme, Scheme::Sips);
    assert_eq!(u.user.as_deref(), Some("alice"));
    assert_eq!(u.password.as_deref(), Some("pw"));
    assert_eq!(u.host, "[2001:db8::1]");
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
    assert_eq!(u.param("lr"), Some(None));
    assert_eq!(u.param("maddr"), None);
    assert_eq!(u.headers.as_deref(), Some("subject=x"));
    assert!(u.is_sip());
    assert_eq!(
        u.to_string(),
        "sips:alice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=x"
    );
    for bad in [
        "sip:a b@c",
        "<sip:a@b>",
        "sip:a@b:70000",
        "sip:a@b:",
        "sip:",
        "sip:@b",
        "sip:a@b;",
        "sip:a@b;;lr",
        "sip:a@[::1",
        "nocolon",
        "1x:abc",
        "sip:a@b c",
        "sip:a@b>x",
        "x:",
        "sip:a@b;x=",
    ] {
        assert!(Uri::parse(&bs(bad)).is_err(), "{bad} accepted");
    }
    let t = Uri::parse(&bs("tel:+1-201-555-0123")).unwrap();
    assert_eq!(
        (t.scheme.clone(), t.opaque.as_deref()),
        (Scheme::Tel, Some("+1-201-555-0123"))
    );
    assert!(!t.is_sip());
    assert_eq!(t.to_string(), "tel:+1-201-555-0123");
    let o = Uri::parse(&bs("Soap.Beep://192.0.2.103:3002")).unwrap();
    assert_eq!(o.scheme, Scheme::Other(bs("soap.beep")));
    let e = Uri::parse(&bs("sip:%75se%72@example.com")).unwrap();
    assert_eq!(e.user_unescaped().as_deref(), Some("user"));
    let n = Uri::new_sip(Some("bob"), "::1", Some(5060), ";lr");
    assert_eq!(n.to_string(), "sip:bob@[::1]:5060;lr");
    assert_eq!(Uri::parse(&bs(&n.to_string())).unwrap(), n);
    assert_eq!(
        Uri::new_sip(None, "example.com", None, "").to_string(),
        "sip:example.com"
    );
}

#[test]
fn name_addr_forms() {
    let ok = [
        (
            "\"A \\\"B\\\"\" <sip:a@b>;tag=1",
            Some("A \\\"B\\\""),
            true,
            Some("1"),
        ),
        (
            "caller<sip:caller@example.com>;tag=323",
            Some("caller"),
            true,
            Some("323"),
        ),
        ("tok1 tok2 <sip:a@b>", Some("tok1 tok2"), true, None),
        ("sip:+1972@gw1.example.net;unknownparam", None, false, None),
        ("sip:a@b ; tag = x", None, false, Some("x")),
        ("<sip:a@b;lr>", None, true, None),
        ("isbn:2983792873", None, false, None),
        ("<http://www.example.com>;tag=3", None, true, Some("3")),
    ];
    for (s, display, angle, tag) in ok {
        let n = NameAddr::parse(&bs(s)).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(n.display.as_deref(), display, "{s}");
        assert_eq!(n.angle, angle, "{s}");
        assert_eq!(n.tag(), tag, "{s}");
        let again = NameAddr::parse(&bs(&n.to_string())).unwrap();
        assert_eq!(again.uri, n.uri);
        assert_eq!(again.params, n.params);
    }
    let c = NameAddr::parse(&bs("sip:+1972@gw1.example.net;unknownparam")).unwrap();
    assert_eq!(c.params.get("unknownparam"), Some(None));
    assert_eq!(c.uri.param("unknownparam"), None);
    for bad in [
        "\"Mr. J. User <sip:j.user@example.com>",
        "< sip:t.watson@example.org >",
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "\"Joe\" <sip:joe@example.org>;;;;",
        "*",
        "",
        "<sip:a@b",
        "\"x\" sip:a@b",
        "<sip:a@b>;tag=",
        "<sip:a@b> junk",
    ] {
        assert!(NameAddr::parse(&bs(bad)).is_err(), "{bad} accepted");
    }
}

#[test]
fn via_forms() {
    let v = Via::parse(&bs("SIP  /   2.0 /UDP 192.0.2.2;branch=390skdjuw")).unwrap();
    assert_eq!(
        (&*v.transport, &*v.host, v.branch()),
        ("UDP", "192.0.2.2", Some("390skdjuw"))
    );
    let v = Via::parse(&bs(
        "SIP / 2.0 / TCP spindle.example.com ; branch = z9hG4bK9ikj8 ; received=[::1]",
    ))
    .unwrap();
    assert_eq!(v.branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(v.received(), Some("[::1]"));
    assert_eq!(
        v.to_string(),
        "SIP/2.0/TCP spindle.example.com;branch=z9hG4bK9ikj8;received=[::1]"
    );
    let v = Via::parse(&bs("SIP/2.0/UDP [2001:db8::9]:5070;rport=1234")).unwrap();
    assert_eq!((v.port, v.has_rport()), (Some(5070), true));
    assert_eq!(Via::parse(&bs(&v.to_string())).unwrap(), v);
    for bad in [
        "SIP/2.0/UDP 192.0.2.15;;",
        ";",
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host:99999",
        "SIP/7.0/UDP host",
        "SIP/2.0/UDPhost",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host junk",
    ] {
        assert!(Via::parse(&bs(bad)).is_err(), "{bad} accepted");
    }
}

#[test]
fn cseq_and_scalars() {
    let c = CSeq::parse(&bs("0009 INVITE")).unwrap();
    assert_eq!((c.seq, c.method), (9, Method::Invite));
    let c = CSeq::parse(&bs("2147483647 NEWMETHOD")).unwrap();
    assert_eq!(c.method, Method::Extension(bs("NEWMETHOD")));
    assert_eq!(c.to_string(), "2147483647 NEWMETHOD");
    for bad in [
        "2147483648 INVITE",
        "36893488147419103232 REGISTER",
        "1INVITE",
        "x INVITE",
        "1 IN VITE",
        "1",
    ] {
        assert!(CSeq::parse(&bs(bad)).is_err(), "{bad} accepted");
    }
    let r = req("OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 256\r\nExpires: 4294967296\r\n\r\n");
    assert!(r.headers.max_forwards().is_err());
    assert!(r.headers.expires().is_err());
    let r = req("OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 0068\r\nExpires: 4294967295\r\n\r\n");
    assert_eq!(r.headers.max_forwards(), Ok(Some(68)));
    assert_eq!(r.headers.expires(), Ok(Some(u32::MAX)));
}

#[test]
fn response_for_request_copies_headers() {
    let r = req(INVITE);
    let resp = Response::for_request(&r, 486);
    assert_eq!(resp.reason, "Busy Here");
    let names: Vec<&str> = resp.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Via", "From", "To", "Call-ID", "CSeq"]);
    assert!(resp.body.is_empty());
    let wire = resp.to_bytes();
    let s = std::str::from_utf8(&wire).unwrap();
    assert!(s.starts_with("SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\r\n"));
    assert!(s.ends_with("CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"));
    let mut out = bytes::BytesMut::new();
    resp.write(&mut out);
    assert_eq!(out.freeze(), wire);
}

#[test]
fn serializer_replaces_content_length() {
    let mut r = req(INVITE);
    r.body = Bytes::from_static(b"hello");
    r.headers.push(HeaderName::ContentLength, "999");
    let m = Message::parse(r.to_bytes(), &Limits::default()).unwrap();
    assert_eq!(&m.to_bytes()[..], &r.to_bytes()[..]);
    let Message::Request(m) = m else { panic!() };
    assert_eq!(&m.body[..], b"hello");
    assert_eq!(m.headers.count(&HeaderName::ContentLength), 1);
}

#[test]
fn stream_framing() {
    let lim = Limits::default();
    assert_eq!(frame(b"", &lim), Ok(None));
    assert_eq!(
        frame(b"\r\n\r\nOPTIONS", &lim),
        Ok(Some(Frame::Keepalive(4)))
    );
    let two = format!("{INVITE}{REGISTER}");
    assert_eq!(
        frame(two.as_bytes(), &lim),
        Ok(Some(Frame::Message(INVITE.len())))
    );
    for cut in 0..INVITE.len() {
        assert_eq!(frame(&INVITE.as_bytes()[..cut], &lim), Ok(None), "{cut}");
    }
    let no_cl = "OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n";
    assert_eq!(
        frame(no_cl.as_bytes(), &lim).unwrap_err().kind,
        ParseErrorKind::ContentLength
    );
    let neg = "OPTIONS sip:a@b SIP/2.0\r\nl: -3\r\n\r\n";
    assert_eq!(
        frame(neg.as_bytes(), &lim).unwrap_err().kind,
        ParseErrorKind::ContentLength
    );
    let small = Limits {
        max_message_bytes: 100,
        max_headers: 10,
    };
    assert_eq!(
        frame(INVITE.as_bytes(), &small).unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
    let endless = vec![b'a'; 200];
    assert_eq!(
        frame(&endless, &small).unwrap_err().kind,
        ParseErrorKind::TooLarge
    );
}

#[test]
fn error_responses() {
    let e = ParseError::new(ParseErrorKind::Version, "x");
    let text = "OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1,\r\n SIP/2.0/UDP g\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n";
    let r = error_response(text.as_bytes(), &e).unwrap();
    assert_eq!((r.status, &*r.reason), (505, "Version Not Supported"));
    let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["Via", "Via", "From", "To", "Call-ID", "CSeq"]);
    assert_eq!(r.headers.top_via().unwrap().branch(), Some("z9hG4bK1"));
    let e = ParseError::new(ParseErrorKind::StartLine, "x");
    assert_eq!(error_response(text.as_bytes(), &e).unwrap().status, 400);
    let e = ParseError::new(ParseErrorKind::TooLarge, "x");
    assert_eq!(error_response(text.as_bytes(), &e).unwrap().status, 513);
    assert!(error_response(OK200.as_bytes(), &e).is_none());
    assert!(error_response(b"garbage", &e).is_none());
    assert!(error_response(b"", &e).is_none());
    assert!(error_response(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\n", &e).is_none());
}

/// Regression (fuzz/artifacts/sip_message/crash-error-response-bare-cr): a header line with a
/// bare CR inside made `error_response` echo it, and the 400 it built did not parse.
#[test]
fn error_response_never_echoes_a_bare_cr() {
    let e = ParseError::new(ParseErrorKind::Header, "x");
    let text = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>\r\nCall-ID: x\r\u{14}Evil: 1\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert!(parse(text).is_err());
    assert!(error_response(text.as_bytes(), &e).is_none());
    // Trailing CRs are line ends, not content: still answered, and the answer parses.
    let text = text.replace("x\r\u{14}Evil: 1", "x\r");
    let r = error_response(text.as_bytes(), &e).expect("answered");
    assert!(Message::parse(r.to_bytes(), &Limits::default()).is_ok());
}

// ---------------------------------------------------------------------------------------------
// RFC 4475 corpus

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    /// Parse fails with this kind.
    Err(ParseErrorKind),
    /// A request that parses and that `validate_request` rejects with this status.
    Reject(u16),
    /// A request that parses and passes `validate_request`.
    Valid,
    /// A response that parses.
    Resp,
}

const EXPECTED: &[(&str, Outcome)] = {
    use Outcome::*;
    use ParseErrorKind as K;
    &[
        ("wsinv.dat", Valid),
        ("intmeth.dat", Valid),
        ("esc01.dat", Valid),
        ("escnull.dat", Valid),
        ("esc02.dat", Valid),
        ("lwsdisp.dat", Valid),
        ("longreq.dat", Valid),
        ("dblreq.dat", Valid),
        ("semiuri.dat", Valid),
        ("transports.dat", Valid),
        ("mpart01.dat", Valid),
        ("unreason.dat", Resp),
        ("noreason.dat", Resp),
        ("badinv01.dat", Reject(400)),
        ("clerr.dat", Err(K::ContentLength)),
        ("ncl.dat", Err(K::ContentLength)),
        ("scalar02.dat", Reject(400)),
        ("scalarlg.dat", Resp),
        ("quotbal.dat", Reject(400)),
        ("ltgtruri.dat", Err(K::StartLine)),
        ("lwsruri.dat", Err(K::StartLine)),
        ("lwsstart.dat", Err(K::StartLine)),
        ("trws.dat", Err(K::StartLine)),
        ("escruri.dat", Reject(400)),
        ("baddate.dat", Valid),
        ("regbadct.dat", Reject(400)),
        ("badaspec.dat", Reject(400)),
        ("baddn.dat", Reject(400)),
        ("badvers.dat", Err(K::Version)),
        ("mismatch01.dat", Reject(400)),
        ("mismatch02.dat", Reject(400)),
        ("bigcode.dat", Err(K::StartLine)),
        ("badbranch.dat", Valid),
        ("insuf.dat", Reject(400)),
        ("unkscm.dat", Valid),
        ("novelsc.dat", Valid),
        ("unksm2.dat", Valid),
        ("bext01.dat", Valid),
        ("invut.dat", Valid),
        ("regaut01.dat", Valid),
        ("multi01.dat", Reject(400)),
        ("mcl01.dat", Err(K::ContentLength)),
        ("bcast.dat", Resp),
        ("zeromf.dat", Valid),
        ("cparam01.dat", Valid),
        ("cparam02.dat", Valid),
        ("regescrt.dat", Valid),
        ("sdp01.dat", Valid),
        ("inv2543.dat", Valid),
    ]
};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::fs::read_dir(CORPUS)
        .unwrap_or_else(|e| panic!("RFC 4475 corpus missing at {CORPUS}: {e}"));
    let mut files: Vec<(String, Vec<u8>)> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    assert!(
        files.len() >= 49,
        "corpus incomplete: {} files",
        files.len()
    );
    files
}

fn outcome(data: &[u8]) -> Outcome {
    match Message::parse(Bytes::copy_from_slice(data), &Limits::default()) {
        Err(e) => Outcome::Err(e.kind),
        Ok(Message::Response(_)) => Outcome::Resp,
        Ok(Message::Request(r)) => match validate_request(&r) {
            Ok(()) => Outcome::Valid,
            Err(rej) => Outcome::Reject(rej.status),
        },
    }
}

#[test]
fn rfc4475_corpus_outcomes() {
    let files = corpus();
    let mut failures = Vec::new();
    for (name, data) in &files {
        let Some((_, want)) = EXPECTED.iter().find(|(f, _)| f == name) else {
            failures.push(format!("{name}: no expectation"));
            continue;
        };
        let got = outcome(data);
        if got != *want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(files.len(), EXPECTED.len());
}

#[test]
fn rfc4475_error_responses() {
    let files = corpus();
    let get = |n: &str| {
        files
            .iter()
            .find(|(f, _)| f == n)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    for (file, status) in [
        ("badvers.dat", 505),
        ("lwsstart.dat", 400),
        ("clerr.dat", 400),
        ("trws.dat", 400),
    ] {
        let data = get(file);
        let e = Message::parse(Bytes::from(data.clone()), &Limits::default()).unwrap_err();
        let r = error_response(&data, &e).unwrap_or_else(|| panic!("{file}: no response"));
        assert_eq!(r.status, status, "{file}");
        assert!(r.headers.call_id().is_some(), "{file}");
        assert_eq!(r.headers.count(&HeaderName::Via), 1, "{file}");
        r.headers.cseq().unwrap();
    }
    let data = get("bigcode.dat");
    let e = Message::parse(Bytes::from(data.clone()), &Limits::default()).unwrap_err();
    assert!(error_response(&data, &e).is_none());
}

#[test]
fn rfc4475_valid_details() {
    let files = corpus();
    let get = |n: &str| {
        let d = files
            .iter()
            .find(|(f, _)| f == n)
            .map(|(_, d)| d.clone())
            .unwrap();
        Message::parse(Bytes::from(d), &Limits::default()).unwrap()
    };
    let Message::Request(w) = get("wsinv.dat") else {
        panic!()
    };
    assert_eq!(w.headers.count(&HeaderName::Via), 3);
    assert_eq!(w.headers.cseq().unwrap().seq, 9);
    assert_eq!(w.headers.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(w.headers.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(w.headers.get(&HeaderName::Subject).map(|s| &**s), Some(""));
    assert_eq!(w.body.len(), 150);
    let vias: Vec<Via> = w
        .headers
        .get_all(&HeaderName::Via)
        .map(|v| Via::parse(v).unwrap())
        .collect();
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));
    let Message::Request(d) = get("dblreq.dat") else {
        panic!()
    };
    assert_eq!(d.method, Method::Register);
    assert!(d.body.is_empty());
    let Message::Request(e) = get("esc02.dat") else {
        panic!()
    };
    assert_eq!(e.headers.count(&HeaderName::Contact), 2);
    assert_eq!(e.headers.count(&HeaderName::Other(bs("C%6Fntact"))), 1);
    let Message::Request(e) = get("esc01.dat") else {
        panic!()
    };
    assert_eq!(
        e.uri.user_unescaped().as_deref(),
        Some("sips:user@example.com")
    );
    let Message::Request(n) = get("novelsc.dat") else {
        panic!()
    };
    assert_eq!(n.uri.scheme, Scheme::Other(bs("soap.beep")));
    let Message::Request(c) = get("cparam01.dat") else {
        panic!()
    };
    let contact = NameAddr::parse(c.headers.get(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.params.get("unknownparam"), Some(None));
    let Message::Request(c) = get("cparam02.dat") else {
        panic!()
    };
    let contact = NameAddr::parse(c.headers.get(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(contact.uri.param("unknownparam"), Some(None));
    assert!(contact.params.is_empty());
    let Message::Request(r) = get("regescrt.dat") else {
        panic!()
    };
    let contact = NameAddr::parse(r.headers.get(&HeaderName::Contact).unwrap()).unwrap();
    assert_eq!(
        contact.uri.headers.as_deref(),
        Some("Route=%3Csip:sip.example.com%3E")
    );
    let Message::Request(m) = get("mpart01.dat") else {
        panic!()
    };
    assert_eq!(m.body.len(), 553);
    assert!(m.headers.top_via().unwrap().has_rport());
    let Message::Request(i) = get("intmeth.dat") else {
        panic!()
    };
    assert_eq!(
        i.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    let Message::Request(s) = get("semiuri.dat") else {
        panic!()
    };
    assert_eq!(s.uri.user.as_deref(), Some("user;par=u%40example.net"));
    let Message::Request(l) = get("longreq.dat") else {
        panic!()
    };
    assert_eq!(l.headers.count(&HeaderName::Via), 34);
    let Message::Response(u) = get("unreason.dat") else {
        panic!()
    };
    assert!(u.reason.starts_with("= 2**3 * 5**2 "));
    // Every message that parses round-trips through the serializer.
    for (name, data) in &files {
        if let Ok(m) = Message::parse(Bytes::from(data.clone()), &Limits::default()) {
            let again = Message::parse(m.to_bytes(), &Limits::default())
                .unwrap_or_else(|e| panic!("{name}: re-parse failed: {e}"));
            assert_same(&m, &again);
        }
    }
}

/// Exercises every typed view of a message; must never panic.
fn poke(m: &Message) {
    let h = m.headers();
    let _ = (
        h.cseq(),
        h.top_via(),
        h.from(),
        h.to(),
        h.max_forwards(),
        h.expires(),
    );
    let _ = (h.call_id(), h.content_type());
    for x in h.iter() {
        match x.name {
            HeaderName::Via => {
                if let Ok(v) = Via::parse(&x.value) {
                    let _ = (v.branch(), v.received(), v.has_rport(), v.to_string());
                }
            }
            HeaderName::Contact | HeaderName::From | HeaderName::To | HeaderName::Route => {
                if let Ok(n) = NameAddr::parse(&x.value) {
                    let _ = (
                        n.tag(),
                        n.to_string(),
                        n.uri.user_unescaped(),
                        n.uri.param("lr"),
                    );
                    let _ = NameAddr::parse(&ByteString::from(n.to_string()));
                }
            }
            HeaderName::Authorization | HeaderName::WwwAuthenticate => {
                if let Ok(a) = Auth::parse(&x.value) {
                    let _ = a.get("realm");
                }
            }
            _ => {}
        }
    }
    let _ = m.to_bytes();
    if let Message::Request(r) = m {
        let _ = validate_request(r);
        let _ = Response::for_request(r, 400).to_bytes();
        let _ = r.uri.to_string();
    }
}

fn check_no_panic(data: &[u8]) {
    let lim = Limits {
        max_message_bytes: 4096,
        max_headers: 64,
    };
    match Message::parse(Bytes::copy_from_slice(data), &lim) {
        Ok(m) => poke(&m),
        Err(e) => {
            if let Some(r) = error_response(data, &e) {
                let _ = r.to_bytes();
            }
        }
    }
    let _ = frame(data, &lim);
}

#[test]
fn corpus_truncations_never_panic() {
    for (_, data) in corpus() {
        for cut in 0..=data.len() {
            check_no_panic(&data[..cut]);
        }
    }
}

#[test]
fn corpus_byte_flips_never_panic() {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    const INTERESTING: &[u8] = b"\r\n :;,<>\"\\@?[]=%/\t\x00\xff\xc3";
    for (_, data) in corpus() {
        for _ in 0..400 {
            let mut d = data.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let at = (next() % d.len() as u64) as usize;
                let r = next();
                d[at] = if r % 2 == 0 {
                    INTERESTING[(r / 2 % INTERESTING.len() as u64) as usize]
                } else {
                    (r >> 8) as u8
                };
            }
            check_no_panic(&d);
        }
    }
}

#[test]
fn response_wire_len_is_the_serialized_length() {
    for (_, data) in corpus() {
        let Ok(Message::Request(req)) = Message::parse(Bytes::from(data), &Limits::default())
        else {
            continue;
        };
        for (status, body_len) in [(100, 0), (200, 9), (401, 10), (486, 1234)] {
            let mut resp = Response::for_request(&req, status);
            resp.headers
                .push(HeaderName::ContentLength, ByteString::from_static("99"));
            resp.body = Bytes::from(vec![b'x'; body_len]);
            assert_eq!(
                resp.wire_len(),
                resp.to_bytes().len(),
                "{status} {body_len}"
            );
        }
    }
}

#[test]
fn to_and_from_tags_are_found_without_parsing_the_uri() {
    let cases = [
        ("<sip:bob@b.example>;tag=abc", Some("abc")),
        (
            "\"Bob; <x>\" <sip:bob@b.example;tag=no>;TAG=yes",
            Some("yes"),
        ),
        ("sip:bob@b.example;tag=t1;x=y", Some("t1")),
        ("Bob <sip:bob@b.example;tag=uri-param>", None),
        ("<sip:bob@b.example> ; tag = spaced ", Some("spaced")),
        ("<sip:bob@b.example>;tagx=1;xtag=2", None),
        ("\"unclosed <sip:bob@b.example>;tag=1", None),
        ("<sip:bob@b.example;tag=1", None),
    ];
    for (value, tag) in cases {
        let mut h = Headers::default();
        h.push(HeaderName::To, value);
        h.push(HeaderName::From, value);
        assert_eq!(h.to_tag(), tag, "{value}");
        assert_eq!(h.from_tag(), tag, "{value}");
        if let Ok(na) = h.to() {
            assert_eq!(na.tag(), tag, "agrees with the full parse: {value}");
        }
    }
    assert_eq!(Headers::default().to_tag(), None);
}
