"""``cavra serve``: the HTTP API on uvicorn; ``cavra api-token``: make a token for its tokens file.

Protected mode: with no API tokens configured the server refuses to listen on anything but loopback (and
answers loopback clients only), so nothing is ever open on a network by accident. A server listening on
loopback (or given ``--allowed-host``) answers only loopback ``Host`` names and the allowed ones, so a page
whose DNS name is re-pointed at 127.0.0.1 (DNS rebinding) is answered 421. Shutdown (SIGINT,
SIGTERM) stops accepting connections, then waits for in-flight deliveries before it closes the store. The
server runs an outbox worker in-process (``--no-worker`` leaves delivery to ``cavra worker`` processes).
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import replace
from importlib.util import find_spec
from typing import Annotated, Literal

import typer

from cavra.cli.common import console, fail, handled

log = logging.getLogger("cavra.api")


def bind_is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is loopback (a name that does not resolve is not)."""
    from cavra.api.auth import is_loopback

    if is_loopback(host):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto is TCP; without it every
    # keep-alive answer waits ~40 ms for the client's delayed ACK (Nagle), as the bench showed
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {host}:{port} ({exc.strerror or exc})")
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def event_loop_and_parser() -> tuple[Literal["uvloop", "asyncio"], Literal["httptools", "h11"]]:
    """uvloop and httptools (from ``uvicorn[standard]``) when installed, else the pure-Python pair."""
    loop: Literal["uvloop", "asyncio"] = "uvloop" if find_spec("uvloop") else "asyncio"
    http: Literal["httptools", "h11"] = "httptools" if find_spec("httptools") else "h11"
    return loop, http


HostOption = Annotated[str, typer.Option("--host", help="Address to listen on.")]
PortOption = Annotated[int, typer.Option("--port", help="Port to listen on (0 picks a free one).")]
ConfigOption = Annotated[
    str | None,
    typer.Option("--config", help="Connector config (JSON or YAML); default $CAVRA_CONNECTOR_CONFIG."),
]
StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        metavar="URL",
        help="Evidence store: sqlite:///PATH, postgresql://…, json:FILE or a path; "
        "default $CAVRA_STORE_URL, else .cavra/evidence/metadata.db.",
    ),
]
TokensOption = Annotated[
    str | None,
    typer.Option(
        "--tokens",
        metavar="FILE",
        help="API tokens file (hashed tokens and roles); default $CAVRA_API_TOKENS_FILE.",
    ),
]
ExportsDirOption = Annotated[
    str | None,
    typer.Option(
        "--exports-dir",
        metavar="DIR",
        help="Directory export artifact paths are relative to; default $CAVRA_EXPORTS_DIR or the cwd.",
    ),
]
MaxBodyBytesOption = Annotated[
    int | None,
    typer.Option("--max-body-bytes", help="Largest request body (default 1 MiB; $CAVRA_API_MAX_BODY_BYTES)."),
]
LogFormatOption = Annotated[
    str, typer.Option("--log-format", help="'text' (readable) or 'json' (one object per line).")
]
LogLevelOption = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error.")]
ShutdownTimeoutOption = Annotated[
    float,
    typer.Option("--shutdown-timeout", help="Seconds to wait for in-flight deliveries on shutdown."),
]
WorkerOption = Annotated[
    bool, typer.Option("--worker/--no-worker", help="Run an outbox worker in this process.")
]
WorkerConcurrencyOption = Annotated[
    int, typer.Option("--worker-concurrency", help="Jobs the in-process worker delivers at once.")
]
AllowedHostOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-host",
        metavar="NAME",
        help="A Host name answered besides loopback ones (repeatable; default $CAVRA_ALLOWED_HOSTS, "
        "comma-separated). Turns the Host check on for any --host.",
    ),
]


def _checked_options(
    log_format: str, log_level: str, port: int, worker_concurrency: int
) -> Literal["json", "text"]:
    """Fail on an option out of range; the log format."""
    if log_format not in ("text", "json"):
        fail(f"--log-format: must be 'text' or 'json', got {log_format!r}")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(f"--log-level: must be debug, info, warning or error, got {log_level!r}")
    if not 0 <= port <= 65535:
        fail(f"--port: must be between 0 and 65535, got {port}")
    if not 1 <= worker_concurrency <= 256:
        fail(f"--worker-concurrency: must be between 1 and 256, got {worker_concurrency}")
    return "json" if log_format == "json" else "text"


def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    config: ConfigOption = None,
    store: StoreOption = None,
    tokens: TokensOption = None,
    exports_dir: ExportsDirOption = None,
    max_body_bytes: MaxBodyBytesOption = None,
    log_format: LogFormatOption = "text",
    log_level: LogLevelOption = "info",
    shutdown_timeout: ShutdownTimeoutOption = 60.0,
    worker: WorkerOption = True,
    worker_concurrency: WorkerConcurrencyOption = 8,
    allowed_host: AllowedHostOption = None,
) -> None:
    """Serve the HTTP API (FastAPI on uvicorn). See docs/api.md."""
    import uvicorn

    from cavra.api.app import create_app
    from cavra.api.logs import configure_logging, set_redactor
    from cavra.api.settings import ApiSettings

    fmt = _checked_options(log_format, log_level, port, worker_concurrency)
    with handled():
        settings = ApiSettings.from_environment(
            config_path=config,
            store_url=store,
            tokens_file=tokens,
            max_body_bytes=max_body_bytes,
            shutdown_timeout=shutdown_timeout,
            exports_dir=exports_dir,
            allowed_hosts=allowed_host or (),
        )
        loopback = bind_is_loopback(host)
        settings = replace(
            settings,
            worker=worker,
            worker_concurrency=worker_concurrency,
            host_check=loopback or settings.tokens.protected_mode or bool(settings.allowed_hosts),
        )
        if settings.tokens.protected_mode and not loopback:
            fail(
                f"refusing to listen on {host}: no API tokens are configured (protected mode serves "
                "loopback only). Configure tokens with --tokens FILE or CAVRA_API_TOKEN_<ROLE>, "
                "or use --host 127.0.0.1"
            )
        configure_logging(fmt, log_level)
        app = create_app(settings)
        set_redactor(app.state.runtime.redactor)
    sock = _listen(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    mode = (
        "protected mode: loopback clients only" if settings.tokens.protected_mode else "API tokens required"
    )
    loop, http = event_loop_and_parser()
    log.info("cavra API listening on http://%s:%d (%s; %s, %s)", shown, bound, mode, loop, http)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            loop=loop,
            http=http,
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
            timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    log.info("cavra API stopped")


def api_token(
    role: Annotated[str, typer.Option("--role", help="auditor, operator or admin.")],
    name: Annotated[str, typer.Option("--name", help="A name for the token, shown in 403 answers and logs.")],
) -> None:
    """Make a new API token: print it once, and the line to add to the tokens file (its hash only)."""
    from cavra.api.auth import ROLES, hash_token, new_token

    if role not in ROLES:
        fail(f"--role: must be one of {', '.join(ROLES)}")
    token = new_token()
    entry = {"name": name, "role": role, "sha256": hash_token(token)}
    console.print("token (shown once; give it to the client, it is not stored):", highlight=False)
    print(token)
    console.print('add to the tokens file\'s "tokens" list:', highlight=False)
    print(json.dumps(entry))
