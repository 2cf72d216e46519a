"""ASGI middleware at the edge: request hygiene, body size, trusted reverse proxies.

- A path or query string carrying NUL or other control characters (raw or
  percent-encoded) is refused with 400 before any route sees it; so is a ``Host``
  header that is not a host name or address with an optional port.
- A request body (other than an upload to ``/ingest``) larger than
  ``GEOETL_MAX_BODY_KB`` is refused with 413, by its ``Content-Length`` or while it
  streams.
- ``X-Forwarded-Proto``/``-Host``/``-Prefix`` are honoured only from the addresses in
  ``GEOETL_TRUSTED_PROXIES``, and only when well-formed (scheme http or https, a plain
  host, a plain path); they then rewrite the request's scheme and host (and record the
  prefix under :data:`PREFIX_KEY`) so links follow them. From anyone else they are
  removed before any route sees them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote_to_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$"
)
PREFIX = re.compile(r"^(?:/[A-Za-z0-9._~-]+)*/?$")
# Bytes 0-31 and 127 have no business in a URL; %-decoded they are still refused.
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_FORWARDED = (b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix", b"forwarded")
UPLOAD_PATHS = ("/ingest",)
PREFIX_KEY = "geoetl.forwarded_prefix"
"""Scope key of a trusted proxy's path prefix (links are built under it)."""


def parse_networks(value: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """``GEOETL_TRUSTED_PROXIES``: comma-separated addresses or CIDR networks."""
    networks = []
    for part in value.split(","):
        if part.strip():
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
    return networks


async def _refuse(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"code": code, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class EdgeMiddleware:
    """Request hygiene, body caps and trusted forwarded headers (see the module doc)."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: str = "", max_body_kb: int = 1024):
        self.app = app
        self.trusted = parse_networks(trusted_proxies)
        self.max_body = max_body_kb * 1024

    def _trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in net for net in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then hand it on (or answer 400/413 itself)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogateescape")
        query: bytes = scope.get("query_string", b"")
        for part in (raw_path, query):
            if _CONTROL.search(part) or _CONTROL.search(unquote_to_bytes(part)):
                await _refuse(
                    send,
                    400,
                    "InputError",
                    "the URL contains a NUL or control character; remove it",
                )
                return
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers", []))
        host = next((v for k, v in headers if k == b"host"), None)
        if host is not None and not HOST.match(host.decode("latin-1")):
            await _refuse(send, 400, "InputError", "the Host header is not a valid host name")
            return
        scope = dict(scope)
        scope["headers"] = self._forwarded(scope, headers)
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") or scope["path"].endswith(
            UPLOAD_PATHS
        ):
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in headers if k == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._too_large(send)
            return
        await self._capped(scope, receive, send)

    async def _too_large(self, send: Send) -> None:
        await _refuse(
            send,
            413,
            "TooLarge",
            f"the request body is larger than {self.max_body // 1024} KiB "
            "(GEOETL_MAX_BODY_KB); upload files to POST /ingest",
        )

    async def _capped(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _BodyTooLarge
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)

    def _forwarded(
        self, scope: Scope, headers: list[tuple[bytes, bytes]]
    ) -> list[tuple[bytes, bytes]]:
        kept = [(k, v) for k, v in headers if k not in _FORWARDED]
        if not self._trusted(scope):
            return kept
        given = {k: v.decode("latin-1").split(",")[0].strip() for k, v in headers}
        proto = given.get(b"x-forwarded-proto", "").lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        host = given.get(b"x-forwarded-host", "")
        if host and HOST.match(host):
            kept = [(k, v) for k, v in kept if k != b"host"] + [(b"host", host.encode())]
        prefix = given.get(b"x-forwarded-prefix", "")
        if prefix and PREFIX.match(prefix):
            scope[PREFIX_KEY] = prefix.rstrip("/")
        return kept
