"""Logging with the node id in every line."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class NodeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every message with ``[node-id]`` and adds ``node_id`` to the record."""

    def __init__(self, logger: logging.Logger, node_id: str) -> None:
        super().__init__(logger, {"node_id": node_id})
        self.node_id = node_id

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("node_id", self.node_id)
        kwargs["extra"] = extra
        return f"[{self.node_id}] {msg}", kwargs


def node_logger(node_id: str, name: str = "topgun.server") -> NodeLogger:
    return NodeLogger(logging.getLogger(name), node_id)


THIRD_PARTY = ("websockets",)
"""Libraries whose INFO lines (every HTTP response, every connection) would drown a node's own."""


def quiet_third_party(level: int) -> None:
    """Third-party loggers at WARNING, unless ``level`` asks for DEBUG (then everything)."""
    for name in THIRD_PARTY:
        logging.getLogger(name).setLevel(level if level <= logging.DEBUG else logging.WARNING)
