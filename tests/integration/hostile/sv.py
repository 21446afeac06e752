#!/usr/bin/env python3
"""Run a SIPVicious tool (PyPI sipvicious) from a chosen loopback source address.

sipvicious 0.3.8's svwar and svcrack accept -b/--bindingip but never pass it on (they bind to all
addresses, and their Via names the host's address): here socket.bind to the wildcard address becomes
a bind to SRC, and -x SRC sets the address they write into their messages.

Usage: sv.py SRC svwar|svcrack [tool arguments...]
"""
import socket
import sys

src, tool, args = sys.argv[1], sys.argv[2], sys.argv[3:]
_bind = socket.socket.bind


def bind(self, addr):
    if isinstance(addr, tuple) and addr[0] in ("", "0.0.0.0"):
        addr = (src,) + tuple(addr[1:])
    return _bind(self, addr)


socket.socket.bind = bind
if tool == "svwar":
    from sipvicious import svwar as m
elif tool == "svcrack":
    from sipvicious import svcrack as m
else:
    sys.exit("tool must be svwar or svcrack")
sys.argv = ["sipvicious_" + tool, "-x", src] + args
m.main()
