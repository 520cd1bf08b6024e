"""The web console: a read-only, server-rendered view of delivery evidence under ``/console``.

The console is the third face of the service, beside the HTTP API and the CLI: its routes
(:mod:`cavra.console.routes`) check access the way the API does (:mod:`cavra.console.access`), call one
function of :mod:`cavra.governance.service` and render a Jinja2 template (:mod:`cavra.console.render`).
"""
