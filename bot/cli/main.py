"""The ``chatops`` command line.

Kept cheap to start (``chatops --help`` well under 250 ms): only argparse is imported at module
level; the command core, the Kubernetes client and the chat SDKs are imported by the subcommand
that needs them. Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings
    from commands.results import Result, Step

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _bounded(kind: str, what: str, minimum: float, maximum: float) -> Callable[[str], float | int]:
    """An argparse ``type`` that bounds the text before converting it (commands.validation):
    a huge or malformed number is a usage error (exit 2), never an OverflowError traceback."""

    def parse(text: str) -> float | int:
        from commands import errors, validation

        try:
            if kind == "duration":
                return validation.duration(text, minimum=minimum, maximum=maximum, what=what)
            return validation.integer(text, minimum=int(minimum), maximum=int(maximum), what=what)
        except errors.BadInput as e:
            raise argparse.ArgumentTypeError(f"{e.user_message} {e.hint or ''}".strip()) from None

    parse.__name__ = what  # argparse names it in its messages
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on usage errors, like we want
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", help="YAML settings file (else CHATOPS_CONFIG)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    p = _Parser(
        prog="chatops",
        description="Argo CD and Kubernetes operations from the terminal, CI, hook Jobs and chat.",
        parents=[common],
    )
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    sub.add_parser("serve", parents=[common], help="run the bot (HTTP, Slack, Discord, alerts)")

    s = sub.add_parser("sync", parents=[common], help="refresh, pre-sync, sync, wait, verify")
    s.add_argument("app")
    s.add_argument("--no-prune", action="store_true", help="do not prune resources")
    s.add_argument("--no-hooks", action="store_true", help="skip the pre-/post-sync steps")
    s.add_argument(
        "--timeout", type=_bounded("duration", "sync timeout", 10, 3600), metavar="SECONDS"
    )
    s.add_argument("--retry-limit", type=_bounded("integer", "retry limit", 0, 10), metavar="N")

    r = sub.add_parser("rollback", parents=[common], help="git-revert the app's last commit, sync")
    r.add_argument("app")
    r.add_argument("--commit", metavar="SHA")
    r.add_argument("--no-sync", action="store_true")
    r.add_argument("--yes", action="store_true", help="do not ask (scripts)")

    h = sub.add_parser("selfheal", parents=[common], help="turn self-heal off or on")
    h.add_argument("mode", choices=["off", "on"])
    h.add_argument("app")
    h.add_argument("--for", dest="duration", metavar="DURATION", help="e.g. 30m, 2h (with off)")

    v = sub.add_parser("verify-rootless", parents=[common], help="check no container runs as root")
    v.add_argument("app")

    st = sub.add_parser("status", parents=[common], help="sync, health, operation, problems")
    st.add_argument("app", nargs="?", help="omit to list the apps that need attention")

    hk = sub.add_parser("hook", parents=[common], help="what the Argo CD hook Jobs run")
    hk.add_argument("phase", choices=["presync", "postsync"])
    hk.add_argument("--app", required=True)
    hk.add_argument("--namespace", help="the app's namespace (skips asking Argo CD)")
    hk.add_argument(
        "--timeout", type=_bounded("duration", "hook timeout", 1, 3600), metavar="SECONDS"
    )

    ci = sub.add_parser("ci", parents=[common], help="what the CI workflow runs")
    ci_sub = ci.add_subparsers(dest="ci_cmd", metavar="ACTION", parser_class=_Parser)
    cs = ci_sub.add_parser("sync", parents=[common], help="sync apps whose files changed")
    cs.add_argument("--changed-since", required=True, metavar="REV")
    cs.add_argument("--repo-dir", default=".", help="the Git checkout to diff (default .)")

    sub.add_parser("doctor", parents=[common], help="check every configured connection")

    a = sub.add_parser("audit", parents=[common], help="who ran what, from the audit log")
    a.add_argument("--app")
    a.add_argument("--since", help="e.g. 24h, 7d, or an ISO date")
    a.add_argument("--limit", type=_bounded("integer", "limit", 1, 10000), default=50)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.cmd:
        parser.print_help()
        return EXIT_USAGE
    if args.cmd == "ci" and not getattr(args, "ci_cmd", None):
        parser.parse_args(["ci", "--help"])
    from bot.cli import runner

    return runner.run(args)


def print_step(step: Step) -> None:
    from bot.cli.terminal import step_line

    print(step_line(step), file=sys.stderr, flush=True)


def render(result: Result, *, as_json: bool) -> None:
    from bot.cli.terminal import result_text

    if as_json:
        import json

        print(json.dumps(result.to_json(), indent=2))
    else:
        print(result_text(result))


def load_settings(args: argparse.Namespace) -> Settings:
    from bot.settings import load

    return load(args.config)


if __name__ == "__main__":
    sys.exit(main())
