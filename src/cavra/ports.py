"""Which process holds a TCP port: so that "port taken" errors name the culprit instead of guessing.

Linux only, from ``/proc`` (no ``ss``/``lsof`` needed): a listening socket's inode is found in
``/proc/net/tcp`` and ``/proc/net/tcp6``, then the process whose ``/proc/<pid>/fd`` links to it.
Processes of other users may be unreadable; then the answer says so instead of naming one.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

_LISTEN = "0A"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def _command_line(pid_dir: Path) -> str:
    try:
        raw = (pid_dir / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]
    text = " ".join(words) or "?"
    return text if len(text) <= 120 else text[:117] + "..."


def port_holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """``"pid 1234 (python -m cavra.demo)"`` for the process listening on ``port``, or None if unknown."""
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    try:
        pids = [p for p in os.listdir(proc) if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if link in targets:
                return f"pid {pid} ({_command_line(proc / pid)})"
    return "a process this user cannot inspect"


def port_taken_message(host: str, port: int) -> str:
    """``"127.0.0.1:8000 is in use by pid 1234 (...)"``; the holder is left out when it cannot be found."""
    holder = port_holder(port)
    where = f"{host}:{port}"
    return f"{where} is in use by {holder}" if holder else f"{where} is in use"


def check_free(host: str, port: int) -> str | None:
    """None when ``host:port`` can be listened on now, else a one-line reason naming the holder."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return port_taken_message(host, port)
            return f"cannot listen on {host}:{port} ({exc.strerror or exc})"
    return None
