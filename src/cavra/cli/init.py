"""``cavra init``: lay out the seed's ``.cavra/`` paths so its commands run verbatim on a fresh checkout.

Writes, under the project directory (the cwd by default), only what is missing (``--force`` rewrites):

* ``.cavra/connectors.json``: every connector pointed at the provider emulators through ``*_env``
  variables (``--for real``: the example config for real providers, secrets still from the environment);
* ``.cavra/emulators.env``: ``export`` lines with the emulators' URLs and demo credentials
  (``--emulators URL``, default ``http://127.0.0.1:8900``, where ``cavra emulate`` and ``make demo``
  listen);
* ``.cavra/release/...``: the example promotion, rollback and endpoint-export records (with artifacts);
* ``.cavra/evidence/latest/siem-event.json``: built from the example session, as
  ``cavra evidence build-siem-event`` does; ``events.jsonl`` beside it: five sessions' events, for a
  delivery of many.

Then it says whether the emulators answer at that URL (waiting a few seconds for ones just started).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Literal

import typer

from cavra.cli.common import console, handled
from cavra.cli.tables import Grid
from cavra.errors import InputError

EMULATORS_URL = "http://127.0.0.1:8900"


def _examples() -> Path:
    from cavra.demo import find_examples

    return find_examples().parent


def _write(path: Path, text: str, force: bool, outcome: list[tuple[str, str]], mode: int = 0o644) -> None:
    if path.exists() and not force:
        outcome.append((str(path), "kept (exists)"))
        return
    from cavra.emulators.server import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode)
    outcome.append((str(path), "written"))


def lay_out(
    root: Path, *, emulators: str, target: Literal["emulators", "real"], force: bool
) -> list[tuple[str, str]]:
    """Write the seed's files under ``root/.cavra``; return (path, what happened) per file."""
    from cavra.emulators.server import build_app, demo_environment, shell_quote
    from cavra.governance import service as governance
    from cavra.governance.events import evidence_bundle_event

    examples = _examples()
    cavra = root / ".cavra"
    outcome: list[tuple[str, str]] = []
    if target == "real":
        config_text = (examples / "connectors" / "cavra-connectors.example.json").read_text(encoding="utf-8")
    else:
        _, _, settings = build_app(None, None)
        config, env = demo_environment(emulators.rstrip("/"), settings)
        config_text = json.dumps(config, indent=2) + "\n"
        lines = [f"export {k}={shell_quote(v)}" for k, v in sorted(env.items())]
        _write(cavra / "emulators.env", "\n".join(lines) + "\n", force, outcome, mode=0o600)
    _write(cavra / "connectors.json", config_text, force, outcome)
    for source in sorted((examples / "release").rglob("*")):
        if source.is_file():
            dest = cavra / "release" / source.relative_to(examples / "release")
            if dest.exists() and not force:
                outcome.append((str(dest), "kept (exists)"))
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)
            outcome.append((str(dest), "written"))
    bundle = governance.load_record_file(examples / "evidence" / "session-decisions.json", "evidence_bundle")
    event = evidence_bundle_event(bundle)
    siem = cavra / "evidence" / "latest" / "siem-event.json"
    _write(siem, json.dumps(event, indent=2, ensure_ascii=False) + "\n", force, outcome)
    _write(cavra / "evidence" / "latest" / "events.jsonl", _many_events(event), force, outcome)
    return outcome


def _many_events(event: dict[str, object], count: int = 5) -> str:
    """A JSON Lines file of ``count`` sessions' events (for ``cavra integration deliver FILE`` of many)."""
    from cavra.events import normalize_event

    lines = []
    for n in range(1, count + 1):
        one = {k: v for k, v in event.items() if k != "event_id"}
        one["session_id"] = f"{event.get('session_id')}-{n}"
        lines.append(json.dumps(normalize_event(one), ensure_ascii=False))
    return "\n".join(lines) + "\n"


def init(
    directory: Annotated[
        str, typer.Argument(metavar="DIR", help="Project directory (.cavra/ is made inside it).")
    ] = ".",
    emulators: Annotated[
        str,
        typer.Option(
            "--emulators", metavar="URL", help="Where the emulators listen (cavra emulate, make demo)."
        ),
    ] = EMULATORS_URL,
    target: Annotated[
        str,
        typer.Option(
            "--for", metavar="emulators|real", help="Point the config at the emulators, or at real providers."
        ),
    ] = "emulators",
    force: Annotated[bool, typer.Option("--force", help="Rewrite files that exist.")] = False,
) -> None:
    """Lay out the seed's .cavra/ files: connector config, release records, siem-event.json."""
    with handled():
        if target not in ("emulators", "real"):
            raise InputError(f"--for: expected emulators or real, got {target!r}")
        if not emulators.startswith(("http://", "https://")):
            raise InputError(f"--emulators: expected an http(s) URL, got {emulators!r}")
        root = Path(directory)
        if not root.is_dir():
            raise InputError(f"{directory}: not a directory")
        outcome = lay_out(
            root, emulators=emulators, target="real" if target == "real" else "emulators", force=force
        )
    table = Grid(["file", "result"], title=f"cavra init in {root.resolve()}")
    for path, result in outcome:
        table.add_row(path, result)
    console.print(table)
    if target == "emulators":
        from cavra.emulators.server import emulators_answer

        if emulators_answer(emulators):
            state = f"the emulators answer at {emulators}"
        else:
            state = f"no emulators answer at {emulators} yet: start them with cavra emulate (or make demo)"
        console.print(
            f"next: source {root / '.cavra' / 'emulators.env'}  ({state})", highlight=False, soft_wrap=True
        )
