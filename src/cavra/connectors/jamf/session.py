"""Jamf Cloud sticky sessions: the load balancer's cookies, kept across the steps of one delivery.

Jamf Cloud is a cluster of web apps that "do not directly communicate with each other" and refresh about
once a minute; dependent calls in sequence (create, then read back) must go to the same web app, which the
load balancer's cookie ensures ("Sticky Sessions for Jamf Cloud", developer.jamf.com). Clients keep
``APBALANCEID`` / ``AWSALB`` (grahampugh/jamf-upload) and ``jpro-ingress`` (deploymenttheory/terraform-
provider-jamfpro). This connector keeps every cookie Jamf sets during one delivery in the flow state and
sends them back on the following steps; nothing is kept between deliveries (the transport has no cookie jar).
The ``Cookie`` header is a :class:`~cavra.secrets.Secret` and a credential header: evidence shows
``**REDACTED**``.
"""

from __future__ import annotations

import re
from dataclasses import replace

from cavra.connectors.base import PreparedRequest, Response
from cavra.secrets import Secret

#: at most this many cookies, and this many bytes of them, are kept for one delivery
MAX_COOKIES = 8
MAX_COOKIE_BYTES = 4096
_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_VALUE = re.compile(r"^[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]{0,1024}$")

Cookies = tuple[tuple[str, str], ...]


def _pair(line: str) -> tuple[str, str, bool] | None:
    """(name, value, expired) of one ``Set-Cookie`` line, or None when it is not a cookie."""
    first, _, attributes = line.partition(";")
    name, sep, value = first.strip().partition("=")
    name, value = name.strip(), value.strip().strip('"')
    if not sep or not _NAME.match(name) or not _VALUE.match(value):
        return None
    expired = not value or re.search(r"(?i)(?:^|;)\s*max-age\s*=\s*0*(?:;|$)", attributes + ";") is not None
    return name, value, expired


def remember(cookies: Cookies, response: Response) -> Cookies:
    """The cookies after this answer: its ``Set-Cookie`` lines (one per line) added or replaced by name."""
    raw = response.header("set-cookie")
    if not raw:
        return cookies
    jar = dict(cookies)
    for line in raw.split("\n"):
        found = _pair(line)
        if found is None:
            continue
        name, value, expired = found
        if expired:
            jar.pop(name, None)
        else:
            jar[name] = value
    kept: list[tuple[str, str]] = []
    size = 0
    for name, value in jar.items():
        size += len(name) + len(value) + 2
        if len(kept) >= MAX_COOKIES or size > MAX_COOKIE_BYTES:
            break
        kept.append((name, value))
    return tuple(kept)


def with_cookies(request: PreparedRequest, cookies: Cookies) -> PreparedRequest:
    """The request with the delivery's cookies as a secret ``Cookie`` header (unchanged without any)."""
    if not cookies:
        return request
    value = Secret("; ".join(f"{name}={value}" for name, value in cookies), source="jamf:cookie")
    return replace(request, headers={**request.headers, "Cookie": value})
