"""The in-memory 3-way merge decides like git: checked by hand on the cases that matter for a
revert, and against ``git merge-file`` on generated edits."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.githost import merge
from commands.githost.merge import Entry

BASE = b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n"


def _replace(text: bytes, old: bytes, new: bytes) -> bytes:
    assert old in text
    return text.replace(old, new, 1)


# -- text ---------------------------------------------------------------------------------


def test_changes_far_apart_merge_cleanly() -> None:
    ours = _replace(BASE, b"two\n", b"TWO\n")
    theirs = _replace(BASE, b"six\n", b"SIX\n")
    result = merge.merge_text(BASE, ours, theirs)
    assert result.clean
    assert result.data == b"one\nTWO\nthree\nfour\nfive\nSIX\nseven\n"


def test_changes_on_adjacent_lines_conflict() -> None:
    ours = _replace(BASE, b"three\n", b"THREE\n")
    theirs = _replace(BASE, b"four\n", b"FOUR\n")
    result = merge.merge_text(BASE, ours, theirs)
    assert not result.clean
    assert result.conflicts == 1


def test_changes_one_line_apart_merge_cleanly() -> None:
    ours = _replace(BASE, b"three\n", b"THREE\n")
    theirs = _replace(BASE, b"five\n", b"FIVE\n")
    assert merge.merge_text(BASE, ours, theirs).data == b"one\ntwo\nTHREE\nfour\nFIVE\nsix\nseven\n"


def test_same_change_on_both_sides_is_clean() -> None:
    both = _replace(BASE, b"four\n", b"4\nfour and a half\n")
    other = _replace(both, b"one\n", b"ONE\n")
    result = merge.merge_text(BASE, both, other)
    assert result.clean
    assert result.data == other


def test_insertions_at_the_same_place_conflict() -> None:
    ours = _replace(BASE, b"four\n", b"four\nours\n")
    theirs = _replace(BASE, b"four\n", b"four\ntheirs\n")
    assert not merge.merge_text(BASE, ours, theirs).clean


def test_deletion_next_to_an_edit_conflicts() -> None:
    ours = _replace(BASE, b"two\n", b"")
    theirs = _replace(BASE, b"three\n", b"3\n")
    assert not merge.merge_text(BASE, ours, theirs).clean


def test_missing_final_newline_is_a_distinct_line() -> None:
    base = b"a\nb\nc"
    ours = b"A\nb\nc"
    theirs = b"a\nb\nc\n"
    result = merge.merge_text(base, ours, theirs)
    assert result.clean
    assert result.data == b"A\nb\nc\n"


def test_binary_changed_on_both_sides_conflicts() -> None:
    base, ours, theirs = b"\0\1\2\n", b"\0\1\3\n", b"\0\4\2\n"
    assert not merge.merge_text(base, ours, theirs).clean
    assert merge.merge_text(base, base, theirs).data == theirs  # one side only: take it


def test_too_many_edits_is_reported_as_a_conflict() -> None:
    base = b"".join(b"%d\n" % i for i in range(3 * merge.MAX_EDITS))
    ours = b"".join(b"o%d\n" % i for i in range(3 * merge.MAX_EDITS))
    theirs = base + b"tail\n"
    assert not merge.merge_text(base, ours, theirs).clean


@pytest.mark.parametrize(
    ("a", "b"), [("", "abc"), ("abc", ""), ("abcabba", "cbabac"), ("aaa", "aa"), ("xyz", "xyz")]
)
def test_diff_rebuilds_the_other_side(a: str, b: str) -> None:
    la, lb = [c.encode() for c in a], [c.encode() for c in b]
    hunks = merge.diff(la, lb)
    assert hunks is not None
    assert _apply(la, lb, hunks) == lb


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from("abc"), max_size=10), st.lists(st.sampled_from("abc"), max_size=10))
def test_diff_is_a_shortest_edit_script(a: list[str], b: list[str]) -> None:
    la, lb = [c.encode() for c in a], [c.encode() for c in b]
    hunks = merge.diff(la, lb)
    assert hunks is not None
    assert _apply(la, lb, hunks) == lb
    edits = sum((h.b2 - h.b1) + (h.o2 - h.o1) for h in hunks)
    assert edits == len(a) + len(b) - 2 * _lcs(a, b)


def _apply(a: list[bytes], b: list[bytes], hunks: list[merge.Hunk]) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    for h in hunks:
        out += a[pos : h.b1] + b[h.o1 : h.o2]
        pos = h.b2
    return out + a[pos:]


def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
            )
    return table[0][0]


# Edits with distinct lines make the diff unambiguous, so git and we must agree exactly.
_edit = st.tuples(st.sampled_from("idr"), st.integers(min_value=0, max_value=12))


def _mutate(lines: list[bytes], edits: list[tuple[str, int]], tag: str) -> list[bytes]:
    out = list(lines)
    for n, (op, where) in enumerate(edits):
        pos = where % (len(out) + 1)
        if op == "i":
            out.insert(pos, f"{tag}{n}\n".encode())
        elif pos < len(out):
            if op == "d":
                del out[pos]
            else:
                out[pos] = f"{tag}{n}\n".encode()
    return out


@settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(min_value=0, max_value=10),
    ours_edits=st.lists(_edit, min_size=1, max_size=3),
    theirs_edits=st.lists(_edit, min_size=1, max_size=3),
)
def test_agrees_with_git_merge_file(
    tmp_path: Path,
    size: int,
    ours_edits: list[tuple[str, int]],
    theirs_edits: list[tuple[str, int]],
) -> None:
    base_lines = [f"line{i}\n".encode() for i in range(size)]
    base = b"".join(base_lines)
    ours = b"".join(_mutate(base_lines, ours_edits, "o"))
    theirs = b"".join(_mutate(base_lines, theirs_edits, "t"))
    paths = {name: tmp_path / name for name in ("base", "ours", "theirs")}
    for name, data in (("base", base), ("ours", ours), ("theirs", theirs)):
        paths[name].write_bytes(data)
    git = subprocess.run(
        ["git", "merge-file", "-p", str(paths["ours"]), str(paths["base"]), str(paths["theirs"])],
        capture_output=True,
    )
    result = merge.merge_text(base, ours, theirs)
    assert result.clean == (git.returncode == 0)
    if result.clean:
        assert result.data == git.stdout
    else:  # git may fold nearby conflicts into one region; whether it conflicts is what counts
        assert result.conflicts >= 1


# -- tree entries -------------------------------------------------------------------------

F1, F2, F3 = Entry("100644", "1" * 40), Entry("100644", "2" * 40), Entry("100644", "3" * 40)
T1, T2, T3 = Entry("040000", "a" * 40), Entry("040000", "b" * 40), Entry("040000", "c" * 40)


@pytest.mark.parametrize(
    ("base", "ours", "theirs", "expected"),
    [
        (F1, F2, F1, merge.Keep()),  # only the branch changed it since: keep
        (F1, F1, F2, merge.Take(F2)),  # only the revert changes it: take it
        (F1, F1, None, merge.Take(None)),  # the commit added it: revert deletes it
        (None, None, F1, merge.Take(F1)),  # the commit deleted it: revert restores it
        (F1, F2, F2, merge.Keep()),  # already reverted
        (F1, F2, F3, merge.MergeText("100644")),
        (F1, F2, None, merge.Clash("modified on one side, deleted on the other")),
        (F1, None, F2, merge.Clash("modified on one side, deleted on the other")),
        (None, F1, F2, merge.Clash("added differently on both sides")),
        (T1, T2, T3, merge.Descend()),
        (T1, T2, None, merge.Descend()),
        (F1, T2, F3, merge.Clash("file/directory conflict")),
        (
            Entry("120000", "1" * 40),
            Entry("120000", "2" * 40),
            Entry("120000", "3" * 40),
            merge.Clash("symlink or submodule changed on both sides"),
        ),
        (
            F1,
            Entry("100755", "1" * 40),
            F2,
            merge.Take(Entry("100755", "2" * 40)),
        ),  # mode changed on one side, content on the other
        (
            F1,
            Entry("100755", "2" * 40),
            Entry("100644", "3" * 40),
            merge.MergeText("100755"),
        ),
    ],
)
def test_decide(
    base: Entry | None, ours: Entry | None, theirs: Entry | None, expected: merge.Decision
) -> None:
    assert merge.decide(base, ours, theirs) == expected


def test_mode_changed_differently_on_both_sides_conflicts() -> None:
    base = Entry("100644", "1" * 40)
    ours = Entry("100755", "2" * 40)
    theirs = Entry("120000", "3" * 40)
    assert isinstance(merge.decide(base, ours, theirs), merge.Clash)
