"""The ``chatops`` command line.

Kept cheap to start (``chatops --help`` well under 250 ms): only argparse is imported at module
level; the command core, the Kubernetes client and the chat SDKs are imported by the subcommand
that needs them. Exit codes (``bot.cli.output``): 0 success, 1 the operation failed, 2 bad usage
or configuration. No traceback reaches the terminal: usage errors, configuration problems and
command failures are one message each (one JSON object with ``--json``), and a closed stdout
(``chatops doctor | head -1``) ends the program quietly.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from bot.cli import output
from bot.cli.parser import NESTED, PROG, UsageError, build_parser, subcommand

DIST = "argocd-chatops"


def version() -> str:
    from importlib import metadata

    try:
        return metadata.version(DIST)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _wants_json(argv: Sequence[str]) -> bool:
    args = list(argv)
    if "--" in args:
        args = args[: args.index("--")]
    return "--json" in args


def _usage_error(e: UsageError, as_json: bool) -> int:
    command = e.prog.removeprefix(PROG).strip()
    hint = f"Run `{PROG}{' ' + command if command else ''} --help` for the usage."
    output.fail(
        as_json, "usage", e.message, hint, text=f"{e.usage.rstrip()}\n{e.prog}: error: {e.message}"
    )
    return output.EXIT_USAGE


def _dispatch(argv: Sequence[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        return _usage_error(e, _wants_json(argv))
    if args.version:
        print(f"{PROG} {version()}")
        return output.EXIT_OK
    missing = None
    if not args.cmd:
        missing = "a command is required"
    elif args.cmd in NESTED and not getattr(args, NESTED[args.cmd], None):
        missing = f"'{args.cmd}' needs an action"
    if missing:
        if not args.json:
            (subcommand(parser, args.cmd) if args.cmd else parser).print_help(sys.stderr)
            return output.EXIT_USAGE
        prog = PROG + (f" {args.cmd}" if args.cmd else "")
        return _usage_error(UsageError(missing, "", prog), True)
    if args.cmd == "completion":
        from bot.cli.completion import script

        print(script(args.shell, parser), end="")
        return output.EXIT_OK
    if args.cmd == "init":
        from bot.cli.init import run as run_init

        return run_init(args)
    from bot.cli import runner

    return runner.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = _dispatch(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`chatops doctor | head -1`): not an error worth a traceback.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return output.EXIT_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
