"""Server.reload(path): the SIGHUP reload for embedders. A user added by a reload registers while
the bindings made before it are kept; a changed listen address is named as needing a restart;
a file that does not parse raises InvalidArgument and changes nothing."""

import pytest

import rvoip
from conftest import Party


def write(path, listen, users):
    lines = "".join(f'{u} = "{p}"\n' for u, p in users.items())
    path.write_text(
        f'listen = ["{listen}"]\ndomain = "127.0.0.1"\nrelay = "off"\nstore = "memory"\n'
        f"[users]\n{lines}"
    )


def test_reload_adds_a_user_and_keeps_bindings(tmp_path):
    conf = tmp_path / "server.toml"
    write(conf, "udp:127.0.0.1:0", {"alice": "apw"})
    server = rvoip.Server.from_toml(str(conf))
    server.start()
    alice = carol = None
    try:
        alice = Party(server, "alice", "apw")
        assert alice.register().is_registered()
        port = server.port(rvoip.Transport.UDP)
        write(conf, f"udp:127.0.0.1:{port + 1}", {"alice": "apw", "carol": "cpw"})
        assert server.reload(str(conf)) == ["listen"]
        carol = Party(server, "carol", "cpw")
        assert carol.register().is_registered()
        assert server.stats().bindings == 2  # alice's binding survived the reload

        conf.write_text('listen = ["udp:127.0.0.1:0"\n')  # does not parse
        with pytest.raises(rvoip.RvoipError.InvalidArgument):
            server.reload(str(conf))
        assert server.stats().bindings == 2
    finally:
        for p in (alice, carol):
            if p is not None:
                p.close()
        server.stop()
