"""Who is calling: the API key of a request, its scope and its requests per minute.

Keys live in the call-log database and are managed by ``hearth keys`` or ``/v1/keys``. The
server keeps them in memory and reads the table again ``REFRESH`` seconds after it last did
(answering from the list it has while the new one is read, up to ``STALE_LIMIT``), so a key
created or revoked from the CLI or another replica counts within a second. Authentication is
on when ``auth = true`` is configured or any key was ever created (revoking every key does
not open the server again).

A key is sent as ``Authorization: Bearer hk-…`` (the OpenAI SDKs, LangChain) or ``api-key:
hk-…`` (Azure OpenAI clients). Its SHA-256 is looked up and compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from hearth.errors import InvalidApiKey, PermissionDenied
from hearth.server.quota import Limits
from hearth.storage.keys import ApiKey, KeyStore, hash_key

log = logging.getLogger(__name__)

REFRESH = 0.5  # seconds a key list read from the database is trusted
# Seconds a key list still answers while a newer one is read in the background; past this,
# requests wait for the read. Under load a read waits on the GIL, and every request behind
# it waited too: 200-300 ms stalls twice a second at 16 concurrent streams (bench/gateway.py).
STALE_LIMIT = 0.9
MISS_REREAD = 0.02  # an unknown key re-reads the list if it is older than this (<= 50 reads/s)

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer hk-…")
_api_key = APIKeyHeader(name="api-key", auto_error=False, description="api-key: hk-… (Azure)")
# The two ways to send a key, as OpenAPI security schemes. ``authenticate`` reads both
# headers itself rather than through these as FastAPI sub-dependencies: each dependency
# FastAPI solves costs ~5% of a proxied call's CPU. The document gets them from here.
SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    type(s).__name__: s.model.model_dump(mode="json", by_alias=True, exclude_none=True)
    for s in (_bearer, _api_key)
}


@dataclass(frozen=True)
class Caller:
    """The key behind a request; ``key`` is None when the server runs without keys."""

    key: ApiKey | None = None

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key else None

    @property
    def admin(self) -> bool:
        return self.key is None or self.key.admin

    def may_use_model(self, name: str) -> bool:
        return self.key is None or self.key.models is None or name in self.key.models

    def may_use_kb(self, name: str) -> bool:
        return self.key is None or self.key.kbs is None or name in self.key.kbs

    def require_admin(self, what: str) -> None:
        if not self.admin:
            raise PermissionDenied(
                f"{what} needs an admin key; this key ('{self.key.name if self.key else ''}') "
                "is not one. Create one with `hearth keys create NAME --admin`."
            )


class KeyRing:
    """The keys as the server sees them, re-read from the database when stale."""

    def __init__(self, store: KeyStore, *, required: bool) -> None:
        self.store = store
        self.required = required  # `auth = true`: keys are needed even before one exists
        self._by_hash: dict[str, ApiKey] = {}
        self._any = False
        self._read_at = -REFRESH
        self._changed_at = -REFRESH
        self._reading: asyncio.Task[None] | None = None

    async def _fresh(self) -> None:
        age = time.monotonic() - self._read_at
        if age < REFRESH:
            return
        reading = self._reading
        if reading is None:
            reading = self._reading = asyncio.create_task(self._read())
            reading.add_done_callback(self._read_done)
        if age < STALE_LIMIT:
            return  # still fresh enough to answer with while the new list comes
        await asyncio.shield(reading)

    def _read_done(self, reading: asyncio.Task[None]) -> None:
        if self._reading is reading:
            self._reading = None
        if not reading.cancelled() and reading.exception() is not None:
            # whoever waits on it gets the error; one nobody waited on is not lost either
            log.warning("reading the API keys failed: %r", reading.exception())

    async def _read(self) -> None:
        started = time.monotonic()
        keys = await asyncio.to_thread(self.store.all)
        if started < self._changed_at:
            return  # it may predate a change made here; the read after the change counts
        self._by_hash = {k.hash: k for k in keys}
        self._any = bool(keys)
        self._read_at = started

    def changed(self) -> None:
        """This process changed the table: the next request waits for a read begun after."""
        self._changed_at = time.monotonic()
        self._read_at = -REFRESH
        self._reading = None

    async def enabled(self) -> bool:
        await self._fresh()
        return self.required or self._any

    async def authenticate(self, presented: str | None) -> Caller:
        if not await self.enabled():
            return Caller()
        if not presented:
            raise InvalidApiKey(
                "This server needs an API key: send 'Authorization: Bearer hk-…' (or "
                "'api-key: hk-…'). An admin creates keys with `hearth keys create NAME`."
            )
        digest = hash_key(presented)
        key = self._by_hash.get(digest)
        if key is None and time.monotonic() - self._read_at > MISS_REREAD:
            # Perhaps a key made a moment ago on another replica: read again rather than
            # wait out REFRESH, at most once per MISS_REREAD (wrong keys cannot flood it).
            self.changed()
            await self._fresh()
            key = self._by_hash.get(digest)
        if key is None or not hmac.compare_digest(key.hash, digest):
            raise InvalidApiKey("Incorrect API key provided. Check the key, or ask for a new one.")
        state = key.state()
        if state != "active":
            raise InvalidApiKey(f"API key '{key.name}' ({key.hint}) is {state}.")
        return Caller(key)


async def authenticate(request: Request) -> Caller:
    """FastAPI dependency: the caller of this request, counted against its rate limit."""
    services = request.app.state.services
    presented = _presented(request)
    caller: Caller = await services.keys.authenticate(presented)
    if caller.key is not None:
        limits: Limits = services.limits
        await limits.admit(caller.key)
    return caller


def _presented(request: Request) -> str | None:
    """The key sent, read as HTTPBearer and APIKeyHeader (auto_error off) read it."""
    scheme, credentials = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() == "bearer" and credentials:
        return credentials
    return request.headers.get("api-key") or None


def exposure_warning(host: str, keys_in_use: bool) -> str | None:
    """What to tell someone who serves beyond this machine with no key to protect it."""
    if keys_in_use or _loopback(host):
        return None
    return (
        f"hearth is listening on {host} with no API key: anyone who can reach this port "
        "can use every model and knowledge base and read the usage. Create a key with "
        "`hearth keys create admin --admin` (the server picks it up at once), or bind "
        "to 127.0.0.1."
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
