"""Client authentication (HS256 JWT) and the one place where permissions are decided."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import jwt

ADMIN = "ADMIN"
READ = "READ"
WRITE = "WRITE"


class AuthError(Exception):
    """A token that does not authenticate anyone."""


@dataclass(frozen=True)
class Principal:
    user_id: str | None
    roles: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


def verify_token(token: str, secret: str) -> Principal:
    """Check an HS256 JWT (``exp``/``nbf`` honoured); every other algorithm is refused."""
    if not isinstance(token, str) or not token:
        raise AuthError("missing token")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": [], "verify_aud": False}
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    if not isinstance(claims, dict):
        raise AuthError("invalid token: claims must be an object")
    roles = claims.get("roles")
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        roles = ["USER"]
    user = claims.get("userId", claims.get("sub"))
    return Principal(user if isinstance(user, str) else None, frozenset(roles), claims)


def make_token(
    secret: str, *, sub: str = "user", roles: list[str] | None = None, ttl_s: float | None = 3600
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now}
    if roles:
        claims["roles"] = list(roles)
    if ttl_s is not None:
        claims["exp"] = now + int(ttl_s)
    return jwt.encode(claims, secret, algorithm="HS256")


def authorize(principal: Principal | None, action: str, map_name: str | None = None) -> bool:
    """The single permission check. With no policy configured any authenticated principal
    may read and write; ADMIN may do everything. Policies hook in here."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    return action in (READ, WRITE)
