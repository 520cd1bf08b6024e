"""``cavra.ports``: a taken port is reported with the process that holds it."""

from __future__ import annotations

import os
import socket

from cavra.ports import check_free, port_holder


def test_port_holder_names_this_process() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        holder = port_holder(port)
        assert holder is not None
        assert holder.startswith(f"pid {os.getpid()} (")
        problem = check_free("127.0.0.1", port)
        assert problem is not None
        assert f"127.0.0.1:{port} is in use by pid {os.getpid()}" in problem


def test_free_port_has_no_holder() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # bound then closed, never listened: nothing holds it
    assert port_holder(port) is None
    assert check_free("127.0.0.1", port) is None
