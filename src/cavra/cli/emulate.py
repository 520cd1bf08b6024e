"""``cavra emulate``: serve the provider emulators on loopback (and write a config pointed at them).

The emulators answer ``GET /_emulator/requests`` with what they received, credentials included, to anyone
who can reach them: on an address that is not loopback the command warns (one line on stderr).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from cavra.cli.common import console, err_console, fail, handled


def exposure_warning(host: str) -> str | None:
    """The warning for a listen address that is not loopback (None for loopback)."""
    from cavra.cli.serve import bind_is_loopback

    if bind_is_loopback(host):
        return None
    return (
        f"warning: the emulators listen on {host}, not loopback: anyone who can reach it can read the "
        "credentials clients send them at /_emulator/requests"
    )


def emulate(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0 picks a free one).")] = 8900,
    write_config: Annotated[
        str | None,
        typer.Option(
            "--write-config", metavar="DIR", help="Write DIR/connectors.json and DIR/emulators.env first."
        ),
    ] = None,
    providers: Annotated[
        str | None, typer.Option("--providers", help="Comma-separated emulators to serve (default: all).")
    ] = None,
) -> None:
    """Serve faithful local emulators of every provider, for demos and tests."""
    from cavra.emulators.server import EMULATORS, EmulatorServer, write_demo_config

    names = None
    if providers:
        names = [p.strip() for p in providers.split(",") if p.strip()]
        unknown = [n for n in names if n not in EMULATORS]
        if unknown:
            fail(f"--providers: unknown emulator {unknown[0]!r}; known: {', '.join(EMULATORS)}")
    if not 0 <= port <= 65535:
        fail(f"--port: must be between 0 and 65535, got {port}")
    warning = exposure_warning(host)
    if warning:
        err_console.print(warning, markup=False, highlight=False, soft_wrap=True)

    async def main() -> None:
        server = EmulatorServer(host=host, port=port, providers=names)
        try:
            await server.start()
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror})")
        console.print(f"emulators listening on [bold]{server.base_url}[/]", highlight=False)
        for name in server.settings:
            console.print(f"  {name:<11} {server.base_url}/{name}/", highlight=False)
        if write_config:
            with handled():
                cfg, env = write_demo_config(Path(write_config), server.base_url, server.settings)
            console.print(f"wrote {cfg} and {env}", highlight=False)
            console.print(
                f"try:  source {env} && cavra integration deliver EVENT.json --config {cfg} --provider all",
                highlight=False,
            )
            console.print(
                f"      cavra destinations list --config {cfg}   (two Slack destinations)",
                highlight=False,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        console.print("emulators stopped")

    asyncio.run(main())
