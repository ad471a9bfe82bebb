"""Master password, sessions and API tokens: hashed at rest, expiring, revocable."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import bcrypt

from ..db import Database
from ..errors import ConflictError, StorageError, ValidationError

_LOGGER = logging.getLogger(__name__)

TOKEN_PREFIX: Final = "aw_"  # noqa: S105 - a marker for secret scanners, not a secret
API_TOKEN_DAYS_DEFAULT: Final = 365
MIN_PASSWORD_LENGTH: Final = 8
# Sessions are touched at most this often so reads do not turn into a write per request.
TOUCH_INTERVAL_S: Final = 60.0

TokenKind = Literal["session", "api"]
Via = Literal["cookie", "bearer", "api_key", "query", "ingress"]


@dataclass(slots=True, frozen=True)
class Identity:
    """Who a request acts as, and how it proved it."""

    kind: Literal["session", "api", "ingress"]
    via: Via
    name: str
    token_id: str | None = None
    csrf_token: str | None = None
    # Seconds the credential had left when the request was authenticated (None: no end).
    # A WebSocket opened with it closes then: a request is checked once, a socket lives on.
    expires_in_s: float | None = None
    # Seconds since a login session was issued (None for other credentials): a socket it
    # opened ends early when auth.session_hours is lowered, as the session itself does.
    session_age_s: float | None = None


@dataclass(slots=True, frozen=True)
class IssuedToken:
    """A token at the moment it is made: the only time its secret value exists in clear."""

    id: str
    kind: TokenKind
    name: str
    token: str
    csrf_token: str | None
    created_at: float
    expires_at: float | None


@dataclass(slots=True, frozen=True)
class TokenInfo:
    """A stored API token as listed (never its value)."""

    id: str
    name: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape for GET /api/auth/tokens."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "last_used_at": self.last_used_at,
        }


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a fast hash is enough and bcrypt would only cost time."""
    return hashlib.sha256(token.encode()).hexdigest()


