"""Map permissions as TopGun defines them (reference §4.9): pure decisions, no I/O.

A policy ``{role, mapNamePattern, actions, allowedFields?}`` grants the holders of ``role``
the ``actions`` (``READ``, ``PUT``, ``REMOVE`` or ``ALL``) on every map whose name matches
the pattern. Patterns follow TopGun's ``SecurityManager``: ``*`` matches every map, a
trailing ``*`` matches by prefix (``orders-*``), anything else must equal the name, and
``{userId}`` is replaced by the principal's user id first (``private-{userId}``).

Rules that no policy can change: the ``ADMIN`` role may do everything; maps named
``$sys/…`` are for ``ADMIN`` only; with no policy at all nobody but ``ADMIN`` may act.
``allowedFields`` limits which top-level fields of an object value a reader sees; the
union over every matching READ policy applies, and one policy without it (or with ``*``)
shows the whole value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ADMIN_ROLE = "ADMIN"
READ = "READ"
PUT = "PUT"
REMOVE = "REMOVE"
ALL = "ALL"
ADMINISTER = "ADMINISTER"
"""The admin routes' action: only the ADMIN role holds it; no policy can grant it."""

POLICY_ACTIONS = frozenset({READ, PUT, REMOVE, ALL})
SYSTEM_PREFIX = "$sys/"
USER_ID_PLACEHOLDER = "{userId}"
MAX_PATTERN_LENGTH = 256
MAX_NAME_LENGTH = 128
MAX_FIELDS = 256
POLICY_KEYS = frozenset({"role", "mapNamePattern", "actions", "allowedFields"})


class PolicyError(ValueError):
    """A policy that cannot be enforced as written (refused when the node starts)."""


def _name(obj: Mapping[str, Any], key: str, limit: int, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise PolicyError(f"{where}: {key} must be a non-empty string of at most {limit} chars")
    return value


def _names(obj: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = obj.get(key)
    if not isinstance(value, list) or not value or len(value) > MAX_FIELDS:
        raise PolicyError(f"{where}: {key} must be a non-empty list of strings")
    if not all(isinstance(v, str) and 0 < len(v) <= MAX_NAME_LENGTH for v in value):
        raise PolicyError(f"{where}: every entry of {key} must be a non-empty string")
    return value


@dataclass(frozen=True, slots=True)
class Policy:
    role: str
    map_pattern: str
    actions: frozenset[str]
    allowed_fields: frozenset[str] | None = None
    """None: every field; otherwise the top-level fields a READ shows."""

    @classmethod
    def from_dict(cls, obj: object, where: str = "policy") -> Policy:
        """Validate one policy as written in a policy file; unknown keys are refused."""
        if not isinstance(obj, Mapping):
            raise PolicyError(f"{where}: a policy must be a table/object")
        unknown = sorted(set(obj) - POLICY_KEYS)
        if unknown:
            raise PolicyError(f"{where}: unknown keys {unknown} (allowed: {sorted(POLICY_KEYS)})")
        actions = _names(obj, "actions", where)
        bad = sorted(set(actions) - POLICY_ACTIONS)
        if bad:
            raise PolicyError(f"{where}: unknown actions {bad} (allowed: {sorted(POLICY_ACTIONS)})")
        fields = None
        if obj.get("allowedFields") is not None:
            fields = frozenset(_names(obj, "allowedFields", where))
            if "*" in fields:
                fields = None
        return cls(
            _name(obj, "role", MAX_NAME_LENGTH, where),
            _name(obj, "mapNamePattern", MAX_PATTERN_LENGTH, where),
            frozenset(actions),
            fields,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": self.role,
            "mapNamePattern": self.map_pattern,
            "actions": sorted(self.actions),
        }
        if self.allowed_fields is not None:
            out["allowedFields"] = sorted(self.allowed_fields)
        return out

    def grants(self, action: str) -> bool:
        return action in self.actions or (ALL in self.actions and action in POLICY_ACTIONS)

    def covers(self, roles: frozenset[str], user_id: str | None, map_name: str) -> bool:
        return self.role in roles and pattern_matches(self.map_pattern, map_name, user_id)


def pattern_matches(pattern: str, map_name: str, user_id: str | None) -> bool:
    """TopGun's map-name patterns: ``*``, exact, trailing-``*`` prefix, ``{userId}``."""
    if USER_ID_PLACEHOLDER in pattern:
        if not user_id:
            return False
        pattern = pattern.replace(USER_ID_PLACEHOLDER, user_id)
    if pattern in ("*", map_name):
        return True
    return pattern.endswith("*") and map_name.startswith(pattern[:-1])


@dataclass(frozen=True, slots=True)
class FieldView:
    """What a reader may see of a map's values: nothing, everything, or some fields."""

    allowed: bool
    fields: frozenset[str] | None = None

    def apply(self, value: Any) -> Any:
        """The value as this reader sees it: None when unreadable, objects trimmed."""
        if not self.allowed:
            return None
        if self.fields is None:
            return value
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k in self.fields}
        if isinstance(value, list):
            return [self.apply(item) if isinstance(item, dict) else item for item in value]
        return value

    def shows(self, field_name: str) -> bool:
        """May a query refer to this top-level field (``a.b`` refers to ``a``)?"""
        return self.allowed and (self.fields is None or field_name.partition(".")[0] in self.fields)


EVERYTHING = FieldView(True)
NOTHING = FieldView(False)


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Every policy of one node; an empty set lets nobody but ADMIN act."""

    policies: tuple[Policy, ...] = ()

    @classmethod
    def from_dicts(cls, items: Iterable[object], where: str = "policies") -> PolicySet:
        return cls(tuple(Policy.from_dict(p, f"{where}[{i}]") for i, p in enumerate(items)))

    def allows(
        self, roles: frozenset[str], user_id: str | None, action: str, map_name: str | None
    ) -> bool:
        if ADMIN_ROLE in roles:
            return True
        if action not in POLICY_ACTIONS or map_name is None:
            return False  # ADMINISTER, and actions on no map, are ADMIN's alone
        if map_name.startswith(SYSTEM_PREFIX):
            return False
        return any(p.grants(action) and p.covers(roles, user_id, map_name) for p in self.policies)

    def field_view(self, roles: frozenset[str], user_id: str | None, map_name: str) -> FieldView:
        if ADMIN_ROLE in roles:
            return EVERYTHING
        if map_name.startswith(SYSTEM_PREFIX):
            return NOTHING
        fields: set[str] = set()
        allowed = False
        for p in self.policies:
            if p.grants(READ) and p.covers(roles, user_id, map_name):
                if p.allowed_fields is None:
                    return EVERYTHING
                allowed = True
                fields |= p.allowed_fields
        return FieldView(True, frozenset(fields)) if allowed else NOTHING
