"""Routing (DESIGN principle 8): an ordered ``routes`` list decides which destinations an event goes to.

Pure and precompiled at load: :func:`compile_routes` checks the connectors file's ``routes`` (errors name
the file, the route's index and the key) and :meth:`RouteTable.route` gives the :class:`Decision` for one
event. See docs/routing.md.
"""

from cavra.routing.compile import compile_routes
from cavra.routing.matchers import Glob, Matcher, MatcherError, read_field, severity_of, subject_of
from cavra.routing.table import Decision, Route, RouteTable

__all__ = [
    "Decision",
    "Glob",
    "Matcher",
    "MatcherError",
    "Route",
    "RouteTable",
    "compile_routes",
    "read_field",
    "severity_of",
    "subject_of",
]
