"""The read side of a projection on PostgreSQL runs as a role that may read its tables and nothing more."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from eventbus.backends.base import TopicPartition
from eventbus.projections import ProjectionReader
from eventbus.projections.store import Changes, open_store
from tests.postgres_server import fresh_database

pytestmark = pytest.mark.postgres


def test_a_role_granted_only_select_reads_a_projection(postgres_url: str) -> None:
    url = fresh_database(postgres_url)
    tp = TopicPartition("accounts", 0)
    with open_store(url) as store:
        store.write("balances", store.current_version("balances"), Changes({"a": '{"n": 1}'}, frozenset(), {tp: 1}))
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    parts = urlsplit(url)
    as_reader = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
    try:
        with ProjectionReader(as_reader, "balances") as reader:
            assert reader.get("a").value == {"n": 1}
            assert reader.query({"n": 1}).value == [{"key": "a", "value": {"n": 1}}]
            assert reader.position() == {tp: 1}
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")
