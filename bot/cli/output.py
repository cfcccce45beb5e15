"""What the CLI prints and the exit codes it returns: one place, so every command agrees.

Exit codes: 0 success, 1 the operation failed, 2 bad usage or configuration. Results go to
stdout (text, or one JSON document with ``--json``); progress lines (with ``--json`` too) and,
without ``--json``, error messages go to stderr. With ``--json`` every failure is ONE JSON
object on stdout::

    {"ok": false, "error": "<kind>", "message": "<one sentence>", "hint": "<what to do>"}

``kind`` is ``usage``, ``config``, ``internal``, ``interrupted`` or a command error's kind
(``not_found``, ``unavailable``, ``denied``, ...); ``hint`` is present when there is one,
``problems`` lists every configuration problem and ``suggestions`` close application names.

Imports nothing but the standard library at module level: ``chatops --help`` stays cheap.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from commands.results import Result, Step

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def print_step(step: Step) -> None:
    from bot.cli.terminal import step_line

    print(step_line(step), file=sys.stderr, flush=True)


def render(result: Result, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        from bot.cli.terminal import result_text

        print(result_text(result))


def error_json(kind: str, message: str, hint: str | None = None, **extra: Any) -> dict[str, Any]:
    """The one JSON error shape (see the module docstring)."""
    out: dict[str, Any] = {"ok": False, "error": kind, "message": message}
    if hint:
        out["hint"] = hint
    out.update({k: v for k, v in extra.items() if v})
    return out


def fail(
    as_json: bool,
    kind: str,
    message: str,
    hint: str | None = None,
    *,
    text: str | None = None,
    **extra: Any,
) -> None:
    """Report a failure: JSON on stdout with ``--json``, else ``text`` (default: ✗ message
    and the hint) on stderr."""
    if as_json:
        print(json.dumps(error_json(kind, message, hint, **extra), indent=2), flush=True)
        return
    if text is None:
        text = f"✗ {message}" + (f"\n  {hint}" if hint else "")
    print(text, file=sys.stderr, flush=True)
