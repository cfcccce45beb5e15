"""GitHub App installation tokens: /rollback acting as an app rather than as a person's token.

A fine-grained token belongs to a person and expires on their schedule; a GitHub App is owned
by the organisation, is granted exactly Contents and Pull requests on the repositories it is
installed on, and its commits show as the app. The price is a two-step login: the bot signs a
short JSON Web Token with the app's private key (RS256, ``iss`` the app id, valid at most 10
minutes), trades it at ``POST /app/installations/{id}/access_tokens`` for an installation token
valid one hour, and uses that as a bearer token.

``GitHubAppAuth`` is that login as an async callable, which ``GitHubHost`` accepts in place of
a token string. It keeps the installation token and fetches a new one only when the old one
is within 5 minutes of expiring, so a clock a few minutes off, or a slow request, never sends
an expired token. Concurrent callers share one fetch (an ``asyncio.Lock``). The JWT's ``iat``
is backdated 60 s, as GitHub advises, so a server clock slightly behind ours accepts it.

Failures are ``commands.errors``: a rejected JWT (wrong key, wrong app id, bad clock) is
``Unauthorized``, an unknown installation ``NotFound``, an unreachable or failing GitHub
``Unavailable``. The private key and the tokens never appear in a message, a log line or a
repr: the key is held only as a parsed key object.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from commands import errors, http_errors
from commands.githost import port as githost

log = logging.getLogger(__name__)

JWT_BACKDATE = 60  # seconds: iat = now - 60 tolerates a GitHub clock slightly behind ours
JWT_LIFETIME = 540  # seconds after now: exp - iat = 600, GitHub's maximum
REFRESH_MARGIN = 300  # seconds: fetch a new token when the cached one has less left than this
DEFAULT_TOKEN_LIFETIME = 3600  # GitHub's documented lifetime, if a reply lacks expires_at
GITHUB_APP = http_errors.Service(
    "GitHub",
    who="the app",
    credential="the app's JWT",
    credential_hint="Check CHATOPS_GIT_APP_ID and CHATOPS_GIT_APP_PRIVATE_KEY.",
    address_hint="Check CHATOPS_GIT_API_URL and the network, then retry.",
    permission_hint="Check the app's installation in the organisation's settings.",
    unavailable_hint="GitHub may be having trouble; retry in a moment.",
)
_KEY_HINT = "Set CHATOPS_GIT_APP_PRIVATE_KEY or CHATOPS_GIT_APP_PRIVATE_KEY_FILE to the app's .pem."


class GitHubAppAuth:
    """Installation tokens of one GitHub App installation, fetched and cached on demand."""

    def __init__(
        self,
        api_url: str,
        app_id: str,
        installation_id: str,
        private_key_pem: str,
        *,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.app_id = str(app_id).strip()
        self.installation_id = str(installation_id).strip()
        self._key = load_private_key(private_key_pem)
        self._client = client
        self._clock = clock
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.permissions: dict[str, str] = {}  # granted to the last token, e.g. contents=write

    def __repr__(self) -> str:
        return (
            f"GitHubAppAuth({self.api_url!r}, app_id={self.app_id!r}, "
            f"installation_id={self.installation_id!r})"
        )

    @property
    def expires_at(self) -> float | None:
        """When the cached token expires (epoch seconds, GitHub's clock); None before the first."""
        return self._expires_at if self._token is not None else None

    async def __call__(self) -> str:
        """A valid installation token, fetched only when the cached one is (nearly) expired."""
        token = self._fresh()
        if token is not None:
            return token
        async with self._lock:
            token = self._fresh()  # another caller may have fetched it while we waited
            if token is None:
                token, self._expires_at = await self._fetch()
                self._token = token
            return token

    def _fresh(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at - REFRESH_MARGIN:
            return self._token
        return None

    def app_jwt(self) -> str:
        """The app's JWT, valid from 60 s ago for 10 minutes: what GitHub trades for a token."""
        now = int(self._clock())
        claims = {"iat": now - JWT_BACKDATE, "exp": now + JWT_LIFETIME, "iss": self.app_id}
        return jwt.encode(claims, self._key, algorithm="RS256")

    async def _fetch(self) -> tuple[str, float]:
        url = f"{self.api_url}/app/installations/{quote(self.installation_id, safe='')}"
        headers = {
            "Authorization": f"Bearer {self.app_jwt()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        try:
            if self._client is not None:
                response = await self._client.post(url + "/access_tokens", headers=headers)
            else:  # one short-lived client per hourly fetch: nothing left open to close
                async with httpx.AsyncClient(timeout=20.0) as client:
                    response = await client.post(url + "/access_tokens", headers=headers)
        except httpx.HTTPError as exc:
            raise http_errors.unreachable(GITHUB_APP, self.api_url, exc) from None
        body = self._check(response)
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise errors.Unavailable("GitHub answered the installation token request without one.")
        expires_at = self._expiry(body.get("expires_at"))
        granted = body.get("permissions")
        if isinstance(granted, dict):
            self.permissions = {str(k): str(v) for k, v in granted.items()}
        log.info(
            "GitHub App %s: new installation token for installation %s, valid %.0f s",
            self.app_id,
            self.installation_id,
            expires_at - self._clock(),
        )
        return token, expires_at

    def _expiry(self, value: Any) -> float:
        try:
            return githost.parse_time(str(value)).timestamp()
        except (TypeError, ValueError):
            log.warning("installation token reply without a valid expires_at; assuming 1 hour")
            return self._clock() + DEFAULT_TOKEN_LIFETIME

    def _check(self, response: httpx.Response) -> Any:
        status = response.status_code
        if status < 300:
            try:
                return response.json()
            except ValueError:
                raise errors.Unavailable(
                    "GitHub answered the installation token request with something not JSON."
                ) from None
        raise http_errors.error_for(
            http_errors.read(response),
            GITHUB_APP,
            what="the installation token request",
            specific=self._specific,
        )

    def _specific(self, answer: http_errors.Answer) -> errors.CommandError | None:
        """What a failed token request means for the app's settings."""
        if answer.status == 401:
            return errors.Unauthorized(
                "GitHub rejected the app's JWT: check CHATOPS_GIT_APP_ID and the private key",
                hint="The key must be a current private key of that app, and this machine's "
                "clock right to within a minute.",
            )
        if answer.status == 404:
            return errors.NotFound(
                f"GitHub App installation {self.installation_id} not found for app {self.app_id}.",
                hint="Check CHATOPS_GIT_APP_INSTALLATION_ID: the number at the end of the "
                "installation's settings URL.",
            )
        if answer.status == 403:  # e.g. "This installation has been suspended"
            return errors.Denied(
                f"GitHub refused a token for installation {self.installation_id}: "
                f"{answer.message[:120]}",
                hint="Check the app's installation in the organisation's settings.",
            )
        return None


def load_private_key(pem: str) -> rsa.RSAPrivateKey:
    """The app's RSA key from PEM text; BadInput (without the text) if it is not one.

    A PEM pasted into a one-line variable often arrives with literal ``\\n``: those are read
    as line breaks."""
    text = pem.strip()
    if "\n" not in text and "\\n" in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError):
        raise errors.BadInput(
            "The GitHub App private key is not an unencrypted PEM private key.", hint=_KEY_HINT
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise errors.BadInput(
            "The GitHub App private key is not an RSA key (GitHub Apps sign with RS256).",
            hint=_KEY_HINT,
        )
    return key
