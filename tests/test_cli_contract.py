"""The CLI a user can trust: version, global options anywhere, one JSON error shape, exit 2 for
every configuration problem, bounded numbers, help for every argument, and no traceback ever."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from importlib import metadata

import pytest

from bot.cli.main import main
from bot.cli.parser import build_parser, subparsers
from tests.test_cli import BIN, offline_env, run


def _error(p: subprocess.CompletedProcess[str], kind: str) -> dict[str, object]:
    """The one JSON error shape, on stdout, and nothing that looks like a traceback."""
    out = json.loads(p.stdout)
    assert out["ok"] is False and out["error"] == kind, out
    assert isinstance(out["message"], str) and out["message"]
    assert set(out) <= {"ok", "error", "message", "hint", "problems", "suggestions"}
    assert "Traceback" not in p.stderr
    return out


def test_version_comes_from_package_metadata():
    p = run("--version")
    assert p.returncode == 0
    assert p.stdout.strip() == f"chatops {metadata.version('argocd-chatops')}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "status", "payments"],
        ["status", "--json", "payments"],
        ["status", "payments", "--json"],
    ],
)
def test_json_before_or_after_the_subcommand(tmp_path, argv):
    p = run(*argv, env=offline_env(tmp_path))
    assert p.returncode == 1
    assert _error(p, "unavailable")["message"].startswith("Argo CD at http://127.0.0.1:9")


@pytest.mark.parametrize("before", [True, False])
def test_config_before_or_after_the_subcommand(tmp_path, before):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("argocd_url: http://127.0.0.1:7\n")
    env = {"CHATOPS_ARGOCD_TOKEN": "t", "CHATOPS_STATE_DB": str(tmp_path / "s.db")}
    opts = ["--config", str(cfg)]
    argv = [*opts, "status", "payments"] if before else ["status", "payments", *opts]
    p = run(*argv, "--json", env=env)
    assert p.returncode == 1
    assert "127.0.0.1:7" in _error(p, "unavailable")["message"]  # the file was read


def test_nested_command_keeps_global_options(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("listen: nope\n")  # invalid: proves the file is loaded for `ci sync`
    p = run("--config", str(cfg), "--json", "ci", "sync", "--changed-since", "HEAD")
    assert p.returncode == 2
    assert "CHATOPS_LISTEN" in _error(p, "config")["message"]


def test_usage_errors_in_the_json_shape():
    p = run("--json", "sync")  # once through the real entry point
    assert p.returncode == 2
    out = _error(p, "usage")
    assert "app" in out["message"] and "chatops sync --help" in out["hint"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--json"], "a command is required"),
        (["alert", "--json"], "'alert' needs an action"),
        (["ci", "--json"], "'ci' needs an action"),
        (["--json", "selfheal", "maybe", "payments"], "argument mode: invalid choice: 'maybe'"),
        (["--json", "--bogus", "doctor"], "unrecognized arguments: --bogus"),
    ],
)
def test_every_usage_error_has_the_json_shape(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["ok"] is False and out["error"] == "usage" and message in out["message"]
    assert out["hint"].startswith("Run `chatops") and captured.err == ""


def test_config_problems_in_the_json_shape(tmp_path):
    p = run("status", "payments", "--json", env={"CHATOPS_STATE_DB": str(tmp_path / "s.db")})
    assert p.returncode == 2
    out = _error(p, "config")
    assert "CHATOPS_ARGOCD_URL is not set (talking to Argo CD needs it)." in out["problems"]
    assert "--config" in out["hint"]


def test_rollback_without_a_git_host_is_a_configuration_problem(tmp_path):
    p = run("rollback", "payments", "--yes", env=offline_env(tmp_path))
    assert p.returncode == 2
    assert "Rollback is not configured" in p.stderr and "CHATOPS_GIT_REPO" in p.stderr
    p = run("rollback", "payments", "--yes", "--json", env=offline_env(tmp_path))
    assert p.returncode == 2 and "CHATOPS_GIT_REPO" in _error(p, "config")["message"]


def test_verify_without_kubernetes_is_a_configuration_problem(tmp_path):
    env = offline_env(tmp_path)
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    env.pop("KUBECONFIG", None)
    p = subprocess.run(
        [BIN, "verify-rootless", "payments"],
        capture_output=True,
        text=True,
        env={k: v for k, v in {**os.environ, **env}.items() if k not in ("KUBECONFIG",)},
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert "No Kubernetes configuration found" in p.stderr


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["audit", "--limit", "-1"], "--limit: must be a whole number from 1 to 10000"),
        (["audit", "--limit", "9" * 400], "--limit: must be a whole number from 1 to 10000"),
        (["sync", "payments", "--timeout", "1e400"], "--timeout: must be a number from 10"),
        (["sync", "payments", "--timeout", "9" * 400], "--timeout: must be a number from 10"),
        (["sync", "payments", "--timeout", "nan"], "--timeout: must be a number from 10"),
        (["sync", "payments", "--retry-limit", "11"], "--retry-limit: must be a whole number"),
        (["hook", "presync", "--app", "a", "--timeout", "inf"], "--timeout: must be a number"),
    ],
)
def test_numbers_are_bounded(capsys, argv, expected):
    # refused by the parser, before any setting is read: in-process is enough
    assert main(argv) == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("duration", ["9" * 400, "9" * 400 + "m", "9" * 19 + "d"])
def test_huge_selfheal_duration_is_refused_plainly(tmp_path, duration):
    p = run("selfheal", "off", "payments", "--for", duration, "--json", env=offline_env(tmp_path))
    assert p.returncode == 2
    assert "1m to 7d" in _error(p, "bad_input")["hint"]


@pytest.mark.parametrize("cmd", [["audit"], ["selfheal", "off", "payments"], ["doctor"]])
def test_unwritable_state_db_is_a_configuration_problem(tmp_path, cmd):
    # unwritable even for root (the tests may run as root): under a regular file, a
    # directory where the file should be, a path /proc refuses
    (tmp_path / "file").write_text("")
    (tmp_path / "dir.db").mkdir()
    env = offline_env(tmp_path)
    for db in (tmp_path / "file" / "s.db", tmp_path / "dir.db", "/proc/nope/s.db"):
        env["CHATOPS_STATE_DB"] = str(db)
        p = run(*cmd, env=env)
        assert "Traceback" not in p.stderr + p.stdout, p.stderr
        if cmd == ["doctor"]:  # doctor reports it as one failed check among the others
            line = next(x for x in p.stdout.splitlines() if x.strip().startswith("state"))
            assert p.returncode == 1 and "✗" in line and str(db) in line
        else:
            assert p.returncode == 2, (db, p.stderr)
            assert "CHATOPS_STATE_DB: " in p.stderr and str(db) in p.stderr


@pytest.mark.parametrize("argv", [["doctor"], ["--help"], ["completion", "bash"], ["--version"]])
def test_closed_stdout_ends_quietly(tmp_path, argv):
    """`chatops doctor | head -1`: the reader is gone before the output is written."""
    read, write = os.pipe()
    os.close(read)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATOPS_")}
    env["CHATOPS_STATE_DB"] = str(tmp_path / "s.db")
    try:
        p = subprocess.run(
            [BIN, *argv], stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=60
        )
    finally:
        os.close(write)
    assert p.stderr == ""
    assert p.returncode in (0, 1)


def test_internal_errors_show_no_traceback(tmp_path):
    # a directory as the git checkout that is not one is a usage problem, not internal
    p = run(
        "ci", "sync", "--changed-since", "HEAD", "--repo-dir", str(tmp_path),
        env=offline_env(tmp_path),
    )  # fmt: skip
    assert p.returncode == 2 and "Traceback" not in p.stderr


def _all_actions(parser: argparse.ArgumentParser, path: str = "chatops"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in subparsers(parser).items():
                yield from _all_actions(sub, f"{path} {name}")
        else:
            yield path, action


def test_every_argument_has_help():
    missing = [
        f"{path} {action.option_strings or action.dest}"
        for path, action in _all_actions(build_parser())
        if not action.help
    ]
    assert missing == []


def test_every_subcommand_has_help():
    def walk(parser: argparse.ArgumentParser):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    yield name, helps.get(name)
                    yield from walk(sub)

    assert [name for name, text in walk(build_parser()) if not text] == []


def test_no_import_cycle_inside_the_cli():
    """Every bot.cli module's imports of its siblings, lazy ones included, form no cycle."""
    import ast
    from pathlib import Path

    import bot.cli

    folder = Path(bot.cli.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in folder.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module == "bot.cli":
                    deps |= {a.name for a in node.names}
                elif node.module.startswith("bot.cli."):
                    deps.add(node.module.split(".")[2])
        graph[path.stem] = deps - {path.stem}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            d == goal or (d not in seen and reaches(d, goal, seen | {d}))
            for d in graph.get(start, ())
        )

    assert graph["main"] >= {"runner", "parser", "output"}
    assert [m for m in graph if reaches(m, m, set())] == []
