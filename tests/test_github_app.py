"""/rollback authenticated as a GitHub App: JWT -> installation token -> Git Data API revert.

Everything runs over real HTTP against the fake GitHub, which verifies each JWT with the app's
public key the way GitHub does and expires its installation tokens after an hour of the
test's clock. The RSA keys are generated here; no key material is checked in.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot import settings as s
from bot.server import wiring
from commands import errors
from commands.githost.github.app_auth import GitHubAppAuth
from commands.githost.github.host import GitHubHost
from tests.fakes.github_api import App, FakeGitHub, Grant
from tests.fakes.gitrepo import Workspace

APP_ID = "123456"
INSTALLATION = "7654321"
VALUES = "replicas: 1\nimage: postgres:15\n"
TOKEN_PATH = f"/app/installations/{INSTALLATION}/access_tokens"


@dataclass
class Clock:
    """Shared by the client and the fake, so both see the same jumps in time."""

    now: float

    def __call__(self) -> float:
        return self.now


def _pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as GitHub's
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The public half, as GitHub keeps it for the app to verify its JWTs."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CHATOPS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def clock() -> Clock:
    return Clock(time.time())


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    work = Workspace(tmp_path)
    work.commit("Initial layout", {"apps/db/values.yaml": VALUES, "README.md": "deploy\n"})
    return work


@pytest.fixture
def github(ws: Workspace, app_key: rsa.RSAPrivateKey, clock: Clock) -> Iterator[FakeGitHub]:
    public = _public_pem(app_key)
    fake = FakeGitHub(
        ws.served,
        apps={APP_ID: App(public, installations={INSTALLATION: Grant()})},
        clock=clock,
    ).start()
    yield fake
    fake.stop()


def _auth(
    github: FakeGitHub,
    client: httpx.AsyncClient,
    key: rsa.RSAPrivateKey,
    clock: Clock,
    installation: str = INSTALLATION,
) -> GitHubAppAuth:
    return GitHubAppAuth(github.url, APP_ID, installation, _pem(key), client=client, clock=clock)


def _bad_commit(ws: Workspace) -> str:
    return ws.commit("Scale db to 3", {"apps/db/values.yaml": VALUES.replace("1", "3")})


def _issued(github: FakeGitHub) -> list[str]:
    return [t for t in github.tokens if t.startswith("ghs_")]


# -- end to end --------------------------------------------------------------------------


async def test_revert_through_github_host_with_an_installation_token(
    ws: Workspace,
    github: FakeGitHub,
    client: httpx.AsyncClient,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    bad = _bad_commit(ws)
    expected = ws.expected_revert(bad)
    auth = _auth(github, client, app_key, clock)
    host = GitHubHost(github.url, auth, "acme/deploy", "main", client=client)

    outcome = await host.revert(bad, requested_by="alice via Slack #ops")

    assert outcome.kind == "committed" and ws.tip() == outcome.sha
    assert ws.tree(outcome.sha) == expected  # the same tree `git revert` makes
    [exchange] = github.calls("POST", "/access_tokens")
    assert exchange.path == TOKEN_PATH
    claims = jwt.decode(
        exchange.auth.removeprefix("Bearer "), app_key.public_key(), algorithms=["RS256"]
    )
    assert claims["iss"] == APP_ID
    assert claims["exp"] - claims["iat"] == 600 and claims["iat"] == int(clock.now) - 60
    [token] = _issued(github)
    repo_calls = [r for r in github.requests if r.path.startswith("/repos/")]
    assert repo_calls and {r.auth for r in repo_calls} == {f"Bearer {token}"}


async def test_settings_with_a_key_file_wire_an_app_authenticated_host(
    ws: Workspace, github: FakeGitHub, app_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(_pem(app_key))
    settings = s.Settings(
        git_api_url=github.url,
        git_repo="acme/deploy",
        git_app_id=APP_ID,
        git_app_installation_id=INSTALLATION,
        git_app_private_key_file=str(key_file),
    )
    bad = _bad_commit(ws)
    host = wiring.git(settings)
    assert isinstance(host, GitHubHost)
    try:
        outcome = await host.revert(bad, requested_by="bob")
    finally:
        await host.aclose()
    assert ws.tip() == outcome.sha and ws.tree(outcome.sha) == ws.tree(f"{bad}^")
    assert len(github.calls("POST", "/access_tokens")) == 1


async def test_a_one_line_key_from_the_environment_is_read(
    github: FakeGitHub, app_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATOPS_GIT_API_URL", github.url)
    monkeypatch.setenv("CHATOPS_GIT_REPO", "acme/deploy")
    monkeypatch.setenv("CHATOPS_GIT_APP_ID", APP_ID)
    monkeypatch.setenv("CHATOPS_GIT_APP_INSTALLATION_ID", INSTALLATION)
    monkeypatch.setenv("CHATOPS_GIT_APP_PRIVATE_KEY", _pem(app_key).replace("\n", "\\n"))
    auth = wiring.git_app_auth(s.load())
    assert await auth() in github.tokens
    assert "PRIVATE KEY" not in repr(auth)


# -- caching and refresh -----------------------------------------------------------------


async def test_token_is_cached_and_concurrent_callers_share_one_fetch(
    ws: Workspace,
    github: FakeGitHub,
    client: httpx.AsyncClient,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    auth = _auth(github, client, app_key, clock)
    tokens = await asyncio.gather(*(auth() for _ in range(8)))
    assert len(set(tokens)) == 1 and len(github.calls("POST", "/access_tokens")) == 1

    host = GitHubHost(github.url, auth, "acme/deploy", "main", client=client)
    await host.preview(_bad_commit(ws))  # a dozen API calls, all with the cached token
    assert await auth() == tokens[0]
    assert len(github.calls("POST", "/access_tokens")) == 1
    assert auth.expires_at is not None and auth.expires_at > clock.now + 3500
    assert auth.permissions["contents"] == "write" and auth.permissions["pull_requests"] == "write"


async def test_token_is_refreshed_within_five_minutes_of_expiry(
    ws: Workspace,
    github: FakeGitHub,
    client: httpx.AsyncClient,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
) -> None:
    auth = _auth(github, client, app_key, clock)
    first = await auth()
    assert auth.expires_at is not None
    expires = auth.expires_at

    clock.now = expires - 301  # still more than 5 minutes left
    assert await auth() == first
    clock.now = expires - 299
    second = await auth()
    assert second != first and len(github.calls("POST", "/access_tokens")) == 2
    jwt_claims = jwt.decode(
        github.calls("POST", "/access_tokens")[-1].auth.removeprefix("Bearer "),
        options={"verify_signature": False},
    )
    assert jwt_claims["iat"] == int(clock.now) - 60  # signed at the new time

    clock.now = expires + 1  # the first token is dead on GitHub's side now
    stale = GitHubHost(github.url, first, "acme/deploy", "main", client=client)
    with pytest.raises(errors.Unauthorized):
        await stale.commit(ws.tip())
    fresh = GitHubHost(github.url, auth, "acme/deploy", "main", client=client)
    assert (await fresh.commit(ws.tip())).sha == ws.tip()
    assert len(github.calls("POST", "/access_tokens")) == 2


# -- failures ----------------------------------------------------------------------------


async def test_a_wrong_key_is_unauthorized_and_nothing_secret_is_shown(
    ws: Workspace,
    github: FakeGitHub,
    client: httpx.AsyncClient,
    other_key: rsa.RSAPrivateKey,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = _auth(github, client, other_key, clock)
    host = GitHubHost(github.url, auth, "acme/deploy", "main", client=client)
    with pytest.raises(errors.Unauthorized) as caught:
        await host.commit(ws.tip())
    assert caught.value.user_message == (
        "GitHub rejected the app's JWT: check CHATOPS_GIT_APP_ID and the private key"
    )
    [exchange] = github.calls("POST", "/access_tokens")
    assert not [r for r in github.requests if r.path.startswith("/repos/")]
    assert _issued(github) == []
    sent_jwt = exchange.auth.removeprefix("Bearer ")
    key_line = _pem(other_key).splitlines()[1]
    for shown in (str(caught.value), repr(auth), repr(host), caplog.text):
        assert sent_jwt not in shown and key_line not in shown


async def test_unknown_installation_is_not_found(
    github: FakeGitHub, client: httpx.AsyncClient, app_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    auth = _auth(github, client, app_key, clock, installation="999")
    with pytest.raises(errors.NotFound) as caught:
        await auth()
    assert "999" in caught.value.user_message
    assert "CHATOPS_GIT_APP_INSTALLATION_ID" in (caught.value.hint or "")
    assert [r.path for r in github.calls("POST")] == ["/app/installations/999/access_tokens"]


async def test_unreachable_github_is_unavailable_and_recovers(
    github: FakeGitHub, client: httpx.AsyncClient, app_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    auth = _auth(github, client, app_key, clock)
    with (
        github.server.paused(),
        pytest.raises(errors.Unavailable, match=r"GitHub at .* is unreachable"),
    ):
        await auth()
    assert await auth() in github.tokens  # nothing half-cached from the failure


async def test_github_5xx_is_unavailable(
    github: FakeGitHub, client: httpx.AsyncClient, app_key: rsa.RSAPrivateKey, clock: Clock
) -> None:
    github.fail("POST", "/access_tokens", 502)
    auth = _auth(github, client, app_key, clock)
    with pytest.raises(errors.Unavailable, match="502"):
        await auth()
    assert await auth() in github.tokens


def test_a_key_that_is_not_pem_is_bad_input_without_echoing_it() -> None:
    with pytest.raises(errors.BadInput) as caught:
        GitHubAppAuth("https://api.github.test", APP_ID, INSTALLATION, "not-a-key-s3cr3t")
    assert "s3cr3t" not in str(caught.value)


# -- the fake judges JWTs as GitHub does -------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("valid", None),
        ("lifetime over 10 minutes", "too far in the future"),
        ("expired", "'Expiration time' claim ('exp') must be"),
        ("issued in the future", "'Issued at' claim ('iat')"),
        ("other issuer", "could not be decoded"),
        ("HS256 with the public key", "could not be decoded"),
    ],
)
async def test_fake_verifies_the_app_jwt(
    github: FakeGitHub,
    client: httpx.AsyncClient,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
    case: str,
    message: str | None,
) -> None:
    now = int(clock.now)
    claims: dict[str, Any] = {"iat": now - 60, "exp": now + 540, "iss": APP_ID}
    key: Any = app_key
    algorithm = "RS256"
    if case == "lifetime over 10 minutes":
        claims["exp"] = now + 541
    elif case == "expired":
        claims.update(iat=now - 700, exp=now - 100)
    elif case == "issued in the future":
        claims.update(iat=now + 120, exp=now + 600)
    elif case == "other issuer":
        claims["iss"] = "999"
    elif case == "HS256 with the public key":
        key, algorithm = "a-shared-secret-of-sufficient-length-000", "HS256"
    token = jwt.encode(claims, key, algorithm=algorithm)
    response = await client.post(
        github.url + TOKEN_PATH, headers={"Authorization": f"Bearer {token}"}
    )
    if message is None:
        assert response.status_code == 201
        body = response.json()
        assert body["token"].startswith("ghs_") and body["token"] in github.tokens
        assert body["expires_at"].endswith("Z")
    else:
        assert response.status_code == 401 and message in response.json()["message"]
        assert _issued(github) == []


# -- settings ----------------------------------------------------------------------------


def _app_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(f"CHATOPS_{name.upper()}", value)


def _app_env_with_key(monkeypatch: pytest.MonkeyPatch, private_key: str, **extra: str) -> None:
    """A complete GitHub App configuration with ``private_key``, plus ``extra`` settings."""
    _app_env(
        monkeypatch,
        git_repo="acme/deploy",
        git_app_id=APP_ID,
        git_app_installation_id=INSTALLATION,
        git_app_private_key=private_key,
        **extra,
    )


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"git_app_id": APP_ID, "git_app_private_key": "PEM-SECRET"},
            ["CHATOPS_GIT_APP_INSTALLATION_ID"],
        ),
        (
            {"git_app_installation_id": INSTALLATION, "git_app_private_key": "PEM-SECRET"},
            ["CHATOPS_GIT_APP_ID"],
        ),
        (
            {"git_app_id": APP_ID, "git_app_installation_id": INSTALLATION},
            ["CHATOPS_GIT_APP_PRIVATE_KEY or CHATOPS_GIT_APP_PRIVATE_KEY_FILE"],
        ),
        ({}, ["CHATOPS_GIT_TOKEN", "CHATOPS_GIT_APP_ID"]),
        (
            {"git_app_id": APP_ID, "git_app_installation_id": "my-install"},
            ["CHATOPS_GIT_APP_INSTALLATION_ID", "must be the installation's number"],
        ),
    ],
)
def test_settings_name_the_missing_piece(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: list[str]
) -> None:
    _app_env(monkeypatch, git_repo="acme/deploy", **env)
    with pytest.raises(s.ConfigError) as caught:
        s.load()
    assert len(caught.value.problems) == 1
    text = caught.value.render()
    assert all(name in text for name in named), text
    assert "PEM-SECRET" not in text


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"git_token": "ghp-SECRET"}, "keep one way to authenticate"),
        ({"git_provider": "gitlab"}, "only with CHATOPS_GIT_PROVIDER=github"),
        ({"git_app_private_key_file": "/nonexistent/app.pem"}, "/nonexistent/app.pem does not"),
    ],
)
def test_settings_refuse_mixed_or_broken_app_configuration(
    monkeypatch: pytest.MonkeyPatch, extra: dict[str, str], expected: str
) -> None:
    _app_env_with_key(monkeypatch, "PEM-SECRET", **extra)
    with pytest.raises(s.ConfigError) as caught:
        s.load()
    text = caught.value.render()
    assert expected in text and "SECRET" not in text


def test_complete_app_settings_load_and_hide_the_key(
    monkeypatch: pytest.MonkeyPatch, app_key: rsa.RSAPrivateKey
) -> None:
    pem = _pem(app_key)
    _app_env_with_key(monkeypatch, pem)
    cfg = s.load()
    assert cfg.uses_git_app and cfg.git_token is None
    assert pem.splitlines()[1] not in repr(cfg)
    assert wiring.git_app_auth(cfg).installation_id == INSTALLATION


def test_an_unparsable_key_is_a_config_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _app_env_with_key(monkeypatch, "-----BEGIN RSA PRIVATE KEY-----\nPEM-SECRET\n")
    with pytest.raises(s.ConfigError) as caught:
        wiring.git(s.load())
    text = caught.value.render()
    assert "CHATOPS_GIT_APP_PRIVATE_KEY:" in text and "PEM-SECRET" not in text


async def test_check_access_reads_the_installation_grant(
    ws: Workspace,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
    client: httpx.AsyncClient,
) -> None:
    public = _public_pem(app_key)
    grants = {INSTALLATION: Grant(), "99": Grant(contents="read", pull_requests=None)}
    fake = FakeGitHub(ws.served, apps={APP_ID: App(public, installations=grants)}, clock=clock)
    fake.start()
    try:
        full = GitHubHost(
            fake.url, _auth(fake, client, app_key, clock), "acme/deploy", "main", client=client
        )
        assert await full.check_access() == []
        weak = GitHubHost(
            fake.url,
            _auth(fake, client, app_key, clock, "99"),
            "acme/deploy",
            "main",
            client=client,
        )
        assert await weak.check_access() == ["Contents: write", "Pull requests: write"]
    finally:
        fake.stop()


async def test_an_installation_lacking_a_permission_names_the_app_and_the_permission(
    ws: Workspace,
    app_key: rsa.RSAPrivateKey,
    clock: Clock,
    client: httpx.AsyncClient,
) -> None:
    public = _public_pem(app_key)
    grants = {"99": Grant(contents="read", pull_requests=None)}
    fake = FakeGitHub(ws.served, apps={APP_ID: App(public, installations=grants)}, clock=clock)
    fake.start()
    try:
        auth = _auth(fake, client, app_key, clock, "99")
        host = GitHubHost(fake.url, auth, "acme/deploy", "main", client=client)
        bad = _bad_commit(ws)
        with pytest.raises(errors.Denied) as caught:
            await host.revert(bad, requested_by="alice")
        # GitHub says "Resource not accessible by integration" for an App token
        refused = next(r for r in fake.requests if r.method != "GET" and "/repos/" in r.path)
        assert refused.auth.startswith("Bearer ghs_")
        assert caught.value.user_message == "The GitHub App lacks Contents: write on acme/deploy."
        assert "installation accept" in (caught.value.hint or "")
        assert ws.tip() == bad
    finally:
        fake.stop()
