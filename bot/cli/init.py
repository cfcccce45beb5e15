"""``chatops init``: write a commented starting configuration and the Secret template.

From flags, or from a few questions when run on a terminal without them. Two files:
``chatops.yaml`` (settings that are not secret: the Argo CD URL, alert channels, the Git
repository, who may do what, alert routes; every option explained in a comment) and
``secret.yaml`` (a Kubernetes Secret holding the tokens as ``CHATOPS_*`` variables, with a
freshly generated webhook token and ``<...>`` placeholders for the rest, written mode 0600).
Existing files are never overwritten without ``--force``. The config loads with
``bot.settings.load`` as written (tests pin that).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot.cli import output

CONFIG_FILE = "chatops.yaml"
SECRET_FILE = "secret.yaml"  # noqa: S105 - a file name
DEFAULT_ARGOCD_URL = "https://argocd-server.argocd.svc"
_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,20}")
_DISCORD_ID = re.compile(r"\d{15,21}")


class InitError(Exception):
    def __init__(self, kind: str, message: str, hint: str | None = None, code: int = 2) -> None:
        super().__init__(message)
        self.kind, self.message, self.hint, self.code = kind, message, hint, code


@dataclass
class Answers:
    argocd_url: str = DEFAULT_ARGOCD_URL
    slack: bool = False
    discord: bool = False
    slack_channel: str = ""
    discord_channel: str = ""
    git_provider: str = ""  # "" = no rollback
    git_repo: str = ""
    operators: list[str] = field(default_factory=list)
    namespace: str = "argocd-chatops"

    def check(self) -> None:
        if not self.argocd_url.startswith(("http://", "https://")):
            raise InitError("bad_input", f"'{self.argocd_url[:80]}' is not an http(s) URL.")
        if self.git_repo and "/" not in self.git_repo.strip("/"):
            raise InitError("bad_input", "The Git repository must be owner/name (group/project).")
        if self.git_repo and not self.git_provider:
            self.git_provider = "github"
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", self.namespace):
            raise InitError("bad_input", f"'{self.namespace[:80]}' is not a namespace name.")
        for value in (self.slack_channel, self.discord_channel):
            if value and not re.fullmatch(r"[#\w.-]{1,80}", value):
                raise InitError("bad_input", f"'{value[:80]}' is not a channel ID or name.")
        self.slack = self.slack or bool(self.slack_channel)
        self.discord = self.discord or bool(self.discord_channel)


def from_flags(args: argparse.Namespace) -> Answers:
    return Answers(
        argocd_url=args.argocd_url or DEFAULT_ARGOCD_URL,
        slack=args.slack,
        discord=args.discord,
        slack_channel=args.slack_channel or "",
        discord_channel=args.discord_channel or "",
        git_provider=args.git_provider or "",
        git_repo=args.git_repo or "",
        operators=list(args.operator),
        namespace=args.namespace,
    )


def _flags_given(args: argparse.Namespace) -> bool:
    return bool(
        args.slack
        or args.discord
        or args.git_provider
        or args.git_repo
        or args.argocd_url
        or args.slack_channel
        or args.discord_channel
        or args.operator
    )


def interview(ask: Callable[[str], str], namespace: str = "argocd-chatops") -> Answers:
    """A few questions; an empty answer takes the default shown in brackets."""

    def q(question: str, default: str = "", check: Callable[[str], bool] = bool) -> str:
        for _ in range(3):
            answer = ask(f"{question}{f' [{default}]' if default else ''}: ").strip() or default
            if not answer or check(answer):
                return answer
            print(f"  '{answer[:60]}' does not look right; try again.", file=sys.stderr)
        raise InitError("bad_input", f"No usable answer to: {question}")

    def yes(question: str, default: bool) -> bool:
        answer = q(f"{question} ({'Y/n' if default else 'y/N'})", "", lambda a: True)
        return default if not answer else answer.lower() in ("y", "yes")

    a = Answers(namespace=namespace)
    a.argocd_url = q(
        "Argo CD API URL", DEFAULT_ARGOCD_URL, lambda v: v.startswith(("http://", "https://"))
    )
    a.slack = yes("Use Slack?", True)
    if a.slack:
        a.slack_channel = q("Slack alert channel ID (empty: none)")
    a.discord = yes("Use Discord?", False)
    if a.discord:
        a.discord_channel = q("Discord alert channel ID (empty: none)", "", str.isdigit)
    if yes("Roll back through a Git host (git revert)?", True):
        a.git_provider = q("Git provider", "github", lambda v: v in ("github", "gitlab"))
        a.git_repo = q("Git repository (owner/name)", "", lambda v: "/" in v.strip("/"))
    ops = q(
        "Operator user IDs, comma separated (Slack U..., Discord digits)",
        "",
        lambda v: all(_operator(x) for x in _split(v)),
    )
    a.operators = _split(ops)
    return a


def _split(text: str) -> list[str]:
    return [x for x in re.split(r"[\s,]+", text) if x]


def _operator(text: str) -> bool:
    return bool(_SLACK_USER.fullmatch(text) or _DISCORD_ID.fullmatch(text))


def _s(value: str) -> str:
    """A YAML scalar (JSON strings are valid YAML)."""
    return json.dumps(value)


def _list(values: list[str]) -> str:
    return "[" + ", ".join(_s(v) for v in values) + "]"


def config_text(a: Answers) -> str:
    slack_users = [o for o in a.operators if _SLACK_USER.fullmatch(o)]
    discord_users = [o for o in a.operators if _DISCORD_ID.fullmatch(o)]
    slack_channel = (
        f"slack_alert_channel: {_s(a.slack_channel)}"
        if a.slack_channel
        else "# slack_alert_channel: C0123456789"
    )
    discord_channel = (
        f"discord_alert_channel: {_s(a.discord_channel)}"
        if a.discord_channel
        else '# discord_alert_channel: "123456789012345678"'
    )
    git = (
        f"git_provider: {a.git_provider}\ngit_repo: {_s(a.git_repo)}\ngit_branch: main"
        if a.git_provider and a.git_repo
        else "# git_provider: github          # or gitlab\n"
        "# git_repo: acme/deploy          # owner/name, or the GitLab project path\n"
        "# git_branch: main"
    )
    if slack_users or discord_users:
        grant = "    - role: operator                 # sync, rollback, selfheal\n"
        if slack_users:
            grant += f"      slack_users: {_list(slack_users)}\n"
        if discord_users:
            grant += f"      discord_users: {_list(discord_users)}\n"
        grant += (
            "      # projects: [default]          # only these Argo CD projects\n"
            '      # apps: ["payments-*"]          # only these app names (patterns)\n'
        )
        grants = "  grants:\n" + grant
    else:
        grants = (
            "  grants: []                       # nobody may sync or roll back yet, e.g.:\n"
            "  #  - role: operator\n"
            "  #    slack_users: [U0123ABCD]\n"
            '  #    discord_users: ["123456789012345678"]\n'
        )
    platforms = " and ".join(p for p, on in (("Slack", a.slack), ("Discord", a.discord)) if on)
    return f"""\
