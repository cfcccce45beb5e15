"""Hostile input against the real server on 127.0.0.1: unsigned and malformed requests, bytes no
header should carry, replays of every kind, and connections that never finish.

Every row of the matrix must get a 4xx (never a 5xx), run nothing, and leave at most one log
line and no traceback. Raw sockets where aiohttp's client would refuse to send the bytes (invalid
UTF-8 in a header) or to stall. Timeouts are configured short here (fractions of a second); the
figures under load are in tests/bench/bench_slack_ack.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.chat import discord_gateway, slack_signature
from bot.chat.dispatch import Dispatcher
from bot.metrics import Registry
from bot.server import wiring
from bot.state.replay import ReplayGuard
from bot.state.store import Store
from tests.chat_fixtures import (
    DISCORD_OPERATOR_ROLE,
    SlackHarness,
    argo,  # noqa: F401 - fixture
    block_actions_body,
    button,
    chat_settings,
    discord_settings,
    signed_headers,
    slack,  # noqa: F401 - fixture
    slack_harness,
    slash_command_body,
)
from tests.fakes import discord_payloads as dp
from tests.fakes.argocd_api import FakeArgoCD
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.recording import until_async
from tests.fakes.slack_api import FakeSlack

WEBHOOK_TOKEN = "hook-token-for-tests"
HEADER_TIMEOUT = 0.3
BODY_TIMEOUT = 0.3
CLOSED_WITHIN = 5.0  # generous: "closed at all", not a latency figure


@pytest.fixture
async def h(tmp_path: Path, slack: FakeSlack, argo: FakeArgoCD) -> AsyncIterator[SlackHarness]:  # noqa: F811
    settings = chat_settings(
        tmp_path,
        argo,
        slack,
        webhook_token=WEBHOOK_TOKEN,
        http_header_timeout=HEADER_TIMEOUT,
        http_body_timeout=BODY_TIMEOUT,
        http_keepalive_timeout=30.0,
    )
    async with slack_harness(settings, slack, argo) as harness:
        yield harness


def port_of(h: SlackHarness) -> int:
    return int(h.bot.url.rsplit(":", 1)[1])


def syncs(argo: FakeArgoCD, app: str = "payments") -> int:  # noqa: F811
    path = f"/api/v1/applications/{app}/sync"
    return sum(1 for r in argo.requests if r.method == "POST" and r.path == path)


def self_heal(argo: FakeArgoCD, app: str = "payments") -> bool:  # noqa: F811
    return bool(argo.app(app)["spec"]["syncPolicy"]["automated"]["selfHeal"])


# -- raw HTTP ------------------------------------------------------------------------------------
def request(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    head = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1"]
    head += [b"Content-Length: " + str(len(body)).encode()]
    head += [name + b": " + value for name, value in headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def exchange(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw``, read one response: (status, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await asyncio.wait_for(reader.readexactly(length), 10) if length else b""
        return status, body
    finally:
        writer.close()


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    data = b""
    async with asyncio.timeout(CLOSED_WITHIN):
        while chunk := await reader.read(65536):
            data += chunk
    return data


def signed(body: bytes, **kw: Any) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in signed_headers(body, **kw).items()]


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


NOW = str(int(time.time()))
CMD = slash_command_body("/sync", "payments")
FORM = (b"Content-Type", b"application/x-www-form-urlencoded")
JSON = (b"Content-Type", b"application/json")

ZEROS = b"v0=" + b"0" * 64  # a well-formed signature that matches nothing


def claimed(timestamp: bytes, signature: bytes) -> list[tuple[bytes, bytes]]:
    return [FORM, (b"X-Slack-Request-Timestamp", timestamp), (b"X-Slack-Signature", signature)]


DEEP = b"payload=" + urllib.parse.quote(nested(5000)).encode()
UNSIGNED: list[tuple[str, bytes, list[tuple[bytes, bytes]]]] = [
    ("no signature, JSON {nope", b"{nope", [JSON]),
    ("no signature, payload=%7Bnope", b"payload=%7Bnope", [FORM]),
    ("no signature, payload nested 5,000 deep", DEEP, [FORM]),
    ("timestamp abc", CMD, claimed(b"abc", ZEROS)),
    ("timestamp of 5,000 digits", CMD, claimed(b"9" * 5000, ZEROS)),
    ("non-ASCII signature bytes", CMD, claimed(NOW.encode(), b"v0=\xff\xfe\xc3\xa9")),
    ("non-ASCII timestamp digits", CMD, claimed("١٧٠".encode(), ZEROS)),
    ("signed with another secret", CMD, signed(CMD, secret="not-the-secret")),
    ("timestamp 6 minutes old", CMD, signed(CMD, timestamp=time.time() - 360)),
    ("signature repeated", CMD, [*signed(CMD), (b"X-Slack-Signature", ZEROS)]),
]


def signed_rows() -> list[tuple[str, bytes, list[tuple[bytes, bytes]]]]:
    """Signed (so the signature passes) but malformed: built at run time, within the window."""
    return [
        ("signed JSON {nope", b"{nope", signed(b"{nope", content_type="application/json")),
        ("signed payload=%7Bnope", b"payload=%7Bnope", signed(b"payload=%7Bnope")),
        ("signed payload nested 5,000 deep", DEEP, signed(DEEP)),
        ("signed JSON array", b"[1, 2]", signed(b"[1, 2]", content_type="application/json")),
        ("signed non-UTF-8 body", b"\xff\xfe" + CMD, signed(b"\xff\xfe" + CMD)),
        ("signed, X-Slack-Retry-Num abc", CMD, [*signed(CMD), (b"X-Slack-Retry-Num", b"abc")]),
    ]


def log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.INFO]


async def test_unsigned_and_malformed_requests_are_4xx_and_run_nothing(
    h: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    port = port_of(h)
    caplog.set_level(logging.DEBUG)
    rows = [(name, body, hdrs, 401) for name, body, hdrs in UNSIGNED]
    rows += [(name, body, hdrs, 400) for name, body, hdrs in signed_rows()]
    for name, body, headers, expected in rows:
        caplog.clear()
        status, answer = await exchange(port, request("/slack/events", body, headers))
        assert status == expected, (name, status, answer[:200])
        assert len(log_lines(caplog)) <= 1, (name, [r.getMessage() for r in caplog.records])
        assert not any(r.exc_info for r in caplog.records), name
        assert b"Traceback" not in answer, name
    # invalid UTF-8 in the webhook's bearer token
    auth = (b"Authorization", b"Bearer \xff\xfe" + WEBHOOK_TOKEN.encode())
    status, _ = await exchange(port, request("/webhooks/argocd", b"{}", [JSON, auth]))
    assert status == 401
    # too large: refused on Content-Length, before the body is sent
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = request("/slack/events", b"", signed(CMD)).replace(
        b"Content-Length: 0", b"Content-Length: 2000000"
    )
    writer.write(head)
    assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 413")
    writer.close()

    await asyncio.sleep(0.2)  # deliberately: anything wrongly started would reach Argo CD now
    assert syncs(h.argo) == 0
    assert h.bot.store is not None and h.bot.store.audit_list() == []
    text = h.bot.metrics.render()
    assert 'status="5' not in text
    assert 'chatops_http_requests_total{route="/slack/events",status="401"} 10' in text
    assert 'chatops_http_requests_total{route="/slack/events",status="400"} 6' in text


async def test_a_signed_command_still_works_over_raw_http(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments", response_url=h.slack.new_response_url())
    status, answer = await exchange(port_of(h), request("/slack/events", body, signed(body)))
    assert (status, answer) == (200, b"")
    await h.final("sync payments")
    assert syncs(h.argo) == 1


async def test_signed_slack_checks_are_answered_by_bolt_and_run_nothing(h: SlackHarness) -> None:
    # Slack's ssl_check (a form without a command) and url_verification (JSON) are neither
    # commands nor clicks: bolt answers them itself, even when a field says "payload"
    ssl_check = b"ssl_check=1&token=payload-token"
    status, answer = await exchange(port_of(h), request("/slack/events", ssl_check, signed(ssl_check)))  # fmt: skip
    assert (status, answer) == (200, b"")
    challenge = b'{"type": "url_verification", "token": "t", "challenge": "c-123"}'
    headers = signed(challenge, content_type="application/json")
    status, answer = await exchange(port_of(h), request("/slack/events", challenge, headers))
    assert status == 200 and b"c-123" in answer
    assert syncs(h.argo) == 0 and h.slack.calls_to("chat.postMessage") == []


# -- replays -------------------------------------------------------------------------------------
def replays(h: SlackHarness, platform: str, kind: str) -> int:
    needle = f'chatops_replays_total{{kind="{kind}",platform="{platform}"}} '
    for line in h.bot.metrics.render().splitlines():
        if line.startswith(needle):
            return int(float(line.removeprefix(needle)))
    return 0


async def test_the_same_signed_bytes_twice_make_one_sync(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments", response_url=h.slack.new_response_url())
    headers = signed_headers(body)
    assert await h.post(body, headers) == (200, "")
    assert await h.post(body, headers) == (200, "")  # acked as Slack expects
    await until_async(lambda: replays(h, "slack", "signature") == 1)
    await h.final("sync payments")
    assert syncs(h.argo) == 1


async def test_the_same_trigger_id_re_signed_runs_once(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments", response_url=h.slack.new_response_url())
    assert (await h.post(body, signed_headers(body)))[0] == 200
    later = signed_headers(body, timestamp=time.time() - 5)  # a new signature, same trigger_id
    assert await h.post(body, later) == (200, "")
    await until_async(lambda: replays(h, "slack", "trigger_id") == 1)
    await h.final("sync payments")
    assert syncs(h.argo) == 1


async def test_slack_retries_run_only_when_the_original_never_arrived(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments", response_url=h.slack.new_response_url())
    assert (await h.post(body, signed_headers(body)))[0] == 200
    retry = {**signed_headers(body, timestamp=time.time() - 1), "X-Slack-Retry-Num": "1"}
    assert await h.post(body, retry) == (200, "")
    await until_async(lambda: replays(h, "slack", "retry") == 1)
    await h.final("sync payments")
    # a retry of something the bot never saw is the first delivery: it runs
    orders = slash_command_body("/sync", "orders", response_url=h.slack.new_response_url())
    assert (await h.post(orders, {**signed_headers(orders), "X-Slack-Retry-Num": "2"}))[0] == 200
    await h.final("sync orders", n=2)
    assert syncs(h.argo, "payments") == syncs(h.argo, "orders") == 1


async def test_a_replayed_selfheal_off_click_does_not_undo_a_later_on(h: SlackHarness) -> None:
    click = block_actions_body(
        button("selfheal off payments", action_id="chatops:confirm", confirm=True),
        response_url=h.slack.new_response_url(),
    )
    headers = signed_headers(click)
    assert (await h.post(click, headers))[0] == 200
    await h.final("Self-heal is now off")
    await h.command("/selfheal", "on payments")
    await h.final("Self-heal is now on", n=2)
    assert self_heal(h.argo)
    assert (await h.post(click, headers))[0] == 200  # the captured click, replayed
    await until_async(lambda: replays(h, "slack", "signature") == 1)
    assert self_heal(h.argo)
    assert h.bot.store is not None and len(h.bot.store.audit_list()) == 2


async def test_replays_are_remembered_across_a_restart(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack)
    body = slash_command_body("/sync", "payments", response_url=slack.new_response_url())
    headers = signed_headers(body)
    async with slack_harness(settings, slack, argo) as h:
        await h.post(body, headers)
        await h.final("sync payments")
    async with slack_harness(settings, slack, argo) as h:  # a new process, same state file
        assert await h.post(body, headers) == (200, "")
        await until_async(lambda: replays(h, "slack", "signature") == 1)
    assert syncs(argo) == 1


async def test_the_same_discord_interaction_id_runs_once(tmp_path: Path, argo: FakeArgoCD) -> None:  # noqa: F811
    fake = FakeDiscord().start()
    store = Store(tmp_path / "state.db")
    metrics = Registry()
    settings = discord_settings(fake, argo)
    services = wiring.services(settings, store=store, with_kube=False)
    dispatcher = Dispatcher(settings, services, store)
    base = discord.http.Route.BASE
    runner = await discord_gateway.start_discord(
        settings,
        dispatcher,
        api_url=fake.api_url,
        connect=False,
        replays=ReplayGuard(store, metrics=metrics),
    )
    try:
        runner.client._connection.parse_guild_create(dp.guild_create())  # type: ignore[arg-type]
        payload = dp.slash_command("sync", {"app": "payments"}, roles=[DISCORD_OPERATOR_ROLE])
        fake.add_interaction(payload)
        for _ in range(2):  # the gateway delivering the same INTERACTION_CREATE twice
            runner.client._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        counter = metrics.counter("chatops_replays_total", "", ("platform", "kind"))
        await until_async(lambda: counter.value(platform="discord", kind="interaction") == 1)
        await until_async(lambda: str(fake.original_response(payload) or {}).find("✅") >= 0)
        await dispatcher.drain(5.0)
        assert syncs(argo) == 1
        assert fake.callback_type(payload) is not None  # the first one was answered
    finally:
        await runner.close()
        await services.argocd.aclose()
        store.close()
        discord.http.Route.BASE = base
        fake.stop()


# -- connections that never finish ---------------------------------------------------------------
async def test_half_sent_headers_and_silent_connections_are_closed(h: SlackHarness) -> None:
    port = port_of(h)
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(50)]
    for i, (_, writer) in enumerate(conns):
        if i % 2:  # half of them send part of a request; the others nothing at all
            writer.write(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slack-")
    started = time.monotonic()
    outcomes = await asyncio.gather(*(closed_by_server(r) for r, _ in conns))
    assert all(o in (b"",) for o in outcomes)
    assert time.monotonic() - started < CLOSED_WITHIN
    for _, writer in conns:
        writer.close()
    assert (await exchange(port, request("/slack/events", b"", [])))[0] == 401  # still serving


async def test_trickled_headers_do_not_extend_the_deadline(h: SlackHarness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(h))

    async def trickle() -> None:
        for byte in b"POST /slack/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 200:
            writer.write(bytes([byte]))
            await asyncio.sleep(HEADER_TIMEOUT / 10)

    sender = asyncio.create_task(trickle())
    try:
        assert await closed_by_server(reader) == b""
        assert not sender.done()  # cut off while still sending
    finally:
        sender.cancel()
        writer.close()


async def test_a_stalled_body_is_answered_408_and_closed(h: SlackHarness) -> None:
    body = slash_command_body("/sync", "payments")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(h))
    writer.write(request("/slack/events", body, signed(body))[: -len(body) + 10])
    answer = await closed_by_server(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert syncs(h.argo) == 0


async def test_an_idle_keep_alive_connection_outlives_the_header_deadline(h: SlackHarness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(h))
    ping = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        for _ in range(2):
            writer.write(ping)
            head = await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(HEADER_TIMEOUT * 2)  # idle between requests: keep-alive applies
    finally:
        writer.close()


async def test_connections_over_the_cap_get_503(
    tmp_path: Path,
    slack: FakeSlack,  # noqa: F811
    argo: FakeArgoCD,  # noqa: F811
) -> None:
    settings = chat_settings(tmp_path, argo, slack, http_max_connections=5)
    async with slack_harness(settings, slack, argo) as h:
        port = port_of(h)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await until_async(lambda: h.bot.http is not None and _open(h) == 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503")
        writer.close()
        for _, w in held:
            w.close()
        await until_async(lambda: _open(h) == 0)
        assert (await exchange(port, request("/slack/events", b"", [])))[0] == 401
        assert "chatops_http_connections_refused_total 1" in h.bot.metrics.render()


def _open(h: SlackHarness) -> int:
    assert h.bot.http is not None
    return h.bot.http.connections


def test_signature_check_matches_slacks_documented_example() -> None:
    # https://api.slack.com/authentication/verifying-requests-from-slack (the worked example)
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id="
        b"G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook"
        b"-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F3977"
        b"00885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d"
        b"10d2c447fce8b6703c"
    )
    headers = {
        "X-Slack-Request-Timestamp": "1531420618",
        "X-Slack-Signature": "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
    }
    secret = b"8f742231b10e8888abcd99yyyzzz85a5"
    checked = slack_signature.check_headers(headers, now=1531420618 + 299)
    assert checked.verify(secret, body)
    assert not checked.verify(secret, body + b"x")
    with pytest.raises(slack_signature.Rejected, match="more than 5 minutes"):
        slack_signature.check_headers(headers, now=1531420618 + 301)