class AuthService:
    """Checks passwords (bcrypt in a thread) and issues, finds and revokes tokens."""

    def __init__(
        self,
        db: Database,
        *,
        session_hours: Callable[[], int],
        bcrypt_rounds: int = 12,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._session_hours = session_hours
        self._rounds = bcrypt_rounds
        self.clock = clock
        self._setup_lock = asyncio.Lock()

    async def is_configured(self) -> bool:
        """Whether a master password was set."""
        return await self._db.fetchone("SELECT 1 FROM auth_master WHERE id = 1") is not None

    async def setup(self, password: str) -> None:
        """Set the master password on first run; ConflictError if already set."""
        async with self._setup_lock:
            # First: after the first run the answer is 409 whatever the password (SPEC §5).
            if await self.is_configured():
                raise ConflictError("the master password is already set")
            _check_password(password)
            hashed = await asyncio.to_thread(
                bcrypt.hashpw, password.encode(), bcrypt.gensalt(self._rounds)
            )
            await self._db.write(
                "INSERT INTO auth_master (id, password_hash, created_at) VALUES (1, ?, ?)",
                (hashed.decode(), self.clock()),
            )

    async def verify_password(self, password: str) -> bool:
        """Compare with the stored hash in a worker thread (bcrypt is slow by design)."""
        row = await self._db.fetchone("SELECT password_hash FROM auth_master WHERE id = 1")
        encoded = password.encode()
        # bcrypt reads 72 bytes; setup refuses longer passwords, so a longer one is wrong (else
        # the master password plus anything would log in). Hashed all the same: equal cost.
        candidate = encoded[:72]
        if row is None or len(encoded) > 72:
            # Same cost whether configured or not, so timing tells nothing.
            await asyncio.to_thread(bcrypt.hashpw, candidate, bcrypt.gensalt(self._rounds))
            return False
        return await asyncio.to_thread(bcrypt.checkpw, candidate, str(row[0]).encode())

    async def issue(self, kind: TokenKind, name: str, expires_in_s: float | None) -> IssuedToken:
        """Create and store a token (only its hash is stored)."""
        now = self.clock()
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        issued = IssuedToken(
            id=uuid.uuid4().hex,
            kind=kind,
            name=name,
            token=token,
            csrf_token=secrets.token_urlsafe(32) if kind == "session" else None,
            created_at=now,
            expires_at=None if expires_in_s is None else now + expires_in_s,
        )
        await self._db.write(
            "INSERT INTO auth_tokens (id, kind, name, token_hash, csrf_token, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (issued.id, kind, name, hash_token(token), issued.csrf_token, now, issued.expires_at),
        )
        return issued

    async def create_session(self) -> IssuedToken:
        """A login session lasting auth.session_hours."""
        await self._purge_expired()
        return await self.issue("session", "session", self._session_hours() * 3600.0)

    async def create_api_token(self, name: str, days: int | None) -> IssuedToken:
        """A long-lived token for scripts; expires after `days` (default one year)."""
        lifetime = API_TOKEN_DAYS_DEFAULT if days is None else days
        return await self.issue("api", name, lifetime * 86400.0)

    async def authenticate(self, token: str, via: Via) -> Identity | None:
        """The identity a presented token stands for, or None if unknown, revoked or expired."""
        # Tokens are URL-safe base64: anything else (a header byte that is not UTF-8 arrives
        # as a lone surrogate and failed to encode: a 500 on every route) is simply no token.
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200 or not token.isascii():
            return None
        digest = hash_token(token)
        row = await self._db.fetchone(
            "SELECT id, kind, name, token_hash, csrf_token, created_at, expires_at,"
            " last_used_at FROM auth_tokens WHERE token_hash = ?",
            (digest,),
        )
        if row is None or not hmac.compare_digest(str(row["token_hash"]), digest):
            return None
        now = self.clock()
        expires_at = row["expires_at"]
        if row["kind"] == "session" and expires_at is not None:
            # auth.session_hours lowered since the login: open sessions end by the new rule
            # too (one raised does not lengthen them).
            expires_at = min(expires_at, row["created_at"] + self._session_hours() * 3600.0)
        if expires_at is not None and expires_at <= now:
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] > TOUCH_INTERVAL_S:
            try:
                await self._db.write(
                    "UPDATE auth_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"])
                )
            except StorageError as err:  # a full data disk, a lock: no reason to refuse a read
                _LOGGER.warning("cannot note when a token was last used: %s", err.message)
        return Identity(
            kind=row["kind"],
            via=via,
            name=row["name"],
            token_id=row["id"],
            csrf_token=row["csrf_token"],
            expires_in_s=None if expires_at is None else expires_at - now,
            session_age_s=now - row["created_at"] if row["kind"] == "session" else None,
        )

    async def list_api_tokens(self) -> list[TokenInfo]:
        """Every API token, newest first."""
        rows = await self._db.fetchall(
            "SELECT id, name, created_at, expires_at, last_used_at FROM auth_tokens"
            " WHERE kind = 'api' ORDER BY created_at DESC"
        )
        return [TokenInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def revoke(self, token_id: str, kind: TokenKind | None = None) -> bool:
        """Delete a token; True if it existed."""
        if kind is None:
            cursor = await self._db.write("DELETE FROM auth_tokens WHERE id = ?", (token_id,))
        else:
            cursor = await self._db.write(
                "DELETE FROM auth_tokens WHERE id = ? AND kind = ?", (token_id, kind)
            )
        return cursor.rowcount > 0

    async def _purge_expired(self) -> None:
        await self._db.write(
            "DELETE FROM auth_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (self.clock(),),
        )


def _check_password(password: str) -> None:
    if not password.strip():
        raise ValidationError(
            "the master password cannot be only spaces",
            details=[{"path": "master_password", "message": "only spaces"}],
        )
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError(
            f"the master password needs at least {MIN_PASSWORD_LENGTH} characters",
            details=[{"path": "master_password", "message": "too short"}],
        )
    if len(password.encode()) > 72:
        # bcrypt would silently ignore the rest; say so instead of pretending it counts.
        raise ValidationError(
            "the master password may be at most 72 bytes long",
            details=[{"path": "master_password", "message": "too long"}],
        )
