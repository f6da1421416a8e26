"""Fixtures shared by unit and integration tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from topgun.harness.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the whole test session (one ``initdb`` costs ~2 s), stopped and
    its temp dir removed at the end; skipped with the reason where PostgreSQL is missing.
    Tests keep apart by schema (each node id has its own)."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL tests need PostgreSQL: {exc}")
    try:
        yield server
    finally:
        server.stop()
