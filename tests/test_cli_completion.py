"""`chatops completion bash|zsh|fish`: scripts generated from the parser. The bash script is
run in a real bash with the words a user would have typed."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bot.cli.completion import commands
from bot.cli.parser import build_parser
from tests.test_cli import run

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture(scope="module")
def bash_script() -> str:
    p = run("completion", "bash")
    assert p.returncode == 0
    return p.stdout


def complete(script: str, *words: str) -> list[str]:
    """What bash offers after ``chatops WORDS...`` (the last word is the one being typed)."""
    words_q = " ".join(f"'{w}'" for w in ("chatops", *words))
    program = (
        f"{script}\nCOMP_WORDS=({words_q}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
        "_chatops; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    p = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.splitlines() if w]


def test_bash_is_registered_and_valid(bash_script):
    assert "complete -F _chatops chatops" in bash_script
    check = subprocess.run(["bash", "-n"], input=bash_script, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(
    ("words", "expected", "absent"),
    [
        ([""], {"sync", "rollback", "doctor", "alert", "init", "--version", "--json"}, {"test"}),
        (["sy"], {"sync"}, {"serve"}),
        (["ci", ""], {"sync", "--config"}, {"rollback"}),
        (["ci", "sync", "--"], {"--changed-since", "--repo-dir", "--json"}, {"--no-prune"}),
        (["--json", "sync", "--"], {"--timeout", "--no-prune", "--config"}, {"--changed-since"}),
        (["selfheal", ""], {"off", "on", "--for"}, set()),
        (["alert", "test", "--platform", ""], {"slack", "discord"}, set()),
        (["init", "--git-provider", "g"], {"github", "gitlab"}, set()),
        (["completion", ""], {"bash", "zsh", "fish"}, set()),
        (["sync", "--timeout", ""], set(), {"--timeout", "sync"}),  # a value: nothing to offer
    ],
)
def test_bash_offers_what_the_parser_accepts(bash_script, words, expected, absent):
    offered = set(complete(bash_script, *words))
    assert expected <= offered, offered
    assert not (absent & offered)


def test_every_command_and_option_is_in_every_script():
    scripts = {shell: run("completion", shell).stdout for shell in ("bash", "zsh", "fish")}
    assert scripts["zsh"].startswith("autoload -U +X bashcompinit && bashcompinit")
    for cmd in commands(build_parser()):
        for word in [*cmd.subcommands, *cmd.flags]:
            for shell, text in scripts.items():
                needle = f"-l {word[2:]}" if shell == "fish" and word.startswith("--") else word
                assert needle in text, (shell, cmd.path, word)
    assert (
        """-n 'test (__chatops_path) = "chatops ci sync"' -l changed-since -x"""
        in (scripts["fish"])
    )


def test_unknown_shell_is_a_usage_error():
    p = run("completion", "powershell")
    assert p.returncode == 2 and "invalid choice" in p.stderr
