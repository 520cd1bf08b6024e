"""Jamf Cloud as a cluster of web apps behind a sticky load balancer.

Jamf's developer guide "Sticky Sessions for Jamf Cloud" (developer.jamf.com/jamf-pro/docs/sticky-sessions-
for-jamf-cloud): Jamf Cloud runs clustered web applications "which do not directly communicate with each
other"; requests from a client without the session cookie may be handled by different web apps, and
"in workflows where a sequential series of operations must occur or where subsequent calls are dependent
upon earlier calls, this can often be problematic due to the cluster refresh, which occurs every minute";
the answer is to keep the load balancer's cookie and send it back. Clients do exactly that with
``APBALANCEID`` / ``AWSALB`` (grahampugh/jamf-upload, ``JamfUploaderProcessors/JamfUploaderSlacker.py``'s
curl helper keeps a ``Set-Cookie`` of either name and sends it with ``--cookie``), and on current Jamf
Cloud ``jpro-ingress``, the nginx ingress's sticky cookie (deploymenttheory/terraform-provider-jamfpro
``docs/index.md``: ``jamfpro_load_balancer_lock`` "obtains all available web cookies (jpro-ingress) …
equivalent to a sticky session"). ``cluster_cookie`` names the cookie (default ``APBALANCEID``).

Model (``cluster_nodes`` > 1): the database is :attr:`JamfState.profiles`; each node serves reads from its
own copy, refreshed from the database ``cluster_refresh`` seconds after its last refresh. A write lands on
the database and on the node that took it, so that node sees it at once and the others only after their
refresh. A request carrying a known sticky cookie goes to the node that set it; any other request
goes to the next node in turn (round robin, deterministic for tests). Every answer sets the cookie of the
node that gave it (the load balancer refreshes it, as AWS load balancers do).
"""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from cavra.emulators.jamf.model import JamfState, Profile

COOKIE = "APBALANCEID"


@dataclass
class Node:
    index: int
    cookie: str
    profiles: dict[int, Profile] = field(default_factory=dict)
    refreshed_at: float = 0.0


@dataclass
class Cluster:
    """The nodes, their cookies and the round-robin turn. ``size`` 1 is a single server (no cookie)."""

    size: int = 1
    refresh: float = 60.0
    cookie_name: str = COOKIE
    nodes: list[Node] = field(default_factory=list)
    turn: int = 0
    #: which node answered each request, in order (for tests and the console)
    routed: list[int] = field(default_factory=list)
    #: the node of each request in flight, by ``id(request)``
    assigned: dict[int, Node] = field(default_factory=dict)

    def configure(self, size: int, refresh: float, cookie_name: str = COOKIE) -> None:
        self.size, self.refresh, self.cookie_name = max(1, size), max(0.0, refresh), cookie_name
        self.nodes = [Node(i, f"aws.jamfcloud-web{i}.{secrets.token_hex(6)}") for i in range(self.size)]
        self.turn = 0
        self.routed.clear()
        for node in self.nodes:
            node.refreshed_at = time.monotonic()

    @property
    def clustered(self) -> bool:
        return self.size > 1

    def route(self, request: web.Request) -> Node | None:
        """The node this request goes to (None for a single server)."""
        if not self.clustered:
            return None
        sticky = request.cookies.get(self.cookie_name)
        node = next((n for n in self.nodes if n.cookie == sticky), None)
        if node is None:
            node = self.nodes[self.turn % self.size]
            self.turn += 1
        self.routed.append(node.index)
        self.assigned[id(request)] = node
        return node

    def node_of(self, request: web.Request) -> Node | None:
        return self.assigned.get(id(request))

    def done(self, request: web.Request) -> None:
        self.assigned.pop(id(request), None)

    def view(self, st: JamfState, node: Node | None) -> dict[int, Profile]:
        """The profiles as this node sees them (the database itself for a single server)."""
        if node is None:
            return st.profiles
        if time.monotonic() - node.refreshed_at >= self.refresh:
            self.sync(st, node)
        return node.profiles

    def sync(self, st: JamfState, node: Node) -> None:
        node.profiles = copy.deepcopy(st.profiles)
        node.refreshed_at = time.monotonic()

    def refresh_all(self, st: JamfState) -> None:
        """Every node refreshes now (what a minute of waiting does on Jamf Cloud)."""
        for node in self.nodes:
            self.sync(st, node)

    def wrote(self, node: Node | None, profile: Profile | None, profile_id: int) -> None:
        """A write on ``node``: it sees the new version (or the deletion) at once."""
        if node is None:
            return
        if profile is None:
            node.profiles.pop(profile_id, None)
        else:
            node.profiles[profile_id] = copy.deepcopy(profile)

    def stamp(self, response: web.StreamResponse, node: Node | None) -> None:
        if node is not None:
            response.set_cookie(self.cookie_name, node.cookie, path="/", secure=False, httponly=True)
