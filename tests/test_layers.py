"""Layer rules import-linter cannot see: nothing below bot/ reads the environment."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_no_environment_reads_below_bot():
    offenders = []
    for pkg in ("commands", "notifiers"):
        for path in (ROOT / pkg).rglob("*.py"):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in (
                    "environ",
                    "getenv",
                    "environb",
                ):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
