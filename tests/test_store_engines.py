"""The state store on both engines: SQLite on disk and a real PostgreSQL server (tests/pg.py).
The same tests run against each; what the store promises must not depend on the engine."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from bot.state import db
from bot.state import store as st
from bot.state.alerts import AlertStore
from notifiers.incidents.engine import Engine
from notifiers.incidents.model import Policy, Signal
from notifiers.routing import Router


def engine() -> Engine:
    return Engine(Policy(degraded_grace=0), Router([], {"slack": "C0ALERTS"}))


def test_migrates_and_a_reopened_store_keeps_timers(state_target: str) -> None:
    s = st.Store(state_target)
    assert s.version == max(v for v, _ in st.MIGRATIONS)
    s.schedule_timer("selfheal-on", "payments", 123.0, {"app": "payments"}, "alice")
    s.schedule_timer("selfheal-on", "payments", 456.0, {"app": "payments", "n": 2}, "bob")
    s.close()
    s2 = st.Store(state_target)
    assert s2.timers("selfheal-on") == [
        {
            "kind": "selfheal-on",
            "key": "payments",
            "due_at": 456.0,
            "payload": {"app": "payments", "n": 2},
            "created_by": "bob",
            "created_at": s2.timers()[0]["created_at"],
        }
    ]
    assert s2.cancel_timer("selfheal-on", "payments") is True
    assert s2.cancel_timer("selfheal-on", "payments") is False
    s2.close()


def test_audit_ids_count_up_and_filter(state_target: str) -> None:
    s = st.Store(state_target)
    ids = [
        s.audit_start(
            platform="slack",
            user_id="U1",
            user_name="alice",
            channel="C1",
            command="sync",
            args=app,
            app=app,
        )
        for app in ("payments", "billing", "payments")
    ]
    assert ids == sorted(ids) and len(set(ids)) == 3
    s.audit_end(ids[0], "ok", "synced")
    rows = s.audit_list(app="payments")
    assert [r["id"] for r in rows] == [ids[2], ids[0]]
    assert rows[1]["outcome"] == "ok" and rows[1]["detail"] == "synced"
    s.close()


def test_a_newer_schema_is_refused(state_target: str) -> None:
    s = st.Store(state_target)
    if s.postgres:
        s.execute("INSERT INTO chatops_schema (version) VALUES (999)")
    else:
        s.execute("PRAGMA user_version = 999")
    s.close()
    with pytest.raises(st.StoreError, match="newer than this program knows"):
        st.Store(state_target)


async def test_alert_store_ingests_once_and_reloads_after_restart(state_target: str) -> None:
    s = st.Store(state_target)
    alerts = AlertStore(s, engine())
    failed = Signal("sync_failed", "payments", source="webhook", message="boom", operation="op1")
    first = await alerts.ingest([failed], dedup_key="k1")
    again = await alerts.ingest([failed], dedup_key="k1")
    assert first.status == "accepted" and len(first.items) == 1
    assert again.status == "duplicate" and again.items == []
    item = first.items[0]
    assert item.id > 0 and item.channel == "C0ALERTS" and item.op == "post"
    await alerts.sent(item, "1700000000.000100")
    await alerts.sent(item, "1700000000.000200")  # an upsert, not a duplicate key error
    assert alerts.thread_refs() == {(item.incident_id, "slack", "C0ALERTS"): "1700000000.000200"}
    alerts.close()
    s.close()

    s = st.Store(state_target)  # restart: the engine remembers the open incident
    alerts = AlertStore(s, engine())
    assert list(alerts.engine.incidents) == ["payments:sync_failed"]
    repeat = await alerts.ingest([failed], dedup_key="k2")
    assert [i.op for i in repeat.items] in ([], ["update"])  # never a second "post"
    assert alerts.engine.incidents["payments:sync_failed"].id == item.incident_id
    alerts.close()
    s.close()


def test_replicas_starting_together_migrate_once(pg_server: Any) -> None:
    url = pg_server.create_database()
    errors: list[BaseException] = []
    stores: list[st.Store] = []

    def open_one() -> None:
        try:
            stores.append(st.Store(url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with psycopg.connect(url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM chatops_schema ORDER BY 1")]
    assert versions == sorted({v for v, _ in st.MIGRATIONS})
    for s in stores:
        s.close()


def test_password_from_its_own_setting_and_never_in_messages(pg_server: Any) -> None:
    url = pg_server.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE ROLE bot LOGIN PASSWORD 's3cret-pw'")
    filled = db.with_password(url.replace("chatops@", "bot@"), "s3cret-pw")
    assert "s3cret-pw" in filled and "s3cret-pw" not in db.redact(filled)
    unreachable = f"postgresql://bot:s3cret-pw@127.0.0.1:1/{url.rsplit('/', 1)[1]}"
    with pytest.raises(st.StoreError) as e:
        st.Store(unreachable)
    assert "s3cret-pw" not in str(e.value) and "***" in str(e.value)


def test_sqlite_only_sql_is_refused_on_postgresql() -> None:
    with pytest.raises(ValueError, match="SQLite-only SQL"):
        db.pg_sql("INSERT OR IGNORE INTO t (a) VALUES (?)")
    assert db.pg_sql("SELECT * FROM t WHERE a=? AND b LIKE 'x%'") == (
        "SELECT * FROM t WHERE a=%s AND b LIKE 'x%%'"
    )
    assert "GENERATED BY DEFAULT AS IDENTITY" in db.pg_ddl("id INTEGER PRIMARY KEY AUTOINCREMENT")


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("state.db", "state.db"),
        ("sqlite:///rel/x.db", "rel/x.db"),
        ("sqlite:////abs/x.db", "/abs/x.db"),
    ],
)
def test_sqlite_targets(target: str, path: str) -> None:
    assert db.sqlite_path(target) == path
