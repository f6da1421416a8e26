"""Client authentication (HS256 JWT) and the one place where permissions are decided.

Every path asks :func:`authorize` (writes, queries, live events, sync, admin routes) and
trims what it sends with :func:`visible`; the rules themselves are
:mod:`topgun.core.policy`. A principal carries the policies of the node that verified its
token, so ``authorize(principal, READ, map_name)`` needs nothing else.

Forwarded writes: the node a client is connected to (the entry node) decides; the owner
applies what an HMAC-authenticated peer forwards without deciding again, so a policy file
must be the same on every node of a cluster.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.types import Options

from topgun.core.policy import (
    ADMIN_ROLE,
    ADMINISTER,
    ALL,
    PUT,
    READ,
    REMOVE,
    FieldView,
    PolicySet,
)

__all__ = [
    "ADMIN",
    "ADMINISTER",
    "ALL",
    "PUT",
    "READ",
    "REMOVE",
    "AuthError",
    "Principal",
    "authorize",
    "field_view",
    "make_token",
    "verify_token",
    "visible",
]

ADMIN = ADMIN_ROLE
MIN_SECRET_BYTES = 32
"""RFC 7518 §3.2: an HS256 key should be at least as long as the hash (256 bits)."""
MAX_SUBJECT_LENGTH = 256
MAX_ROLES = 64
MAX_ROLE_LENGTH = 128
NO_POLICIES = PolicySet()


@contextlib.contextmanager
def _quiet_key_length() -> Iterator[None]:
    """PyJWT warns on every use of a short key; the node says it once, in its own words
    (:func:`short_secret_warning`), instead of a library warning per token."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        yield


class AuthError(Exception):
    """A token that does not authenticate anyone (answered with AUTH_FAIL)."""


@dataclass(frozen=True)
class Principal:
    """Who a verified token names, with the policies of the node that verified it."""

    user_id: str
    roles: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    policies: PolicySet = field(default=NO_POLICIES, compare=False, repr=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


def short_secret_warning(secret: str) -> str | None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return f"the JWT secret is shorter than {MIN_SECRET_BYTES} bytes (RFC 7518 §3.2)"
    return None


def verify_token(
    token: str,
    secret: str,
    *,
    policies: PolicySet = NO_POLICIES,
    require_exp: bool = False,
) -> Principal:
    """Check an HS256 JWT; every other algorithm is refused.

    The token must name a subject (``userId``, else ``sub``: a non-empty string);
    ``exp`` and ``nbf`` are checked when present, and ``exp`` must be present when
    ``require_exp`` is set. ``roles`` is a list of strings, ``["USER"]`` when absent.
    """
    if not isinstance(token, str) or not token:
        raise AuthError("missing token")
    options: Options = {"require": ["exp"] if require_exp else [], "verify_aud": False}
    try:
        with _quiet_key_length():
            claims = jwt.decode(token, secret, algorithms=["HS256"], options=options)
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if not isinstance(claims, dict):
        raise AuthError("invalid token: claims must be an object")
    user = claims.get("userId", claims.get("sub"))
    if not isinstance(user, str) or not user.strip() or len(user) > MAX_SUBJECT_LENGTH:
        raise AuthError("invalid token: it names no subject (sub or userId)")
    roles = claims.get("roles", ["USER"])
    if (
        not isinstance(roles, list)
        or len(roles) > MAX_ROLES
        or not all(isinstance(r, str) and 0 < len(r) <= MAX_ROLE_LENGTH for r in roles)
    ):
        raise AuthError(f"invalid token: roles must be a list of at most {MAX_ROLES} names")
    return Principal(user, frozenset(roles), claims, policies)


def make_token(
    secret: str, *, sub: str = "user", roles: list[str] | None = None, ttl_s: float | None = 3600
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now}
    if roles:
        claims["roles"] = list(roles)
    if ttl_s is not None:
        claims["exp"] = now + int(ttl_s)
    with _quiet_key_length():
        return jwt.encode(claims, secret, algorithm="HS256")


def authorize(principal: Principal | None, action: str, map_name: str | None = None) -> bool:
    """May ``principal`` do ``action`` (READ, PUT, REMOVE, ALL, ADMINISTER) on ``map_name``?

    The single permission check: no principal may do nothing; ADMIN may do everything;
    everyone else needs a matching policy (none configured: nothing).
    """
    if principal is None:
        return False
    return principal.policies.allows(principal.roles, principal.user_id, action, map_name)


def field_view(principal: Principal | None, map_name: str) -> FieldView:
    """Which fields of ``map_name``'s values ``principal`` may see (``allowedFields``)."""
    if principal is None:
        return FieldView(False)
    return principal.policies.field_view(principal.roles, principal.user_id, map_name)


def visible(principal: Principal | None, map_name: str, value: Any) -> Any:
    """``value`` as ``principal`` may see it: None when unreadable, objects trimmed to the
    allowed fields. For query results, live events and sync answers alike."""
    return field_view(principal, map_name).apply(value)
