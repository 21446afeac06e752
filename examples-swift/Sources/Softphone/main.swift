// A command-line softphone over the rvoip Swift API: registers an account, then places a call
// (--call) or answers the first incoming one (default), sends DTMF, and hangs up after
// --duration seconds. Audio goes through the default input and output devices unless --tone.
//
//   swift run softphone --account sip:alice@192.0.2.10 --password apw --call sip:bob@192.0.2.10 --dtmf 123#
//   swift run softphone --account sip:bob@192.0.2.10 --password bpw
import Foundation
import Rvoip

struct Options {
    var account = ""
    var password = ""
    var server: String?
    var call: String?
    var dtmf: String?
    var tone: Double?
    var duration: Double = 10
}

func parseOptions() -> Options {
    var o = Options()
    var args = CommandLine.arguments.dropFirst().makeIterator()
    while let a = args.next() {
        switch a {
        case "--account": o.account = args.next() ?? ""
        case "--password": o.password = args.next() ?? ""
        case "--server": o.server = args.next()
        case "--call": o.call = args.next()
        case "--dtmf": o.dtmf = args.next()
        case "--tone": o.tone = args.next().flatMap(Double.init)
        case "--duration": o.duration = args.next().flatMap(Double.init) ?? 10
        default:
            FileHandle.standardError.write("unknown option \(a)\n".data(using: .utf8)!)
            exit(2)
        }
    }
    if o.account.isEmpty {
        FileHandle.standardError.write(
            "usage: softphone --account sip:user@host --password PW [--server host:port] [--call sip:peer@host] [--dtmf 123#] [--tone HZ] [--duration S]\n"
                .data(using: .utf8)!)
        exit(2)
    }
    return o
}

/// Prints every event and remembers the calls it hears about.
final class Printer: EndpointListener, @unchecked Sendable {
    private let lock = NSLock()
    private var incoming: UInt64?
    private var ended = Set<UInt64>()

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    func onEvent(event: Event) {
        switch event {
        case let .registrationChanged(accountId, state):
            print("account \(accountId): \(state)")
        case let .incomingCall(callId, _, caller, _, _):
            print("incoming call \(callId) from \(caller)")
            locked { if incoming == nil { incoming = callId } }
        case let .callStateChanged(callId, state):
            print("call \(callId): \(state)")
            if case .ended = state { _ = locked { ended.insert(callId) } }
        case let .mediaStarted(callId, codec, remote, direction, security):
            print("call \(callId): \(codec) to \(remote) (\(direction), security \(security))")
        case let .dtmfReceived(callId, digit):
            print("call \(callId): DTMF \(digit)")
        case let .statistics(callId, stats):
            print("call \(callId): rx \(stats.rxPackets) lost \(stats.rxLost) jitter \(stats.jitterMs) ms MOS \(stats.mos)")
        case .mediaStopped:
            break
        case let .messageReceived(_, sender, _, contentType, body):
            print("message from \(sender) (\(contentType)): \(String(decoding: body, as: UTF8.self))")
        case let .messageResult(messageId, status, reason):
            print("message \(messageId): \(status) \(reason)")
        case let .mediaSecurityFailed(callId, reason):
            print("call \(callId): media security failed: \(reason)")
        case let .transferRequested(callId, _, target, _):
            // This example does not follow transfers (RFC 3515): undecided, the request is
            // refused with 480 after 8 s (Endpoint.acceptTransfer would place the new call).
            print("call \(callId): transfer to \(target) requested (not followed)")
        case let .transferStatus(callId, status, reason, isFinal):
            print("call \(callId): transfer \(status) \(reason)\(isFinal ? " (final)" : "")")
        case let .callRedirected(callId, status, target):
            print("call \(callId): redirected (\(status)) to \(target)")
        // This example makes no subscriptions (Account.subscribe) and publishes no presence
        // (Account.publishPresence); the events are printed all the same.
        case let .subscriptionStateChanged(subscriptionId, state):
            print("subscription \(subscriptionId): \(state)")
        case let .buddyPresence(_, entity, online, note, activity):
            print("presence of \(entity): \(online ? "online" : "offline") \(activity ?? "") \(note ?? "")")
        case let .lineStateChanged(_, entity, state):
            print("line \(entity): \(state)")
        case let .publishResult(_, status, reason):
            print("presence published: \(status) \(reason)")
        }
    }

    func takeIncoming() -> UInt64? { locked { defer { incoming = nil }; return incoming } }
    func isEnded(_ id: UInt64) -> Bool { locked { ended.contains(id) } }
}

func audio(_ o: Options) throws -> CallOptions {
    guard let hz = o.tone else { return CallOptions() }  // default devices
    return CallOptions(source: try AudioSource.tone(freqHz: hz, sampleRateHz: 8000),
                       sink: AudioSink.discard())
}

let opts = parseOptions()
do {
    let endpoint = try Endpoint(options: EndpointOptions(udp: "0.0.0.0:0"))
    let printer = Printer()
    let subscription = endpoint.subscribe(listener: printer)
    defer { subscription.cancel(); endpoint.shutdown() }

    let account = try endpoint.addAccount(
        options: AccountOptions(aor: opts.account, password: opts.password, server: opts.server))
    let registered = try await account.register()
    print("registered: \(registered)")

    var call: Call?
    if let target = opts.call {
        call = try await endpoint.makeCall(target: target, account: account, options: try audio(opts))
    } else {
        print("waiting for a call …")
        while call == nil {
            if let id = printer.takeIncoming() {
                call = try endpoint.call(callId: id)
                try call?.answer(options: try audio(opts))
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }
    guard let call else { exit(1) }
    let deadline = Date().addingTimeInterval(opts.duration)
    var sentDtmf = false
    while Date() < deadline && !printer.isEnded(call.id()) {
        if !sentDtmf, let digits = opts.dtmf, case .connected? = try? call.state() {
            try call.sendDtmf(digits: digits)
            sentDtmf = true
        }
        try await Task.sleep(nanoseconds: 100_000_000)
    }
    if !printer.isEnded(call.id()) {
        if let s = try? call.stats() {
            print("sent \(s.txPackets) packets, received \(s.rxPackets), MOS \(s.mos)")
        }
        try? call.hangup()
        try await Task.sleep(nanoseconds: 300_000_000)
    }
} catch let e as RvoipError {
    print("rvoip: \(e)")
    exit(1)
}
