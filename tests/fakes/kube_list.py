"""List paging (``limit`` / ``continue``) for the fake Kubernetes API server.

Evidence (Kubernetes API concepts, "Retrieving large results sets in chunks", and the
``ListOptions`` field docs of every client, e.g. kubernetes-client/python ``_continue``):

- Without ``limit`` the server returns every item in one response; with ``limit`` it returns at
  most that many and sets ``metadata.continue`` (and ``remainingItemCount``) when more exist. The
  server may return FEWER items than asked: ``FakeKube(max_page=N)`` caps pages the way a busy
  API server does, and only when the client asked for a ``limit``.
- Every page of one list is served from the snapshot of the first (its ``resourceVersion`` is the
  first page's), so a client that watches from it misses nothing.
- A continue token is only valid with the same query. Once it expires (etcd compaction, "generally
  five to fifteen minutes") the server answers 410 ``Expired`` with a fresh token in
  ``metadata.continue`` that continues from the next key in the LATEST snapshot (inconsistent);
  a client that needs a consistent list must start over without ``continue``.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.kube_store import ApiError, Obj, bad_request

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)


@dataclass
class _Snapshot:
    rv: int
    query: str  # selectors and namespace: a token only works with the same query
    items: list[Obj]


class Expired(ApiError):
    """410 with the token that continues, inconsistently, from the latest snapshot."""

    def __init__(self, token: str | None) -> None:
        super().__init__(410, "Expired", EXPIRED_MESSAGE)
        self.token = token

    def status(self) -> Obj:
        body = super().status()
        if self.token:
            body["metadata"] = {"continue": self.token}
        return body


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


class Pager:
    def __init__(self) -> None:
        self.max_page: int | None = None
        self.expire_next = 0  # the next N continued lists answer 410 (as after a compaction)
        self._snapshots: dict[int, _Snapshot] = {}
        self._ids = itertools.count(1)

    def page(
        self,
        query: dict[str, str],
        scope: str,
        current: Callable[[], list[Obj]],
        rv: int,
        compacted: int,
    ) -> tuple[list[Obj], int, Obj]:
        """(items, resourceVersion, extra list metadata) for one list request."""
        raw_limit = query.get("limit", "")
        try:
            limit = int(raw_limit) if raw_limit else 0
        except ValueError:
            raise bad_request(f'limit: Invalid value: "{raw_limit}"') from None
        signature = json.dumps([scope, query.get("labelSelector"), query.get("fieldSelector")])
        token = query.get("continue", "")
        if token:
            snap_id, offset = self._decode(token)
            snap = self._snapshots.get(snap_id)
            if snap is None or snap.query != signature:
                raise bad_request("continue key is not valid: the token does not match this list")
            if self.expire_next > 0 or snap.rv < compacted:
                self.expire_next = max(0, self.expire_next - 1)
                last = _key(snap.items[offset - 1]) if offset else ("", "")
                rest = [i for i in current() if _key(i) > last]
                fresh = self._store(_Snapshot(rv, signature, rest))
                raise Expired(self._encode(fresh, 0) if rest else None)
        else:
            snap_id, offset = self._store(_Snapshot(rv, signature, current())), 0
            snap = self._snapshots[snap_id]
        if not limit:  # no limit: everything, whatever max_page says
            self._snapshots.pop(snap_id, None)
            return snap.items[offset:], snap.rv, {}
        size = min(limit, self.max_page) if self.max_page else limit
        end = offset + size
        items = snap.items[offset:end]
        if end >= len(snap.items):
            self._snapshots.pop(snap_id, None)
            return items, snap.rv, {}
        return (
            items,
            snap.rv,
            {
                "continue": self._encode(snap_id, end),
                "remainingItemCount": len(snap.items) - end,
            },
        )

    def _store(self, snap: _Snapshot) -> int:
        snap_id = next(self._ids)
        self._snapshots[snap_id] = snap
        return snap_id

    @staticmethod
    def _encode(snap_id: int, offset: int) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "snapshot": snap_id, "offset": offset})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode(token: str) -> tuple[int, int]:
        try:
            data: Any = json.loads(base64.urlsafe_b64decode(token.encode()))
            return int(data["snapshot"]), int(data["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion"
            ) from None
