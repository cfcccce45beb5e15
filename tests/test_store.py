import sqlite3

import pytest

from bot.state import store as st


def test_migrates_and_reopens(tmp_path):
    path = tmp_path / "state.db"
    s = st.Store(path)
    assert s.version == max(v for v, _ in st.MIGRATIONS)
    s.schedule_timer("selfheal-on", "payments", 123.0, {"app": "payments"}, "alice")
    s.close()
    s2 = st.Store(path)  # a restart: the timer is still there
    assert s2.timers("selfheal-on")[0]["payload"] == {"app": "payments"}
    assert s2.timer_due("selfheal-on", "payments") == 123.0
    assert s2.cancel_timer("selfheal-on", "payments") is True
    assert s2.cancel_timer("selfheal-on", "payments") is False
    s2.close()


def test_refuses_newer_schema(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 999")
    db.close()
    with pytest.raises(st.StoreError, match="newer than this program knows"):
        st.Store(path)


def test_audit_roundtrip(tmp_path):
    s = st.Store(tmp_path / "a.db")
    a = s.audit_start(
        platform="slack",
        user_id="U1",
        user_name="alice",
        channel="C1",
        command="sync",
        args="payments",
        app="payments",
    )
    s.audit_start(
        platform="discord",
        user_id="1",
        user_name="bob",
        channel="2",
        command="status",
        args="billing",
        app="billing",
    )
    s.audit_end(a, "changed", "synced")
    rows = s.audit_list(app="payments")
    assert len(rows) == 1 and rows[0]["outcome"] == "changed" and rows[0]["user_name"] == "alice"
    assert len(s.audit_list()) == 2
    s.close()


async def test_timer_port(tmp_path):
    s = st.Store(tmp_path / "t.db")
    port = st.StoreTimers(s)
    await port.schedule("k", "a", 5.0, {}, "me")
    assert await port.pending("k", "a") == 5.0
    assert await port.cancel("k", "a") is True
    assert await port.pending("k", "a") is None
