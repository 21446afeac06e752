"""Server listeners are reported with their own transport: SIP over WebSocket (RFC 7118) as
Transport.WS / Transport.WSS, not as TCP; an endpoint's account cannot use them."""

import pytest

import rvoip


def test_websocket_listeners_are_reported_as_ws_and_wss(tmp_path):
    s = rvoip.Server(rvoip.ServerOptions(
        listen=["udp:127.0.0.1:0", "ws:127.0.0.1:0", "wss:127.0.0.1:0"], domain="127.0.0.1",
        users={"alice": "apw"}, data_dir=str(tmp_path)))
    s.start()
    try:
        kinds = [a.transport for a in s.local_addresses()]
        assert len(kinds) == 3 and set(kinds) == {rvoip.Transport.UDP, rvoip.Transport.WS,
                                                  rvoip.Transport.WSS}, kinds
        ws, wss = s.port(rvoip.Transport.WS), s.port(rvoip.Transport.WSS)
        assert ws and wss and ws != wss
        assert s.port(rvoip.Transport.TCP) is None
        assert s.port(rvoip.Transport.TLS) is None
    finally:
        s.stop()
    assert s.port(rvoip.Transport.WS) is None


def test_an_account_over_websocket_is_refused():
    ep = rvoip.Endpoint(rvoip.EndpointOptions(udp="127.0.0.1:0", stats_interval_ms=0))
    try:
        for t in (rvoip.Transport.WS, rvoip.Transport.WSS):
            with pytest.raises(rvoip.RvoipError.InvalidArgument):
                ep.add_account(rvoip.AccountOptions(aor="sip:alice@127.0.0.1", password="apw",
                                                    server="127.0.0.1:5060", transport=t))
        assert ep.port(rvoip.Transport.WS) is None
    finally:
        ep.shutdown()
