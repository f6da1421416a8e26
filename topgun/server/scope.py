"""What topgun does not serve, and the error a client gets for it
(docs/INTEROPERABILITY.md, "What is not served").

Every such request is answered ``ERROR 501`` with ``details = {"code": <below>, "type":
<message type>}``, so a client can tell "this server does not do topics" from a bad message
(400) or a refusal (403). Nothing is applied.
"""

from __future__ import annotations

from typing import Any

NOT_SUPPORTED = 501

FEATURES: dict[str, tuple[str, ...]] = {
    "TOPICS_NOT_SUPPORTED": ("TOPIC_SUB", "TOPIC_UNSUB", "TOPIC_PUB"),
    "LOCKS_NOT_SUPPORTED": ("LOCK_REQUEST", "LOCK_RELEASE"),
    "COUNTERS_NOT_SUPPORTED": ("COUNTER_REQUEST", "COUNTER_SYNC"),
    "JOURNAL_NOT_SUPPORTED": ("JOURNAL_SUBSCRIBE", "JOURNAL_UNSUBSCRIBE", "JOURNAL_READ"),
    "SEARCH_NOT_SUPPORTED": ("SEARCH", "SEARCH_SUB", "SEARCH_UNSUB"),
    "ORMAP_NOT_SUPPORTED": (
        "ORMAP_SYNC_INIT", "ORMAP_MERKLE_REQ_BUCKET", "ORMAP_DIFF_REQUEST", "ORMAP_PUSH_DIFF",
    ),
    "ENTRY_PROCESSORS_NOT_SUPPORTED": ("ENTRY_PROCESS", "ENTRY_PROCESS_BATCH"),
    "RESOLVERS_NOT_SUPPORTED": ("REGISTER_RESOLVER", "UNREGISTER_RESOLVER", "LIST_RESOLVERS"),
}  # fmt: skip

_CODE_OF = {t: code for code, types in FEATURES.items() for t in types}


def refusal(msg_type: str) -> tuple[int, str, dict[str, Any]] | None:
    """(ERROR code, message, details) for a request type topgun does not serve, else None."""
    code = _CODE_OF.get(msg_type)
    if code is None:
        return None
    message = f"{msg_type} is not supported by this server ({code})"
    return NOT_SUPPORTED, message, {"code": code, "type": msg_type}
