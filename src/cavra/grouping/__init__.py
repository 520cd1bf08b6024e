"""Grouped notifications (docs/routing.md, Grouping): a burst of events one route sends to a ChatOps or
ITSM destination becomes one message per window, Alertmanager style.

* :mod:`cavra.routing.grouping`: the route's settings (``group_by``, ``group_wait``, ``group_interval``,
  ``repeat_interval``), checked at load, and the group key of an event.
* :mod:`cavra.grouping.state`: joining a group (publish) and taking a group's pending members (the flush
  job), on the store's group state (:mod:`cavra.store.groups`).
* :mod:`cavra.grouping.message`: the one event a flush sends (counts by type and severity, the worst
  severity, the first subjects and how many more), rendered by the connectors like any event.
* :mod:`cavra.grouping.flush`: what the worker does with a flush job: the group record and one record per
  member naming it.
"""
