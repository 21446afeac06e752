// A browser-style SIP client (SIP.js over the `ws` package in node) against rvoip-server over
// WSS (RFC 7118), used by tests/integration/sipjs.sh:
//   1. REGISTER over wss:// (digest auth), certificate verified via NODE_EXTRA_CA_CERTS;
//   2. MESSAGE to the SDK peer (must be accepted with 2xx);
//   3. waits for the SDK peer's MESSAGE back (the server routes it down our WebSocket);
//   4. INVITE to the SDK peer with a fixed PCMU offer (SIP.js's session description handler is
//      replaced: node has no WebRTC), waits for the 2xx, counts RTP arriving at the offered
//      port, then BYE and waits for its 2xx;
//   5. unregisters.
// Prints one line per step and "SIPJS OK" at the end; exits non-zero on any failure or after
// TIMEOUT_S seconds.
//
// Usage: node peer.mjs WSS_URL USER PASSWORD DOMAIN PEER_URI

import dgram from "node:dgram";
import WebSocket from "ws";
import { Inviter, Messager, Registerer, RegistererState, SessionState, UserAgent } from "sip.js";

// SIP.js opens its transport with the browser's global WebSocket(url, "sip").
globalThis.WebSocket = WebSocket;

const [wssUrl, user, password, domain, peerUri] = process.argv.slice(2);
if (!peerUri) {
  console.error("usage: node peer.mjs WSS_URL USER PASSWORD DOMAIN PEER_URI");
  process.exit(2);
}
const TIMEOUT_S = Number(process.env.TIMEOUT_S || 30);
const ECHO_PREFIX = "echo: ";
const TEXT = `hello from SIP.js ${process.pid}`;

const fail = (why) => {
  console.error(`SIPJS FAIL: ${why}`);
  process.exit(1);
};
setTimeout(() => fail(`timed out after ${TIMEOUT_S} s`), TIMEOUT_S * 1000).unref();

const log = (s) => console.log(`[sipjs ${new Date().toISOString().slice(11, 23)}] ${s}`);

// RTP from the SDK peer (through the relay) arrives here.
const rtp = dgram.createSocket("udp4");
let rtpPackets = 0;
rtp.on("message", () => {
  rtpPackets += 1;
});
await new Promise((r) => rtp.bind(0, "127.0.0.1", r));
const rtpPort = rtp.address().port;

const sdpOffer = () =>
  [
    "v=0",
    `o=sipjs ${Date.now()} 1 IN IP4 127.0.0.1`,
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    `m=audio ${rtpPort} RTP/AVP 0 101`,
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "",
  ].join("\r\n");

let remoteSdp = null;
/** A session description handler without WebRTC: a fixed audio offer, the answer kept. */
class FixedSdh {
  close() {}
  getDescription() {
    return Promise.resolve({ body: sdpOffer(), contentType: "application/sdp" });
  }
  hasDescription(contentType) {
    return contentType === "application/sdp";
  }
  rollbackDescription() {
    return Promise.resolve();
  }
  sendDtmf() {
    return false;
  }
  setDescription(sdp) {
    remoteSdp = sdp;
    return Promise.resolve();
  }
}

/** A request delegate recording the final status; `settled()` waits (up to 1 s) for it, since
 * SIP.js may call the delegate just after the session's state change. */
function finalStatus() {
  let status = 0;
  const record = (r) => {
    status = r.message.statusCode;
  };
  return {
    delegate: { onAccept: record, onReject: record },
    status: () => status,
    settled: async () => {
      for (let i = 0; i < 50 && status === 0; i++) await new Promise((r) => setTimeout(r, 20));
      return status;
    },
  };
}

let echoed = null;
const echoWaiters = [];
const ua = new UserAgent({
  uri: UserAgent.makeURI(`sip:${user}@${domain}`),
  transportOptions: { server: wssUrl, traceSip: process.env.TRACE_SIP === "1" },
  authorizationUsername: user,
  authorizationPassword: password,
  logLevel: "warn",
  sessionDescriptionHandlerFactory: () => new FixedSdh(),
  delegate: {
    onMessage(message) {
      const body = message.request.body;
      log(`MESSAGE received from ${message.request.from.uri}: ${JSON.stringify(body)}`);
      message.accept();
      if (body.startsWith(ECHO_PREFIX)) {
        echoed = body;
        echoWaiters.splice(0).forEach((w) => w());
      }
    },
    onInvite(invitation) {
      invitation.reject({ statusCode: 486 });
    },
  },
});

await ua.start();
log(`connected to ${wssUrl}`);

// 1. REGISTER
const registerer = new Registerer(ua, { expires: 300 });
await new Promise((resolve, reject) => {
  registerer.stateChange.addListener((s) => {
    if (s === RegistererState.Registered) resolve();
  });
  registerer
    .register({
      requestDelegate: {
        onReject: (r) => reject(new Error(`REGISTER rejected: ${r.message.statusCode}`)),
      },
    })
    .catch(reject);
}).catch((e) => fail(e.message));
log("registered");

// 2. MESSAGE to the SDK peer
const target = UserAgent.makeURI(peerUri);
if (!target) fail(`bad peer URI ${peerUri}`);
const status = await new Promise((resolve) => {
  new Messager(ua, target, TEXT, "text/plain").message({
    requestDelegate: {
      onAccept: (r) => resolve(r.message.statusCode),
      onReject: (r) => resolve(r.message.statusCode),
    },
  });
});
if (status < 200 || status > 299) fail(`MESSAGE to ${peerUri} answered ${status}`);
log(`MESSAGE to ${peerUri}: ${status}`);

// 3. The peer's MESSAGE back, down our WebSocket
if (!echoed) await new Promise((r) => echoWaiters.push(r));
if (echoed !== ECHO_PREFIX + TEXT) fail(`unexpected echo ${JSON.stringify(echoed)}`);
log("MESSAGE from the peer: ok");

// 4. INVITE, 2xx, RTP, BYE
const inviter = new Inviter(ua, target);
const established = new Promise((resolve, reject) => {
  inviter.stateChange.addListener((s) => {
    if (s === SessionState.Established) resolve();
    if (s === SessionState.Terminated) reject(new Error("call terminated before it was established"));
  });
});
const invite = finalStatus();
await inviter.invite({ requestDelegate: invite.delegate });
await established.catch((e) => fail(`${e.message} (INVITE status ${invite.status()})`));
const inviteStatus = await invite.settled();
if (inviteStatus < 200 || inviteStatus > 299) fail(`INVITE answered ${inviteStatus}`);
log(`INVITE answered ${inviteStatus}, established`);
if (!remoteSdp || !/m=audio [1-9]\d* RTP\/AVP 0\b/.test(remoteSdp)) fail(`answer SDP: ${remoteSdp}`);
await new Promise((r) => setTimeout(r, 1500));
log(`RTP packets received: ${rtpPackets}`);
if (rtpPackets < 10) fail(`only ${rtpPackets} RTP packets from the peer in 1.5 s`);

const terminated = new Promise((resolve) => {
  inviter.stateChange.addListener((s) => {
    if (s === SessionState.Terminated) resolve();
  });
});
const bye = finalStatus();
await inviter.bye({ requestDelegate: bye.delegate });
await terminated;
const byeStatus = await bye.settled();
if (byeStatus !== 200) fail(`BYE answered ${byeStatus}`);
log("BYE answered 200");

// 5. unregister
await registerer.unregister().catch(() => {});
await new Promise((r) => setTimeout(r, 300));
await ua.stop();
rtp.close();
console.log("SIPJS OK");
process.exit(0);
