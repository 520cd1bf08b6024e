"""Linux fleet: launch an Ansible AWX / Automation Platform job template with the export, and poll the job.

The export reaches the hosts through a job template the fleet team owns (its playbook fetches and checks
the artifacts by digest). CAVRA launches it with the export's identity in ``extra_vars``:

``{"cavra_export_id", "cavra_release", "cavra_channel", "cavra_event_id", "cavra_delivery_key",
"cavra_approval_status", "cavra_artifacts": [{"name", "sha256", "size"}]}``

Every path below starts with ``{url}{api_prefix}``. ``api_prefix`` is ``/api/v2`` (default: AWX, and
Automation Platform up to 2.4 or a 2.5+ controller addressed directly), ``/api/controller/v2`` (Automation
Platform 2.5+ through its platform gateway, where Red Hat moved the controller API: "API changes for
platform gateway"; direct ``/api/v2`` access is kept for backward compatibility only and will be removed), or
``auto``: each delivery first runs

0. ``discover``: ``GET {url}/api/``. A platform gateway answers ``{"description": "AAP gateway REST API",
   "apis": {"controller": "/api/controller/", …}}``: the prefix is that path + ``v2``; a controller answers
   ``{"current_version": "/api/v2/", …}``: the prefix is that path (as ansible/terraform-provider-aap
   detects it). The path is taken relative to ``url``.

Flow (each line one recorded attempt):

1. ``launch``: ``POST {url}/api/v2/job_templates/{job_template_id}/launch/``, Bearer token or Basic
   (``username`` + ``password``); 201 gives the job id. A template that does not prompt for variables
   answers 201 with ``extra_vars`` in ``ignored_fields``: the job would run without the export, so the
   delivery fails and says how to fix the template;
2. ``poll``: ``GET {url}/api/v2/jobs/{id}/`` every ``poll_interval_seconds`` (stretched so that at most
   ``MAX_POLLS`` polls fit in ``verify_timeout_seconds``) until the job ends. ``successful`` is the proof
   of delivery; ``failed``, ``error`` or ``canceled`` fail the delivery with that status; a job still
   running at the verify deadline is recorded as ``pending`` with its id.

The launch API has no idempotency key, so a launch whose answer is lost (dropped connection, timeout, 5xx or
429) is not simply sent again: the retry first runs

* ``recheck``: ``GET {url}/api/v2/job_templates/{job_template_id}/jobs/?created__gte=…&order_by=-created
  &page_size=50``, the template's jobs created since shortly before this delivery began, newest first. AWX
  refuses filters on ``extra_vars`` (403 "Filtering on extra_vars is not allowed"), so the connector reads
  each job's ``extra_vars`` (a JSON string) itself and looks for its ``cavra_delivery_key``. A job found is
  adopted: it is polled as if the launch had answered, and the record says so. When nothing is found the
  connector waits ``settle_seconds`` (a launch that timed out may still be in progress at the controller),
  looks once more, and only then launches again.
"""

from __future__ import annotations

from cavra.connectors.linux_fleet.answers import awx_error, carries_key, discovered_prefix, extra_vars
from cavra.connectors.linux_fleet.connector import LaunchState, LinuxFleetConnector, PollState
from cavra.connectors.linux_fleet.settings import (
    AUTO,
    DIRECT_PREFIX,
    GATEWAY_PREFIX,
    MAX_POLLS,
    RECHECK_PAGE,
    LinuxFleetSettings,
    poll_interval,
)
from cavra.connectors.spec import ENDPOINT_PUBLICATION, ProviderSpec

__all__ = [
    "AUTO",
    "DIRECT_PREFIX",
    "GATEWAY_PREFIX",
    "MAX_POLLS",
    "RECHECK_PAGE",
    "LaunchState",
    "LinuxFleetConnector",
    "LinuxFleetSettings",
    "PollState",
    "awx_error",
    "carries_key",
    "discovered_prefix",
    "extra_vars",
    "poll_interval",
]


SPEC = ProviderSpec(
    name="linux",
    category="endpoint",
    connector=LinuxFleetConnector,
    emulator="cavra.emulators.awx",
    takes=(ENDPOINT_PUBLICATION,),
    example={"url_env": "AWX_URL", "token_env": "AWX_TOKEN", "job_template_id": 42},
    example_env={"AWX_URL": "https://awx.example", "AWX_TOKEN": "awx-token-value-0001"},
)