# argocd-chatops settings, written by `chatops init`.
# Point CHATOPS_CONFIG at this file (in Kubernetes: a ConfigMap mounted read-only) or pass
# --config. Secrets (tokens, keys) do NOT belong here: they go in {SECRET_FILE} as CHATOPS_*
# environment variables, which also override anything set here.
# Chat platforms chosen: {platforms or "none yet"}.

# -- Argo CD -----------------------------------------------------------------------------
argocd_url: {_s(a.argocd_url)}    # the argocd-server API
# argocd_ui_url: https://argocd.example.com   # for links in chat, if the UI differs
# argocd_ca_bundle: /etc/chatops/ca/ca.crt    # a private CA that signed argocd-server

# -- Alert channels (default routes) -----------------------------------------------------
{slack_channel}
{discord_channel}
# discord_guild_id: "123456789012345678"   # register the slash commands in this guild now

# -- Git host: /rollback reverts the deployed commit through its API --------------------
{git}

# -- Who may do what ---------------------------------------------------------------------
# viewer: status, verify-rootless, help; operator: also sync, rollback, selfheal; admin: all.
authorization:
  default_role: viewer               # everyone in an allowed channel; "none" to need a grant
  # slack_channels: [C0123456789]    # only these channels (empty: any)
  # discord_channels: ["123456789012345678"]
{grants}
# -- Alert routing -----------------------------------------------------------------------
# The first route matching an app (fnmatch patterns) that names a channel wins; otherwise
# the alert channels above.
routes: []
#  - projects: [payments]
#    apps: ["payments-*"]
#    slack_channel: C0PAYMENTS
#    discord_channel: "123456789012345678"

