"""Property: no body makes POST /webhooks/argocd answer 5xx or stop serving.

Thousands of inputs: random bytes, random JSON, and valid bodies (rendered from our templates)
with one part mutated: a key removed, a value swapped for any JSON, a type changed, a string
made huge or strange, nesting made deep. Every answer must be 202, 400, 401 or 413, and a
valid webhook must still be accepted afterwards.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.alert_fixtures import TOKEN, TRIGGERS, Harness, body_for, degraded_app, failed_app
from tests.alert_fixtures import settings as alert_settings
from tests.fakes.argocd_fixtures import load_examples, make_app

ALLOWED = {202, 400, 401, 413}


class Served:
    """The harness on a loop in a background thread, for synchronous hypothesis tests."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.harness = Harness(alert_settings(tmp))
        asyncio.run_coroutine_threadsafe(self.harness.__aenter__(), self.loop).result(10)
        self.client = httpx.Client(base_url=self.harness.url, timeout=10)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        h = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
        return self.client.post("/webhooks/argocd", content=body, headers=h)

    def close(self) -> None:
        self.client.close()
        asyncio.run_coroutine_threadsafe(
            self.harness.__aexit__(None, None, None), self.loop
        ).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("fuzz"))
    yield s
    s.close()


def _valid_bodies() -> list[dict[str, Any]]:
    apps = [*load_examples().values(), degraded_app(failed_app(make_app("payments")))]
    return [json.loads(body_for(t, a)) for t in TRIGGERS for a in apps]


VALID = _valid_bodies()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
strange_strings = st.sampled_from(
    ["", " ", "\x00", "é" * 3, "💥", "<script>", "a" * 70000, "Bad Name", "-x-", "a" * 254,
     "../../etc", "null", "{{ .app }}", "\u202e", "\ud7ff", "0" * 40]
)  # fmt: skip


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if len(prefix) > 6:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    for p in path[:-1]:
        obj = obj[p]
    if delete:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


def _deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = {"a": [value]}
    return value


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    body = copy.deepcopy(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        how = draw(st.sampled_from(["delete", "json", "string", "deep", "number"]))
        if how == "delete":
            _set(body, path, None, delete=True)
        elif how == "json":
            _set(body, path, draw(json_values))
        elif how == "string":
            _set(body, path, draw(strange_strings))
        elif how == "deep":
            _set(body, path, _deep(draw(st.integers(10, 3000))))
        else:
            _set(body, path, draw(st.sampled_from([-1, 2**63, 1e308, -0.0, 10**40])))
    try:
        return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    except RecursionError:
        return b'{"deep": ' + b"[" * 5000 + b"]" * 5000 + b"}"


FUZZ = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
    database=None,
)  # fmt: skip


@settings(FUZZ, max_examples=1200)
@given(body=mutated())
def test_mutated_valid_bodies_never_5xx(served: Served, body: bytes) -> None:
    assert served.post(body).status_code in ALLOWED


@settings(FUZZ, max_examples=700)
@given(value=json_values)
def test_random_json_never_5xx(served: Served, value: Any) -> None:
    resp = served.post(json.dumps(value).encode())
    assert resp.status_code == 400, resp.text  # never a valid body by chance


@settings(FUZZ, max_examples=400)
@given(raw=st.binary(max_size=2048), auth=st.sampled_from(["ok", "none", "bad", "basic", "junk"]))
def test_random_bytes_and_headers_never_5xx(served: Served, raw: bytes, auth: str) -> None:
    headers = {
        "ok": {"Authorization": f"Bearer {TOKEN}"},
        "none": {},
        "bad": {"Authorization": "Bearer nope"},
        "basic": {"Authorization": f"Basic {TOKEN}"},
        "junk": {"Authorization": "Bearer\t" + TOKEN + "\x7f", "Content-Type": "text/x-junk"},
    }[auth]
    resp = served.post(raw, headers)
    assert resp.status_code in ALLOWED
    if auth == "junk":  # aiohttp's parser rejects the header itself: 400, never 5xx
        assert resp.status_code in (400, 401)
    elif auth != "ok":
        assert resp.status_code == 401


def test_still_serving_after_the_storm(served: Served) -> None:
    fresh = json.loads(body_for("health-degraded", degraded_app(make_app("after-fuzz"))))
    fresh["app"]["resourceVersion"] = "fuzz-final"
    resp = served.post(json.dumps(fresh).encode())
    assert resp.status_code == 202 and resp.json()["status"] == "accepted"
