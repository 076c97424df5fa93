"""API keys: created once and shown once, stored only as a SHA-256 hash.

A key is ``hk-`` and 43 random URL-safe characters (256 bits), so a plain SHA-256 is
enough: nothing short of the key itself hashes to the same value, and there is no
password-style guessing to slow down. The table keeps the hash, a hint for lists
(``hk-…wxyz``), the key's scope (models, knowledge bases), its limits (requests and tokens
per minute, a budget in the models' price currency), an expiry and the admin flag.
Revoking keeps the row, so the call log's ``key_id`` still names someone.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from hearth.errors import KeyNotFound, UserError
from hearth.storage.db import Database

PREFIX = "hk-"
MAX_RATE = 10**12  # rpm and tpm: far past any real limit, inside SQLite's integers


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    hash: str
    hint: str
    models: tuple[str, ...] | None = None  # None: every model
    kbs: tuple[str, ...] | None = None  # None: every knowledge base
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    budget: float | None = None  # total cost the key may spend
    expires: float | None = None  # unix time
    admin: bool = False
    created: float = 0.0
    revoked: float | None = None

    @property
    def metered(self) -> bool:
        """Whether its calls hold tokens and cost against limits before they run."""
        return self.tpm is not None or self.budget is not None

    def state(self, now: float | None = None) -> str:
        """ "active", "revoked" or "expired"."""
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and (now or time.time()) >= self.expires:
            return "expired"
        return "active"

    def public(self) -> dict[str, Any]:
        """What lists and the HTTP API show: everything but the hash."""
        return {
            "id": self.id,
            "name": self.name,
            "hint": self.hint,
            "models": list(self.models) if self.models is not None else None,
            "knowledge_bases": list(self.kbs) if self.kbs is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget": self.budget,
            "expires": self.expires,
            "admin": self.admin,
            "created": self.created,
            "revoked": self.revoked,
            "state": self.state(),
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def looks_like_key(text: str) -> bool:
    return text.startswith(PREFIX)


class KeyStore:
    """The ``api_keys`` table of the call-log database (see ``storage.migrations``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        name: str,
        *,
        models: list[str] | None = None,
        kbs: list[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget: float | None = None,
        expires: float | None = None,
        admin: bool = False,
    ) -> tuple[ApiKey, str]:
        """A new key and its secret, which is returned here once and never stored."""
        _check_limits(name, rpm, tpm, budget)
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(6),
            name=name.strip(),
            hash=hash_key(secret),
            hint=f"{PREFIX}…{secret[-4:]}",
            models=_names(models),
            kbs=_names(kbs),
            rpm=rpm,
            tpm=tpm,
            budget=budget,
            expires=expires,
            admin=admin,
            created=time.time(),
        )
        self.db.execute(
            "INSERT INTO api_keys (id, name, hash, hint, models, kbs, rpm, tpm, budget, "
            "expires, admin, created, revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key.id,
                key.name,
                key.hash,
                key.hint,
                _json(key.models),
                _json(key.kbs),
                key.rpm,
                key.tpm,
                key.budget,
                key.expires,
                int(key.admin),
                key.created,
                None,
            ),
        )
        return key, secret

    def all(self) -> list[ApiKey]:
        """Every key ever created, revoked ones included, oldest first."""
        return [_key(row) for row in self.db.query("SELECT * FROM api_keys ORDER BY created")]

    def find(self, ref: str) -> ApiKey:
        """A key by its id, its name (when one key has it) or its secret."""
        keys = self.all()
        if looks_like_key(ref):
            digest = hash_key(ref)
            found = [k for k in keys if secrets.compare_digest(k.hash, digest)]
        else:
            found = [k for k in keys if k.id == ref] or [k for k in keys if k.name == ref]
        if not found:
            raise KeyNotFound(ref)
        if len(found) > 1:
            ids = ", ".join(k.id for k in found)
            raise UserError(f"several keys are named '{ref}' ({ids}); give the id", param="key")
        return found[0]

    def revoke(self, ref: str) -> ApiKey:
        key = self.find(ref)
        if key.revoked is None:
            self.db.execute(
                "UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL",
                (time.time(), key.id),
            )
        return self.find(key.id)


def _check_limits(name: str, rpm: int | None, tpm: int | None, budget: float | None) -> None:
    if not name.strip():
        raise UserError("a key needs a name (who or what uses it)", param="name")
    for what, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and not 1 <= value <= MAX_RATE:
            raise UserError(f"{what} must be from 1 to {MAX_RATE}, got {value}", param=what)
    if budget is not None and not 0 <= budget < math.inf:
        raise UserError(f"budget must be a positive amount, got {budget}", param="budget")


def _names(names: list[str] | None) -> tuple[str, ...] | None:
    if names is None:
        return None
    return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))


def _json(names: tuple[str, ...] | None) -> str | None:
    return None if names is None else json.dumps(list(names), ensure_ascii=False)


def _key(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        hash=row["hash"],
        hint=row["hint"],
        models=None if row["models"] is None else tuple(json.loads(row["models"])),
        kbs=None if row["kbs"] is None else tuple(json.loads(row["kbs"])),
        rpm=row["rpm"],
        tpm=row["tpm"],
        budget=row["budget"],
        expires=row["expires"],
        admin=bool(row["admin"]),
        created=row["created"],
        revoked=row["revoked"],
    )
