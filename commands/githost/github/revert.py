"""Building a revert commit on GitHub out of Git objects, since GitHub has no revert endpoint.

The bot keeps no clone, so the reverted tree is computed from what the Git Data API serves: for
the branch tip it is simply the parent's tree; for an older commit it is a 3-way merge done in
memory (``commands.githost.merge``: base = the bad commit, ours = the head, theirs = its parent), which
walks only the directories that differ and fetches only the blobs that need a text merge.

``plan_revert`` reads and decides - it raises ``Conflict`` or "nothing to revert" before anything is
written, which is what the confirmation preview relies on; ``write`` then uploads the merged
files, the tree and the commit. Moving the branch (and what to do when GitHub refuses) is the
caller's business: ``commands.githost.github.host``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from commands import errors
from commands.githost import merge
from commands.githost import port as githost
from commands.githost.github.api import GitHubAPI
from commands.githost.port import CommitInfo


@dataclass
class Plan:
    """What a revert writes on top of ``head``: either a whole existing tree (``tree``) or
    changes to ``head_tree`` (``changes`` plus merged file contents still to upload)."""

    head: str
    head_tree: str
    tree: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    uploads: list[tuple[str, str, bytes]] = field(default_factory=list)  # path, mode, data


async def plan_revert(api: GitHubAPI, target: CommitInfo, branch: str) -> Plan:
    """The reverted tree on top of the current head of ``branch``, computed from reads only."""
    if not target.parents:
        raise errors.BadInput(
            f"Commit {target.short_sha} is the first commit of {api.repo}; reverting it "
            "would empty the repository."
        )
    head = await api.head(branch)
    out = Plan(head=head, head_tree=await api.tree_of(head))
    parent_tree = await api.tree_of(target.parents[0])  # a merge: its first parent
    if head == target.sha:
        out.tree = parent_tree
        if parent_tree == out.head_tree:
            raise githost.nothing_to_revert(target.short_sha, branch)
        return out
    conflicts: list[str] = []
    await _merge_dir(
        api, "", await api.tree_of(target.sha), out.head_tree, parent_tree, out, conflicts
    )
    if conflicts:
        raise githost.conflict(target.short_sha, conflicts)
    if not out.changes and not out.uploads:
        raise githost.nothing_to_revert(target.short_sha, branch)
    return out


async def write(api: GitHubAPI, plan: Plan, message: str) -> tuple[str, str]:
    """Upload merged files, the tree and the commit; the commit's sha and web link."""
    tree = plan.tree
    if tree is None:
        changes = list(plan.changes)
        for path, mode, data in plan.uploads:
            sha = await api.create_blob(data)
            changes.append({"path": path, "mode": mode, "type": "blob", "sha": sha})
        tree = await api.create_tree(plan.head_tree, changes)
    return await api.create_commit(message, tree, plan.head)


async def _merge_dir(
    api: GitHubAPI,
    prefix: str,
    base_sha: str | None,
    ours_sha: str | None,
    theirs_sha: str | None,
    plan: Plan,
    conflicts: list[str],
) -> None:
    base = await api.tree(base_sha)
    ours = await api.tree(ours_sha)
    theirs = await api.tree(theirs_sha)
    for name in sorted(set(base) | set(ours) | set(theirs)):
        path = prefix + name
        b, o, t = base.get(name), ours.get(name), theirs.get(name)
        decision = merge.decide(b, o, t)
        if isinstance(decision, merge.Keep):
            continue
        if isinstance(decision, merge.Take) and decision.entry is None and o and o.is_tree:
            await _delete_dir(api, path + "/", o.sha, plan)
        elif isinstance(decision, merge.Take):
            plan.changes.append(_tree_change(path, decision.entry, o))
        elif isinstance(decision, merge.Descend):
            await _merge_dir(api, path + "/", _sha(b), _sha(o), _sha(t), plan, conflicts)
        elif isinstance(decision, merge.MergeText):
            assert b is not None and o is not None and t is not None
            ours_data = await api.blob(o.sha)
            result = merge.merge_text(await api.blob(b.sha), ours_data, await api.blob(t.sha))
            if not result.clean:
                conflicts.append(path)
            elif result.data != ours_data or decision.mode != o.mode:
                plan.uploads.append((path, decision.mode, result.data))
        else:
            conflicts.append(path)


async def _delete_dir(api: GitHubAPI, prefix: str, sha: str, plan: Plan) -> None:
    """Remove a directory file by file: a deleted path must be a blob for GitHub, which
    drops directories once they are empty."""
    for name, entry in (await api.tree(sha)).items():
        if entry.is_tree:
            await _delete_dir(api, f"{prefix}{name}/", entry.sha, plan)
        else:
            plan.changes.append(_tree_change(prefix + name, None, entry))


def _tree_change(path: str, entry: merge.Entry | None, ours: merge.Entry | None) -> dict[str, Any]:
    if entry is None:  # remove the file: GitHub wants the mode and type of what goes away
        assert ours is not None and not ours.is_tree
        kind = "commit" if ours.mode == "160000" else "blob"
        return {"path": path, "mode": ours.mode, "type": kind, "sha": None}
    kind = "tree" if entry.is_tree else "commit" if entry.mode == "160000" else "blob"
    return {"path": path, "mode": entry.mode, "type": kind, "sha": entry.sha}


def _sha(entry: merge.Entry | None) -> str | None:
    return entry.sha if entry is not None else None
