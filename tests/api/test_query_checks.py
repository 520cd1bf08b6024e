"""API input checks a newcomer meets: misspelled query parameters are refused, not ignored; an unknown
provider is a 422 listing the known ones; errors speak the API's words (``provider``, not ``--provider``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import AppFactory


@pytest.mark.parametrize(
    ("url", "detail"),
    [
        (
            "/release-connector-deliveries?provder=webhook",
            "query.provder: unknown query parameter; did you mean 'provider'?",
        ),
        (
            "/endpoint-management-publications?sucess=false",
            "query.sucess: unknown query parameter; did you mean 'success'?",
        ),
        (
            "/release-connector-deliveries/dashboard?provider=webhook",
            "query.provider: unknown query parameter",
        ),
        ("/healthz?verbose=1", "query.verbose: unknown query parameter (this route takes: none)"),
    ],
)
async def test_unknown_query_parameters_are_refused(make_client: AppFactory, url: str, detail: str) -> None:
    async with make_client() as client:
        resp = await client.get(url)
    assert resp.status_code == 422, resp.text
    body: dict[str, Any] = resp.json()
    assert body["error"] == "invalid_request"
    assert body["detail"].startswith(detail), body["detail"]


async def test_known_query_parameters_still_work(make_client: AppFactory) -> None:
    async with make_client() as client:
        resp = await client.get("/release-connector-deliveries?provider=webhook&success=false&limit=5")
    assert resp.status_code == 200, resp.text


async def test_an_unknown_provider_filter_is_a_422_listing_the_known_ones(make_client: AppFactory) -> None:
    async with make_client() as client:
        resp = await client.get("/release-connector-deliveries?provider=nosuch")
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith("provider: unknown provider 'nosuch'; known providers: splunk, ")
    assert "--provider" not in detail


async def test_service_errors_name_the_field_not_the_cli_option(make_client: AppFactory) -> None:
    async with make_client() as client:
        resp = await client.post(
            "/promotion-executions/rpe_prod/audit-export/deliver", json={"provider": "", "retries": 1}
        )
    assert resp.status_code == 422, resp.text
    assert "--provider" not in resp.json()["detail"]


def test_api_wording() -> None:
    from cavra.api.errors import api_wording

    assert api_wording("--provider: unknown provider 'x'") == "provider: unknown provider 'x'"
    assert (
        api_wording("--max-runs: must be at least 1; --retries: too many")
        == "max_runs: must be at least 1; retries: too many"
    )
    assert api_wording("file --provider: x") == "file --provider: x"


async def test_a_post_without_a_body_says_a_json_body_is_expected(make_client: AppFactory) -> None:
    async with make_client() as client:
        resp = await client.post("/integrations", content=b"", headers={"content-type": "application/json"})
    assert resp.status_code == 422
    assert resp.json()["detail"] == "body: expected a JSON body (content-type: application/json)"
