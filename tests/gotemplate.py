"""A tiny evaluator for the SUBSET of Go text/template + sprig our notification templates use.

Not Argo CD's renderer: it knows exactly ``{{ }}`` actions with ``-`` trim markers, ``range $v :=
PIPE``, ``if PIPE``, ``end``, pipelines with ``|``, parenthesised sub-pipelines, string and
number literals, ``.field.paths`` and ``$variables``, and the functions ``toJson dig list dict
eq or and not``. Anything else raises ``TemplateError``, so a template that strays outside the
subset fails its test instead of being silently mis-rendered. A missing map key on a
``.field.path`` raises too (where Go would print "<no value>" or fail): use ``dig``.
"""

from __future__ import annotations

import json
import re
from typing import Any


class TemplateError(Exception):
    pass


_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.DOTALL)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\(|\)|\||:=|[^\s()|]+')


def _to_json(value: Any) -> str:
    """Go's json.Marshal: compact, and <, >, & escaped for HTML safety."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _truthy(v: Any) -> bool:
    return not (v is None or v is False or v == 0 or v == "" or v == [] or v == {})


def _dig(*args: Any) -> Any:
    if len(args) < 3:
        raise TemplateError("dig needs keys, a default and a map")
    *keys, default, obj = args
    if not isinstance(obj, dict):
        raise TemplateError("dig: the last argument must be a map")
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return default
        obj = obj[k]
    return obj


def _or(*args: Any) -> Any:
    for a in args:
        if _truthy(a):
            return a
    return args[-1]


def _and(*args: Any) -> Any:
    for a in args:
        if not _truthy(a):
            return a
    return args[-1]


FUNCS: dict[str, Any] = {
    "toJson": _to_json,
    "dig": _dig,
    "list": lambda *a: list(a),
    "dict": lambda *a: dict(zip(a[::2], a[1::2], strict=True)),
    "eq": lambda a, b: a == b,
    "or": _or,
    "and": _and,
    "not": lambda a: not _truthy(a),
}


class _Ctx:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.vars: dict[str, Any] = {}


def _operand(tok: str, ctx: _Ctx) -> Any:
    if tok.startswith('"'):
        return json.loads(tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok.startswith("$"):
        name, _, rest = tok.partition(".")
        if name not in ctx.vars:
            raise TemplateError(f"undefined variable {name}")
        value = ctx.vars[name]
        return _path(value, rest.split(".") if rest else [], tok)
    if tok.startswith("."):
        return _path(ctx.root, [p for p in tok.split(".") if p], tok)
    raise TemplateError(f"unsupported operand {tok!r}")


def _path(value: Any, parts: list[str], tok: str) -> Any:
    for p in parts:
        if not isinstance(value, dict) or p not in value:
            raise TemplateError(f"{tok}: no key {p!r} (Go would fail or print <no value>; use dig)")
        value = value[p]
    return value


def _parse_pipeline(tokens: list[str], ctx: _Ctx) -> Any:
    """Evaluate ``cmd | cmd ...`` where tokens may contain parenthesised groups."""
    commands: list[list[Any]] = [[]]
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "|":
            commands.append([])
        elif tok == "(":
            depth, j = 1, i + 1
            while depth:
                if j >= len(tokens):
                    raise TemplateError("unbalanced parentheses")
                depth += {"(": 1, ")": -1}.get(tokens[j], 0)
                j += 1
            commands[-1].append(("value", _parse_pipeline(tokens[i + 1 : j - 1], ctx)))
            i = j
            continue
        else:
            commands[-1].append(("token", tok))
        i += 1
    result: Any = None
    for n, cmd in enumerate(commands):
        if not cmd:
            raise TemplateError("empty command in pipeline")
        args = [v if kind == "value" else None for kind, v in cmd]
        head_kind, head = cmd[0]
        if head_kind == "token" and head in FUNCS:
            values = [v if kind == "value" else _operand(v, ctx) for kind, v in cmd[1:]]
            if n:
                values.append(result)
            result = FUNCS[head](*values)
        elif head_kind == "token" and head[0].isalpha():
            raise TemplateError(f"unsupported function {head!r}")
        else:
            if len(cmd) != 1 or n:
                raise TemplateError("a value cannot take arguments")
            result = head if head_kind == "value" else _operand(head, ctx)
        del args
    return result


def _tree(template: str) -> list[Any]:
    """[("text", s) | ("out", expr) | ("range", var, expr, body) | ("if", expr, body)]"""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if m.group(1):
            text = text.rstrip()
        if parts and parts[-1][0] == "trim_next":
            parts.pop()
            text = text.lstrip()
        parts.append(("text", text))
        parts.append(("action", m.group(2)))
        if m.group(3):
            parts.append(("trim_next", ""))
        pos = m.end()
    tail = template[pos:]
    if parts and parts[-1][0] == "trim_next":
        parts.pop()
        tail = tail.lstrip()
    parts.append(("text", tail))

    root: list[Any] = []
    stack: list[list[Any]] = [root]
    for kind, value in parts:
        if kind == "text":
            if value:
                stack[-1].append(("text", value))
            continue
        words = value.split(None, 1)
        verb = words[0] if words else ""
        if verb == "end":
            if len(stack) == 1:
                raise TemplateError("end without range/if")
            stack.pop()
        elif verb == "range":
            m = re.fullmatch(r"range\s+(\$\w+)\s*:=\s*(.+)", value, re.DOTALL)
            if not m:
                raise TemplateError(f"unsupported range form: {value!r}")
            node = ("range", m.group(1), m.group(2), [])
            stack[-1].append(node)
            stack.append(node[3])
        elif verb == "if":
            node = ("if", value[2:].strip(), [])
            stack[-1].append(node)
            stack.append(node[2])
        elif verb in ("else", "with", "define", "template", "block"):
            raise TemplateError(f"{verb} is outside the supported subset")
        else:
            stack[-1].append(("out", value))
    if len(stack) != 1:
        raise TemplateError("missing end")
    return root


def _run(nodes: list[Any], ctx: _Ctx, out: list[str]) -> None:
    for node in nodes:
        kind = node[0]
        if kind == "text":
            out.append(node[1])
        elif kind == "out":
            value = _parse_pipeline(_TOKEN.findall(node[1]), ctx)
            out.append(value if isinstance(value, str) else str(value))
        elif kind == "if":
            if _truthy(_parse_pipeline(_TOKEN.findall(node[1]), ctx)):
                _run(node[2], ctx, out)
        elif kind == "range":
            items = _parse_pipeline(_TOKEN.findall(node[2]), ctx)
            if isinstance(items, dict):
                items = [items[k] for k in sorted(items)]
            for item in items or []:
                ctx.vars[node[1]] = item
                _run(node[3], ctx, out)
            ctx.vars.pop(node[1], None)


def render(template: str, data: dict[str, Any]) -> str:
    out: list[str] = []
    _run(_tree(template), _Ctx(data), out)
    return "".join(out)
