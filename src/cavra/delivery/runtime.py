"""The delivery runtime: the state that lives as long as the process delivers, owned, not global.

One :class:`DeliveryRuntime` is made by whoever makes the service (the API's app, ``cavra worker``, a CLI
command; :func:`cavra.governance.notes.delivery_runtime` makes one with the service's completion notes) and
is passed down the submit path (:func:`cavra.delivery.submit.deliver_jobs`) and to the workers
(:class:`cavra.delivery.worker.Worker`). It holds

* ``notes``: the completion notes jobs may name (:class:`cavra.delivery.notes.NoteRegistry`);
* ``signals``: the wake-ups shared by the workers and the faces that use this runtime;
* ``tokens``: the access tokens (Entra, OAuth) of its runs: one token per credential while it is valid,
  not one token request per API request;
* per store, the guard (breakers, pauses, rate limits) of the inline runs, whose snapshot of the
  destinations is read at most once a second, not once per request;
* per event loop and store, the enqueuer and the completer that concurrent requests share, so that they
  write their jobs, and store their runs' records, in shared transactions (the group commit a worker has);
* the lease owner of the inline runs (one per process: a forked child gets its own), and the background
  tasks that outlive the request that started them.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any

from cavra.connectors.base import TokenCache
from cavra.delivery.completer import Completer
from cavra.delivery.enqueuer import Enqueuer
from cavra.delivery.guard import Guard, GuardSettings
from cavra.delivery.notes import NoteRegistry
from cavra.delivery.runs import default_owner
from cavra.delivery.signals import Signals
from cavra.store import Store

_Shared = weakref.WeakKeyDictionary[Store, tuple[Enqueuer, Completer]]


class DeliveryRuntime:
    """What the submit path and the workers of one service share (see the module's docstring)."""

    def __init__(
        self,
        *,
        notes: NoteRegistry | None = None,
        signals: Signals | None = None,
        tokens: TokenCache | None = None,
        guard_settings: GuardSettings | None = None,
    ) -> None:
        self.notes = notes if notes is not None else NoteRegistry()
        self.signals = signals if signals is not None else Signals()
        self.tokens = tokens if tokens is not None else TokenCache()
        self._guard_settings = guard_settings
        self._guards: weakref.WeakKeyDictionary[Store, Guard] = weakref.WeakKeyDictionary()
        self._shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = (
            weakref.WeakKeyDictionary()
        )
        self._owner: tuple[int, str] | None = None
        self._owner_lock = threading.Lock()
        #: inline runs (and give-backs) that outlive the request that started them, kept referenced
        self.background: set[asyncio.Task[Any]] = set()

    def inline_owner(self) -> str:
        """The lease owner of this runtime's inline runs (per process: a forked child gets its own)."""
        with self._owner_lock:
            if self._owner is None or self._owner[0] != os.getpid():
                self._owner = (os.getpid(), default_owner())
            return self._owner[1]

    def guard(self, store: Store) -> Guard:
        """The guard of the inline runs on ``store`` (one per store)."""
        guard = self._guards.get(store)
        if guard is None:
            settings = self._guard_settings or GuardSettings.from_environment()
            guard = self._guards[store] = Guard(store, settings)
        return guard

    def shared(self, store: Store) -> tuple[Enqueuer, Completer]:
        """The enqueuer and the completer that this event loop's requests on ``store`` share."""
        per_loop = self._shared.setdefault(asyncio.get_running_loop(), weakref.WeakKeyDictionary())
        found = per_loop.get(store)
        owner = self.inline_owner()
        if found is None or found[1].owner != owner:
            found = per_loop[store] = (Enqueuer(store), Completer(store, owner))
        return found

    def shared_loops(self) -> int:
        """How many event loops have shared writers here (a closed loop's are dropped with it)."""
        return len(self._shared)

    def keep(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` referenced until it finishes."""
        self.background.add(task)
        task.add_done_callback(self.background.discard)
