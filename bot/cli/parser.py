"""The ``chatops`` argument parser: every command, option and its help text, in one place.

Global options (``--config``, ``--json``) are accepted before or after the subcommand. The
top-level parser holds their defaults; each subcommand repeats them with ``SUPPRESS`` defaults,
so a subcommand that was not given one leaves the value parsed before it alone (argparse copies
every attribute of the subparser's namespace over the parent's).

Usage errors raise ``UsageError`` instead of exiting, so ``main`` reports them like any other
failure (text on stderr, or the JSON error shape with ``--json``), exit code 2.

Only argparse is imported here: the completion scripts and ``--help`` are generated from this
parser without loading the command core or any SDK.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

PROG = "chatops"
NESTED = {"ci": "ci_cmd", "alert": "alert_cmd"}  # commands that take an action, and its dest


class UsageError(Exception):
    def __init__(self, message: str, usage: str, prog: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.prog = prog


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.format_usage(), self.prog)


def bounded(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: a finite number within [low, high], refused with the range otherwise
    (no 400-digit number or ``1e400`` gets past the parser)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text) if len(text) <= 32 else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {what} from {low:g} to {high:g}, not '{text[:40]}'"
            )
        return value

    parse.__name__ = kind.__name__
    return parse


def operator_id(text: str) -> str:
    if re.fullmatch(r"[UW][A-Z0-9]{2,20}|\d{15,21}", text):
        return text
    raise argparse.ArgumentTypeError(
        f"'{text[:40]}' is neither a Slack user ID (U0123ABCD) nor a Discord user ID (digits)"
    )


def _globals(parser: argparse.ArgumentParser, *, top: bool) -> None:
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML settings file (default: $CHATOPS_CONFIG)",
        **({"default": None} if top else d),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: one JSON document on stdout, errors included",
        **d,
    )


def _instance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--instance",
        metavar="NAME",
        help="the Argo CD instance (same as APP@NAME; default: whichever has the app)",
    )


def build_parser() -> Parser:
    common = Parser(add_help=False)
    _globals(common, top=False)
    kw: dict[str, Any] = {"parents": [common]}

    p = Parser(
        prog=PROG,
        description="Argo CD and Kubernetes operations from the terminal, CI, hook Jobs and chat.",
        epilog="Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.",
    )
    _globals(p, top=True)
    p.add_argument(
        "--version", action="store_true", help="print the version of argocd-chatops and exit"
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=Parser)

    sub.add_parser("serve", help="run the bot (HTTP, Slack, Discord, alerts)", **kw)

    s = sub.add_parser("sync", help="refresh, pre-sync, sync, wait, verify", **kw)
    s.add_argument("app", help="the Argo CD application (NAME, NAMESPACE/NAME or NAME@INSTANCE)")
    _instance(s)
    s.add_argument("--no-prune", action="store_true", help="do not prune resources")
    s.add_argument("--no-hooks", action="store_true", help="skip the pre-/post-sync steps")
    s.add_argument(
        "--timeout",
        type=bounded(float, 10, 3600),
        metavar="SECONDS",
        help="how long to wait for the sync (10-3600; default $CHATOPS_SYNC_TIMEOUT, 300)",
    )
    s.add_argument(
        "--retry-limit",
        type=bounded(int, 0, 10),
        metavar="N",
        help="Argo CD sync retries (0-10; default $CHATOPS_RETRY_LIMIT, 3)",
    )

    r = sub.add_parser("rollback", help="git-revert the app's last commit, then sync", **kw)
    r.add_argument("app", help="the Argo CD application to roll back")
    _instance(r)
    r.add_argument("--commit", metavar="SHA", help="revert this commit (default: the deployed one)")
    r.add_argument("--no-sync", action="store_true", help="revert only; do not sync afterwards")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")

    h = sub.add_parser("selfheal", help="turn self-heal off or on", **kw)
    h.add_argument("mode", choices=["off", "on"], help="off pauses self-heal, on restores it")
    h.add_argument("app", help="the Argo CD application")
    _instance(h)
    h.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="with off: turn it back on after this long (1m to 7d, e.g. 30m, 2h)",
    )

    ar = sub.add_parser("autorollback", help="pause, resume or show the auto-rollback policy", **kw)
    ar.add_argument(
        "mode", choices=["off", "on", "status"], help="off pauses it for APP, on resumes it"
    )
    ar.add_argument("app", nargs="?", help="the Argo CD application (status: omit for all)")
    ar.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="with off: resume after this long (1m to 30d, e.g. 2h); default until on",
    )

    v = sub.add_parser("verify-rootless", help="check no container runs as root", **kw)
    v.add_argument("app", help="the Argo CD application whose StatefulSets to check")
    _instance(v)

    st = sub.add_parser("status", help="sync, health, operation, problems", **kw)
    st.add_argument("app", nargs="?", help="the application; omit to list those needing attention")
    _instance(st)

    hk = sub.add_parser("hook", help="what the Argo CD hook Jobs run", **kw)
    hk.add_argument("phase", choices=["presync", "postsync"], help="the hook phase to run")
    hk.add_argument("--app", required=True, help="the Argo CD application being synced")
    hk.add_argument("--namespace", help="the app's namespace (skips asking Argo CD)")
    _instance(hk)
    hk.add_argument(
        "--timeout",
        type=bounded(float, 5, 3600),
        metavar="SECONDS",
        help="how long to wait (5-3600; default the pre-/post-sync timeout setting)",
    )

    ci = sub.add_parser("ci", help="what the CI workflow runs", **kw)
    ci_sub = ci.add_subparsers(dest="ci_cmd", metavar="ACTION", parser_class=Parser)
    cs = ci_sub.add_parser("sync", help="sync the apps whose files changed", **kw)
    cs.add_argument(
        "--changed-since", required=True, metavar="REV", help="the Git revision to diff against"
    )
    cs.add_argument("--repo-dir", default=".", metavar="DIR", help="the Git checkout (default .)")

    sub.add_parser("doctor", help="check every configured connection and permission", **kw)

    a = sub.add_parser("audit", help="who ran what, from the audit log", **kw)
    a.add_argument("--app", help="only this application")
    a.add_argument("--since", help="only entries newer than this: 24h, 7d or an ISO date")
    a.add_argument(
        "--limit",
        type=bounded(int, 1, 10000),
        default=50,
        metavar="N",
        help="at most N entries, newest first (1-10000; default 50)",
    )

    al = sub.add_parser("alert", help="alert helpers", **kw)
    al_sub = al.add_subparsers(dest="alert_cmd", metavar="ACTION", parser_class=Parser)
    at = al_sub.add_parser(
        "test", help="send a sample alert through the real routing and delivery", **kw
    )
    at.add_argument(
        "--channel", metavar="CHANNEL", help="send here instead of where the routes say"
    )
    at.add_argument(
        "--platform",
        choices=["slack", "discord"],
        help="only this platform (needed with --channel when both are configured)",
    )
    at.add_argument(
        "--app",
        default="chatops-alert-test",
        help="the application name the routes see (default chatops-alert-test)",
    )
    at.add_argument("--project", default="default", help="the project the routes see")
    at.add_argument("--namespace", default="", help="the destination namespace the routes see")

    i = sub.add_parser(
        "init", help="write a commented starting config and the Secret template", **kw
    )
    i.add_argument("--slack", action="store_true", help="configure Slack")
    i.add_argument("--discord", action="store_true", help="configure Discord")
    i.add_argument("--git-provider", choices=["github", "gitlab"], help="where rollbacks commit")
    i.add_argument("--git-repo", metavar="OWNER/NAME", help="the GitOps repository")
    i.add_argument("--argocd-url", metavar="URL", help="the argocd-server API URL")
    i.add_argument("--slack-channel", metavar="ID", help="the Slack alert channel")
    i.add_argument("--discord-channel", metavar="ID", help="the Discord alert channel")
    i.add_argument(
        "--operator",
        action="append",
        type=operator_id,
        default=[],
        metavar="ID",
        help="a Slack or Discord user ID allowed to sync and roll back (repeatable)",
    )
    i.add_argument(
        "--namespace",
        default="argocd-chatops",
        help="the Kubernetes namespace of the Secret (default argocd-chatops)",
    )
    i.add_argument(
        "--output", default=".", metavar="DIR", help="where to write the files (default .)"
    )
    i.add_argument("--force", action="store_true", help="overwrite files that exist")
    i.add_argument(
        "--no-input", action="store_true", help="do not ask questions, even on a terminal"
    )

    c = sub.add_parser("completion", help="print a shell completion script", **kw)
    c.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete for")
    return p


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The subcommands of ``parser`` by name (empty when it has none)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    return subparsers(parser)[name]
