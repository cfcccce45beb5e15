"""Runs one CLI subcommand: load settings, call its handler (``bot.cli.handlers``: wire clients,
call the core), print, exit code.

Every way a command can end maps to one exit code and one message (``bot.cli.output``):
configuration problems (a missing setting, an unopenable state database, a feature that is not
configured) exit 2 like bad input; a command that failed exits 1; an unexpected exception is
"Internal error (ref X)" with its traceback only at ``CHATOPS_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from bot import logs
from bot.cli import handlers, output
from bot.settings import ConfigError, load
from commands import errors
from commands.results import Result

log = logging.getLogger("chatops")

CONFIG_HINT = "Set them as CHATOPS_* environment variables or in the YAML file (--config)."


def run(args: argparse.Namespace) -> int:
    as_json = bool(args.json)
    try:
        settings = load(args.config)
        logs.setup(settings, cli=True)
        if args.cmd == "serve":
            from bot.server import serve

            return int(serve.main(settings))
        handler = handlers.HANDLERS[args.cmd]
        result: Result | None = asyncio.run(handler(settings, args))
    except ConfigError as e:
        output.fail(
            as_json,
            "config",
            " ".join(e.problems) or "Configuration problem.",
            CONFIG_HINT,
            text=e.render(),
            problems=e.problems,
        )
        return output.EXIT_USAGE
    except errors.CommandError as e:
        _print_error(as_json, e)
        return output.EXIT_USAGE if isinstance(e, errors.BadInput) else output.EXIT_FAILED
    except KeyboardInterrupt:
        output.fail(as_json, "interrupted", "Interrupted.", text="interrupted")
        return output.EXIT_FAILED
    except BrokenPipeError:
        raise  # main ends quietly
    except Exception as e:
        ref = errors.internal_ref()
        log.debug("internal error (ref %s)", ref, exc_info=True)
        output.fail(
            as_json,
            "internal",
            f"Internal error (ref {ref}): {type(e).__name__}.",
            "Run again with CHATOPS_LOG_LEVEL=DEBUG to see the details.",
        )
        return output.EXIT_FAILED
    if result is None:
        return output.EXIT_OK
    output.render(result, as_json=as_json)
    return output.EXIT_OK if result.ok else output.EXIT_FAILED


def _print_error(as_json: bool, e: errors.CommandError) -> None:
    suggestions = list(e.suggestions) if isinstance(e, errors.NotFound) else []
    output.fail(as_json, e.kind, e.user_message, e.hint, suggestions=suggestions)
