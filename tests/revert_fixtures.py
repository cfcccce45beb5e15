"""The repository both Git hosts' revert tests start from, and the one way they edit it.

test_revert_github and test_revert_gitlab build their histories on the same files (a
deployment of ten numbered lines, a values file) and change them a line at a time with
``edit``, comparing each host's revert with what git itself makes.
"""

from __future__ import annotations

WEB = "apps/web/deployment.yaml"
DB = "apps/db/values.yaml"
DEPLOYMENT = "".join(f"line {i}\n" for i in range(1, 11))


def edit(text: str, old: str, new: str) -> str:
    """``text`` with the first ``old`` replaced by ``new``; ``old`` must be there."""
    assert old in text
    return text.replace(old, new, 1)
