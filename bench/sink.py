"""The throughput sink: nginx from Debian's packages, answering every request with a Splunk-style 200.

nginx answers in microseconds from C, so what a benchmark measures is the client side (CAVRA or a
baseline), not the receiver. The bench installs it when missing (``apt-get install -y nginx-light``, then
``nginx``; ``apt-get update`` first when the package lists are empty or stale), writes a private
``nginx.conf`` under a temporary directory and runs it in the foreground on a free port of 127.0.0.1.
nginx never listens anywhere else, and it is stopped (SIGTERM, then SIGKILL) when the bench ends.

When nginx cannot be had at all (no apt, no root), :class:`Sink` falls back to a small aiohttp server in a
subprocess and says so in ``Sink.kind``/``Sink.note``: the numbers are then labelled, not silently mixed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import TracebackType

#: the answer for every request (what Splunk HEC answers for an accepted event)
BODY = '{"text":"Success","code":0}'
_NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
_APT_TIMEOUT = 600


def free_port() -> int:
    """A port of 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Wait until something accepts connections on 127.0.0.1:port, or fail if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the process exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in _NGINX_CANDIDATES if os.access(c, os.X_OK)), None)


def _apt(*args: str) -> bool:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            ["apt-get", *args], env=env, capture_output=True, timeout=_APT_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def install_nginx(log: list[str]) -> str | None:
    """Install nginx from Debian's packages (root and apt-get needed); return the binary or ``None``."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        log.append("nginx is not installed and cannot be installed here (needs root and apt-get)")
        return None
    for refresh in (False, True):
        if refresh:
            log.append("apt-get update")
            _apt("update", "-qq")
        for package in ("nginx-light", "nginx"):
            if _apt("install", "-y", "-qq", "--no-install-recommends", package):
                log.append(f"installed {package} from Debian's packages")
                _stop_packaged_service()
                return find_nginx()
    log.append("apt-get could not install nginx-light or nginx")
    return None


def _stop_packaged_service() -> None:
    """The package may start its own nginx (port 80) on install: stop it; the bench runs its own."""
    pid_file = Path("/run/nginx.pid")
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        with open(f"/proc/{pid}/comm", encoding="ascii") as fh:
            if fh.read().strip() != "nginx":
                return
        os.kill(pid, signal.SIGQUIT)
    except OSError:
        return


def nginx_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stderr or done.stdout).strip()
    return text.split("/", 1)[1] if "/" in text else text or "unknown"


def nginx_conf(root: Path, port: int) -> str:
    temp = {name: root / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
        path.chmod(0o777)  # the worker process may run as an unprivileged user
    return textwrap.dedent(
        f"""\
        daemon off;
        worker_processes 1;
        error_log stderr warn;
        pid {root / "nginx.pid"};
        events {{ worker_connections 4096; }}
        http {{
            access_log off;
            keepalive_requests 1000000;
            keepalive_timeout 60s;
            client_max_body_size 16m;
            client_body_temp_path {temp["body"]};
            proxy_temp_path {temp["proxy"]};
            fastcgi_temp_path {temp["fastcgi"]};
            uwsgi_temp_path {temp["uwsgi"]};
            scgi_temp_path {temp["scgi"]};
            server {{
                listen 127.0.0.1:{port} backlog=4096;
                location / {{
                    default_type application/json;
                    return 200 '{BODY}';
                }}
            }}
        }}
        """
    )


_FALLBACK = """
import sys
from aiohttp import web
async def answer(request):
    await request.read()
    return web.Response(text=sys.argv[2], content_type="application/json")
app = web.Application(client_max_size=16 * 1024 * 1024)
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


class Sink:
    """``with Sink() as sink:`` → nginx on ``sink.url``; ``kind`` is ``nginx`` or ``aiohttp-fallback``."""

    def __init__(self, *, allow_install: bool = True) -> None:
        self.allow_install = allow_install
        self.port = 0
        self.kind = ""
        self.version = ""
        self.log: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def note(self) -> str:
        return "; ".join(self.log)

    def start(self) -> Sink:
        binary = find_nginx()
        if binary is None and self.allow_install:
            binary = install_nginx(self.log)
        self._tmp = tempfile.TemporaryDirectory(prefix="cavra-bench-sink-")
        root = Path(self._tmp.name)
        root.chmod(0o755)
        if binary is not None:
            for _ in range(5):  # a port picked free can be taken before nginx binds it: pick again
                self.port = free_port()
                conf = root / "nginx.conf"
                conf.write_text(nginx_conf(root, self.port), encoding="utf-8")
                errors = root / "error.log"
                with open(errors, "wb") as err_fh:
                    proc = subprocess.Popen(
                        [binary, "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL, stderr=err_fh
                    )
                try:
                    wait_listening(self.port, proc)
                except RuntimeError as exc:
                    self._kill(proc)
                    said = errors.read_text(encoding="utf-8", errors="replace").strip()[:500]
                    self.log.append(f"nginx did not start: {exc} {said}".strip())
                    continue
                self._proc, self.kind, self.version = proc, "nginx", nginx_version(binary)
                return self
        self.port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-c", _FALLBACK, str(self.port), BODY],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_listening(self.port, proc)
        self._proc, self.kind = proc, "aiohttp-fallback"
        self.version = "aiohttp (nginx unavailable)"
        self.log.append(
            "using the aiohttp fallback sink: absolute numbers are not comparable with nginx runs"
        )
        return self

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def stop(self) -> None:
        if self._proc is not None:
            self._kill(self._proc)
            self._proc = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