# command_prefix: "argo-"   # /argo-sync instead of /sync (avoid clashes with other apps)
"""


def secret_text(a: Answers, webhook_token: str) -> str:
    lines = [
        "# The secrets of argocd-chatops, written by `chatops init`. Replace every <...>, then:",
        f"#   kubectl create namespace {a.namespace} --dry-run=client -o yaml | kubectl apply -f -",
        f"#   kubectl apply -f {SECRET_FILE}",
        "# Never commit this file with real values in it.",
        "apiVersion: v1",
        "kind: Secret",
        "metadata:",
        "  name: argocd-chatops",
        f"  namespace: {a.namespace}",
        "type: Opaque",
        "stringData:",
        "  # argocd account generate-token --account chatops",
        '  CHATOPS_ARGOCD_TOKEN: "<token of the Argo CD chatops account>"',
        "  # also the bearer token of the webhook service in argocd-notifications-secret",
        f"  CHATOPS_WEBHOOK_TOKEN: {_s(webhook_token)}",
    ]
    if a.slack:
        lines += [
            '  CHATOPS_SLACK_BOT_TOKEN: "<xoxb-... from OAuth & Permissions>"',
            "  # HTTP mode; for Socket Mode set CHATOPS_SLACK_APP_TOKEN (xapp-...) instead",
            '  CHATOPS_SLACK_SIGNING_SECRET: "<signing secret from Basic Information>"',
        ]
    if a.discord:
        lines.append('  CHATOPS_DISCORD_TOKEN: "<bot token from the Developer Portal>"')
    if a.git_provider and a.git_repo:
        lines.append('  CHATOPS_GIT_TOKEN: "<token that may push to the repository>"')
    return "\n".join(lines) + "\n"


def write(a: Answers, directory: Path, *, force: bool) -> list[Path]:
    targets = [directory / CONFIG_FILE, directory / SECRET_FILE]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise InitError(
            "conflict",
            f"{names} already exist{'s' if len(existing) == 1 else ''}; nothing was written.",
            "Pass --force to overwrite, or --output DIR to write elsewhere.",
            code=output.EXIT_FAILED,
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        targets[0].write_text(config_text(a))
        fd = os.open(targets[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret_text(a, secrets.token_urlsafe(32)))
        os.chmod(targets[1], 0o600)
    except OSError as e:
        raise InitError(
            "write_failed",
            f"Cannot write to {directory}: {e.strerror or e}.",
            "Choose another directory with --output.",
            code=output.EXIT_FAILED,
        ) from None
    return targets


def run(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    from commands.results import Fact, Result, Status

    as_json = bool(args.json)
    try:
        interactive = not args.no_input and not as_json and sys.stdin.isatty()
        if _flags_given(args) or not interactive:
            answers = from_flags(args)
        else:
            print("A few questions (Enter takes the [default]):", file=sys.stderr)
            try:
                answers = interview(ask, args.namespace)
            except EOFError:
                raise InitError("bad_input", "No answer (end of input).") from None
        answers.check()
        written = write(answers, Path(args.output), force=args.force)
    except InitError as e:
        output.fail(as_json, e.kind, e.message, e.hint)
        return e.code
    result = Result(
        "init",
        str(Path(args.output)),
        Status.CHANGED,
        f"Wrote {written[0]} and {written[1]}.",
        facts=(
            Fact("next", f"fill in {written[1]} (every <...> value) and apply it"),
            Fact("then", f"chatops --config {written[0]} doctor"),
        ),
    )
    output.render(result, as_json=as_json)
    return output.EXIT_OK
