// End to end through the generated Kotlin API (tests/bindings/kotlin.sh compiles and runs it on
// the JVM with JNA): an embedded server, two endpoints that register (suspend), call, send DTMF,
// ask for a transfer that is declined, and hang up; the listener's events arrive in order; alice
// watches bob's presence (offline, then online "away" once he publishes) and his line; bad
// input throws RvoipException.*.
import java.util.concurrent.CopyOnWriteArrayList
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import uniffi.rvoip.*

class Recorder : EndpointListener {
    val events = CopyOnWriteArrayList<Event>()
    override fun onEvent(event: Event) { events.add(event) }

    suspend fun await(what: String, pred: (Event) -> Boolean): Event {
        repeat(200) {
            events.firstOrNull(pred)?.let { return it }
            delay(50)
        }
        throw AssertionError("timed out waiting for $what; saw $events")
    }
}

fun check(ok: Boolean, what: String) { if (!ok) throw AssertionError(what) }

fun quiet() = CallOptions(source = AudioSource.silence(), sink = AudioSink.discard())

fun main() = runBlocking {
    val server = Server(ServerOptions(listen = listOf("udp:127.0.0.1:0"), domain = "127.0.0.1",
        users = mapOf("alice" to "apw", "bob" to "bpw")))
    server.start()
    val registrar = "127.0.0.1:${server.port(Transport.UDP)}"
    val alice = Endpoint(EndpointOptions(udp = "127.0.0.1:0", statsIntervalMs = 0u))
    val bob = Endpoint(EndpointOptions(udp = "127.0.0.1:0", statsIntervalMs = 0u))
    val ra = Recorder()
    val rb = Recorder()
    val subs = listOf(alice.subscribe(ra), bob.subscribe(rb))
    val a = alice.addAccount(AccountOptions(aor = "sip:alice@127.0.0.1", password = "apw", server = registrar))
    val b = bob.addAccount(AccountOptions(aor = "sip:bob@127.0.0.1", password = "bpw", server = registrar))
    check(a.register() is RegistrationState.Registered, "alice registered")
    check(b.register() is RegistrationState.Registered, "bob registered")

    val call = alice.makeCall("sip:bob@127.0.0.1", a,
        CallOptions(source = AudioSource.tone(440.0, 8000u), sink = AudioSink.discard()))
    val incoming = rb.await("incoming") { it is Event.IncomingCall } as Event.IncomingCall
    check(incoming.caller.contains("sip:alice@127.0.0.1"), "caller ${incoming.caller}")
    bob.call(incoming.callId).answer(quiet())
    ra.await("alice connected") { it is Event.CallStateChanged && it.state is CallState.Connected }
    rb.await("bob media") { it is Event.MediaStarted }
    call.sendDtmf("12#")
    rb.await("DTMF #") { it is Event.DtmfReceived && it.digit == "#" }
    val digits = rb.events.filterIsInstance<Event.DtmfReceived>().map { it.digit }
    check(digits == listOf("1", "2", "#"), "digits $digits")
    check(call.stats().txPackets > 10u, "alice sent RTP")
    // A blind transfer (RFC 3515 REFER) that bob declines: alice hears 603, final.
    call.transfer("sip:carol@127.0.0.1")
    val req = rb.await("transfer request") { it is Event.TransferRequested } as Event.TransferRequested
    check(req.callId == incoming.callId && req.target == "sip:carol@127.0.0.1", "request $req")
    bob.rejectTransfer(req.transferId, 603u)
    val st = ra.await("transfer status") { it is Event.TransferStatus } as Event.TransferStatus
    check(st.status == 603.toUShort() && st.isFinal && st.callId == call.id(), "status $st")
    check(call.state() is CallState.Connected, "the call stays up")
    call.hangup()
    val ended = rb.await("bob ended") { it is Event.CallStateChanged && it.state is CallState.Ended }
    check(((ended as Event.CallStateChanged).state as CallState.Ended).status == 200.toUShort(), "BYE → 200")

    // Bob's whole trace, in order.
    val trace = rb.events.map {
        when (it) {
            is Event.RegistrationChanged -> "reg:" + it.state.javaClass.simpleName
            is Event.IncomingCall -> "incoming"
            is Event.CallStateChanged -> "call:" + it.state.javaClass.simpleName
            is Event.MediaStarted -> "media"
            is Event.MediaStopped -> "media:stopped"
            is Event.DtmfReceived -> "dtmf:" + it.digit
            is Event.Statistics -> "stats"
            is Event.MessageReceived -> "message"
            is Event.MessageResult -> "message:" + it.status
            is Event.MediaSecurityFailed -> "media:insecure"
            is Event.TransferRequested -> "transfer:requested"
            is Event.TransferStatus -> "transfer:" + it.status
            is Event.CallRedirected -> "redirected"
            is Event.SubscriptionStateChanged -> "subscription:" + it.state.javaClass.simpleName
            is Event.BuddyPresence -> "presence:" + it.online
            is Event.LineStateChanged -> "line:" + it.state
            is Event.PublishResult -> "publish:" + it.status
        }
    }
    val want = listOf("reg:Registering", "reg:Registered", "incoming", "call:Ringing", "media",
        "call:Connected", "dtmf:1", "dtmf:2", "dtmf:#", "transfer:requested", "stats", "media:stopped",
        "call:Ended")
    check(trace == want, "bob's events $trace")

    // Presence (RFC 3856) through the server's presence agent: offline until bob publishes,
    // then online "away"; bob's line (RFC 4235) is idle; unsubscribing terminates.
    val sub = a.subscribe("sip:bob@127.0.0.1", EventPackage.PRESENCE)
    val off = ra.await("first presence") { it is Event.BuddyPresence } as Event.BuddyPresence
    check(off.subscriptionId == sub && !off.online && off.entity.contains("sip:bob@"), "presence $off")
    b.publishPresence(true, note = "Away", activity = "away")
    val pub = rb.await("publish result") { it is Event.PublishResult } as Event.PublishResult
    check(pub.status == 200.toUShort() && pub.accountId == b.id(), "publish $pub")
    val on = ra.await("bob online") { it is Event.BuddyPresence && it.online } as Event.BuddyPresence
    check(on.activity == "away" && on.note == "Away", "presence $on")
    val lamp = a.subscribe("sip:bob@127.0.0.1", EventPackage.DIALOG)
    val line = ra.await("bob's line") { it is Event.LineStateChanged } as Event.LineStateChanged
    check(line.subscriptionId == lamp && line.state == LineState.IDLE, "line $line")
    alice.unsubscribe(sub)
    val gone = ra.await("unsubscribed") {
        it is Event.SubscriptionStateChanged && it.subscriptionId == sub && it.state is SubscriptionState.Terminated
    } as Event.SubscriptionStateChanged
    check((gone.state as SubscriptionState.Terminated).reason == "unsubscribed", "ended ${gone.state}")
    try { alice.unsubscribe(sub); throw AssertionError("no NotFound") } catch (e: RvoipException.NotFound) {}
    alice.unsubscribe(lamp)

    // Documented exceptions.
    try { alice.call(424242u); throw AssertionError("no NotFound") } catch (e: RvoipException.NotFound) {}
    try { AudioSource.tone(5000.0, 8000u); throw AssertionError("no InvalidArgument") }
    catch (e: RvoipException.InvalidArgument) { check(e.detail.contains("5000"), e.detail) }
    try {
        alice.addAccount(AccountOptions(aor = "sip:alice@127.0.0.1", password = "wrong", server = registrar)).register()
        throw AssertionError("no RegistrationFailed")
    } catch (e: RvoipException.RegistrationFailed) { check(e.status == 403.toUShort() || e.status == 401.toUShort(), "status ${e.status}") }

    subs.forEach { it.close() }
    alice.shutdown(); bob.shutdown(); server.stop()
    println("kotlin end-to-end: OK (${rb.events.size} events at bob: $trace)")
}
