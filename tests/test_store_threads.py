"""The store's one SQLite connection shared by worker threads, as 200 concurrent commands use
it (audit rows from one thread, operation locks in transactions from others)."""

from __future__ import annotations

import threading

from bot.state.store import Store


def test_audit_rows_and_transactions_from_many_threads_never_collide(tmp_path):
    store = Store(tmp_path / "state.db")
    failures: list[str] = []
    ids: list[int] = []

    def audit() -> None:
        for _ in range(150):
            try:
                ids.append(
                    store.audit_start(platform="slack", user_id="U1", user_name="olivia",
                                      channel="C1", command="sync", args="web", app="web")
                )  # fmt: skip
            except Exception as e:  # every failure is the finding
                failures.append(repr(e))

    def lock() -> None:
        for _ in range(150):
            try:
                with store.transaction() as db:
                    db.execute("DELETE FROM op_locks WHERE app=?", ("web",))
            except Exception as e:
                failures.append(repr(e))

    threads = [threading.Thread(target=f) for f in (audit, lock) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert failures == []
    assert len(set(ids)) == 600
    with store.transaction() as db:  # the connection is not left inside a transaction
        db.execute("DELETE FROM op_locks")
