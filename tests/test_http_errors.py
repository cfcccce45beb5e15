"""One mapping of failed HTTP answers for Argo CD, GitHub, the GitHub App login and GitLab.

The answers are built as the services send them (status, headers, JSON body) and handed to
each client's own check, so the test pins what a person reads for each: a rate limit and a
plain 403 must read alike whichever service said it. GitHub's rate-limit answers follow
docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api ("Exceeding the rate
limit": 403 or 429; ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset``; a secondary limit
with ``retry-after``); GitLab answers 429 with ``Retry-After`` and ``RateLimit-Reset``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from commands import errors, http_errors
from commands.argocd.client import check_response as argocd_check
from commands.githost.github.api import GitHubAPI
from commands.githost.github.app_auth import GitHubAppAuth
from commands.githost.gitlab import GitLabHost

TOKEN = "ghp_very_secret_token_value"


def answer(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("GET", "https://api.example/thing")
    if body is None:
        return httpx.Response(status, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


Check = Callable[[httpx.Response], Any]


@pytest.fixture
def checks(client: httpx.AsyncClient, pem: str) -> dict[str, Check]:
    github = GitHubAPI("https://api.github.com", TOKEN, "acme/deploy", client=client)
    gitlab = GitLabHost("https://gitlab.example", TOKEN, "acme/deploy", "main", client=client)
    app = GitHubAppAuth("https://api.github.com", "42", "7", pem, client=client)
    return {
        "GitHub": lambda r: github.check(r, need="Contents: write", not_found=None, token=TOKEN),
        "GitLab": lambda r: gitlab._check(r, need="the Developer role", not_found=None),
        "GitHub App": app._check,
    }


async def raised(check: Check, resp: httpx.Response) -> errors.CommandError:
    with pytest.raises(errors.CommandError) as caught:
        await check(resp) if check is argocd_check else check(resp)
    return caught.value


RATE_LIMITS = {
    "GitHub primary": answer(
        403,
        {"message": "API rate limit exceeded for installation ID 7."},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 600)},
    ),
    "GitHub secondary": answer(
        403, {"message": "You have exceeded a secondary rate limit."}, {"retry-after": "60"}
    ),
    "429": answer(429, {"message": "Too Many Requests"}, {"Retry-After": "30"}),
}


@pytest.mark.parametrize("case", sorted(RATE_LIMITS))
async def test_a_rate_limit_reads_the_same_from_every_git_client(
    case: str, checks: dict[str, Check]
) -> None:
    for service, check in checks.items():
        e = await raised(check, RATE_LIMITS[case])
        assert isinstance(e, http_errors.RateLimited), (service, e)
        assert e.user_message.endswith("API rate limit is exhausted for " + (
            "the app." if service == "GitHub App" else "the Git token."
        )), e.user_message  # fmt: skip
        assert e.retry_after is not None and e.hint and "etry in " in e.hint
    limited = await raised(checks["GitHub"], RATE_LIMITS["GitHub secondary"])
    assert limited.hint == "Retry in 1m."


async def test_argo_cd_rate_limit_reads_like_the_others() -> None:
    e = await raised(argocd_check, RATE_LIMITS["429"])
    assert isinstance(e, http_errors.RateLimited)
    assert e.user_message == "Argo CD's API rate limit is exhausted for the bot."
    assert e.hint == "Retry in 30s."


async def test_a_plain_403_is_a_denial_naming_what_is_missing(checks: dict[str, Check]) -> None:
    refused = answer(
        403,
        {"message": "Resource not accessible by personal access token"},
        {"x-ratelimit-remaining": "4999", "x-accepted-github-permissions": "contents=write"},
    )
    github = await raised(checks["GitHub"], refused)
    assert type(github) is errors.Denied
    assert github.user_message == "The Git token lacks Contents: write on acme/deploy."
    gitlab = await raised(checks["GitLab"], answer(403, {"message": "403 Forbidden"}))
    assert gitlab.user_message == "The Git token lacks the Developer role on acme/deploy."
    argo = await raised(argocd_check, answer(403, {"error": "x", "code": 7, "message": "nope"}))
    assert type(argo) is errors.Denied and argo.user_message.startswith("Argo CD denied the bot")


async def test_401_names_the_credential_and_where_it_is_set(checks: dict[str, Check]) -> None:
    for service in ("GitHub", "GitLab"):
        e = await raised(checks[service], answer(401, {"message": "Bad credentials"}))
        assert isinstance(e, errors.Unauthorized)
        assert e.user_message == f"{service} rejected the Git token (401)."
        assert e.hint == "Check CHATOPS_GIT_TOKEN: it may be expired or revoked."
    argo = await raised(argocd_check, answer(401, {"message": "invalid session"}))
    assert argo.user_message == "Argo CD rejected the bot's token (401)."


async def test_server_errors_are_unavailable_with_a_short_message_and_no_token(
    checks: dict[str, Check],
) -> None:
    echoed = answer(502, {"message": f"upstream said: Bearer {TOKEN} " + "x" * 2000})
    for service, check in checks.items():
        e = await raised(check, echoed)
        assert type(e) is errors.Unavailable, service
        assert "502" in e.user_message and TOKEN not in str(e)
        assert len(e.user_message) < http_errors.MAX_MESSAGE + 150
    html = httpx.Response(
        503, text="<html>\n<body>Service Unavailable</body></html>", request=echoed.request
    )
    assert "503" in (await raised(checks["GitHub"], html)).user_message


def test_retry_after_reads_seconds_dates_and_reset_times() -> None:
    now = 1_800_000_000.0
    assert http_errors.retry_after(httpx.Headers({"Retry-After": "12"}), now) == 12
    date = httpx.Headers({"Retry-After": formatdate(now + 30, usegmt=True)})
    assert http_errors.retry_after(date, now) == 30
    reset = httpx.Headers({"x-ratelimit-reset": str(int(now) + 90)})
    assert http_errors.retry_after(reset, now) == 90
    assert http_errors.retry_after(httpx.Headers({"RateLimit-Reset": str(int(now) + 5)}), now) == 5
    assert http_errors.retry_after(httpx.Headers(), now) is None


def test_unreachable_never_shows_credentials_in_the_url() -> None:
    e = http_errors.unreachable(
        http_errors.Service("GitLab", "the Git token", "the Git token", "h", "a"),
        "https://bot:s3cret@gitlab.example",
        httpx.ConnectError("refused"),
    )
    assert e.user_message == "GitLab at https://gitlab.example is unreachable (ConnectError)."
