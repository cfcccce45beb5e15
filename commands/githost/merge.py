"""A three-way merge of trees and text, in memory, with no I/O.

Reverting a commit that is not the branch tip means merging two sets of changes: what happened
on the branch since the commit (base -> ours) and the undoing of the commit (base -> theirs,
where base is the bad commit and theirs its parent). GitHub has no revert endpoint, so the
GitHub client computes this merge itself from blobs and trees it reads over the API; this
module is the pure part, so it can be tested exhaustively against ``git merge-file`` and
``git revert`` without a server.

Rules follow git's: a path changed on one side only takes that side; the same change on both
sides is clean; changes on both sides to the same or *adjacent* lines conflict; a file changed
on one side and deleted on the other conflicts; binary files, symlinks and submodules changed
on both sides conflict. Renames are not detected (git's merge-ort does): a revert that would
need one reports a conflict, which is the safe answer ("needs a human").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

TREE_MODE = "040000"
FILE_MODES = frozenset({"100644", "100755"})
#: Beyond this many line edits between two versions the diff would cost too much memory; the
#: file is reported as a conflict instead (a person merges it by hand).
MAX_EDITS = 1000
_BINARY_PROBE = 8000  # git looks for a NUL byte in the first 8000 bytes


@dataclass(frozen=True)
class Entry:
    """One name in a Git tree: its mode as Git writes it ("100644", "040000"...) and object id."""

    mode: str
    sha: str

    @property
    def is_tree(self) -> bool:
        return self.mode.lstrip("0") == TREE_MODE.lstrip("0")

    @property
    def is_file(self) -> bool:
        return self.mode in FILE_MODES


# What to do with one name, given its entry in base, ours and theirs.
@dataclass(frozen=True)
class Keep:
    """The result is ours (nothing to write)."""


@dataclass(frozen=True)
class Take:
    """The result is theirs: ``entry``, or the name removed when ``entry`` is None."""

    entry: Entry | None


@dataclass(frozen=True)
class Descend:
    """Trees changed on both sides: merge their contents name by name (a missing side is an
    empty tree)."""


@dataclass(frozen=True)
class MergeText:
    """Regular files changed on both sides: merge the contents; the result has ``mode``."""

    mode: str


@dataclass(frozen=True)
class Clash:
    """A conflict git would also report; ``reason`` is a few words for people."""

    reason: str


Decision = Keep | Take | Descend | MergeText | Clash


def decide(base: Entry | None, ours: Entry | None, theirs: Entry | None) -> Decision:
    """Merge one tree entry. Equal ``(mode, sha)`` pairs mean equal content."""
    if ours == theirs or base == theirs:
        return Keep()
    if base == ours:
        return Take(theirs)
    # All three differ.
    present = [e for e in (base, ours, theirs) if e is not None]
    if all(e.is_tree for e in present):
        return Descend()
    if any(e.is_tree for e in present):
        return Clash("file/directory conflict")
    if ours is None or theirs is None:
        return Clash("modified on one side, deleted on the other")
    if base is None:
        return Clash("added differently on both sides")
    mode = _merge_mode(base.mode, ours.mode, theirs.mode)
    if mode is None:
        return Clash("file mode changed differently on both sides")
    if not (base.is_file and ours.is_file and theirs.is_file):
        return Clash("symlink or submodule changed on both sides")
    if ours.sha == theirs.sha or base.sha == theirs.sha:
        return Take(Entry(mode, ours.sha))  # only the mode changed on their side
    if base.sha == ours.sha:
        return Take(Entry(mode, theirs.sha))
    return MergeText(mode)


def _merge_mode(base: str, ours: str, theirs: str) -> str | None:
    if ours == theirs or base == theirs:
        return ours
    if base == ours:
        return theirs
    return None


@dataclass(frozen=True)
class TextMerge:
    """The merged bytes when ``clean``; otherwise how many regions conflict."""

    clean: bool
    data: bytes
    conflicts: int = 0


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:_BINARY_PROBE]


def merge_text(base: bytes, ours: bytes, theirs: bytes) -> TextMerge:
    """diff3 merge of file contents the way ``git merge-file`` decides what conflicts."""
    if ours == theirs or base == theirs:
        return TextMerge(True, ours)
    if base == ours:
        return TextMerge(True, theirs)
    if is_binary(base) or is_binary(ours) or is_binary(theirs):
        return TextMerge(False, b"", 1)
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    ours_hunks = diff(b, o)
    theirs_hunks = diff(b, t)
    if ours_hunks is None or theirs_hunks is None:
        return TextMerge(False, b"", 1)
    out: list[bytes] = []
    conflicts = 0
    pos = 0  # next base line not yet copied
    for cluster in _clusters(ours_hunks, theirs_hunks):
        out.extend(b[pos : cluster.base_start])
        if not cluster.theirs:
            out.extend(cluster.side_lines(cluster.ours, o))
        elif not cluster.ours:
            out.extend(cluster.side_lines(cluster.theirs, t))
        else:
            mine = cluster.side_lines(cluster.ours, o)
            other = cluster.side_lines(cluster.theirs, t)
            if mine == other:
                out.extend(mine)
            else:
                conflicts += 1
        pos = cluster.base_end
    out.extend(b[pos:])
    if conflicts:
        return TextMerge(False, b"", conflicts)
    return TextMerge(True, b"".join(out))


def split_lines(data: bytes) -> list[bytes]:
    """Lines with their ``\\n``; a last line without one stays distinct (as in git)."""
    if not data:
        return []
    lines = data.split(b"\n")
    last = lines.pop()
    result = [line + b"\n" for line in lines]
    if last:
        result.append(last)
    return result


@dataclass(frozen=True)
class Hunk:
    """``base[b1:b2]`` became ``other[o1:o2]``."""

    b1: int
    b2: int
    o1: int
    o2: int


@dataclass
class _Cluster:
    base_start: int
    base_end: int
    ours: list[Hunk]
    theirs: list[Hunk]
    ours_shift: int  # line-count change from earlier ours hunks
    theirs_shift: int

    def side_lines(self, hunks: list[Hunk], lines: Sequence[bytes]) -> list[bytes]:
        shift = self.ours_shift if hunks is self.ours else self.theirs_shift
        start = self.base_start + shift
        end = self.base_end + shift + sum((h.o2 - h.o1) - (h.b2 - h.b1) for h in hunks)
        return list(lines[start:end])


def _clusters(ours: list[Hunk], theirs: list[Hunk]) -> list[_Cluster]:
    """Group hunks from both sides whose base ranges overlap or touch (git's rule: a hunk is
    independent only if it ends strictly before the next one starts)."""
    tagged = sorted(
        [(h.b1, 0, h) for h in ours] + [(h.b1, 1, h) for h in theirs], key=lambda x: (x[0], x[1])
    )
    clusters: list[_Cluster] = []
    shift = [0, 0]
    current: _Cluster | None = None
    for _, side, hunk in tagged:
        if current is None or hunk.b1 > current.base_end:
            if current is not None:
                clusters.append(current)
                shift = [
                    current.ours_shift + _growth(current.ours),
                    current.theirs_shift + _growth(current.theirs),
                ]
            current = _Cluster(hunk.b1, hunk.b2, [], [], shift[0], shift[1])
        (current.ours if side == 0 else current.theirs).append(hunk)
        current.base_end = max(current.base_end, hunk.b2)
    if current is not None:
        clusters.append(current)
    return clusters


def _growth(hunks: list[Hunk]) -> int:
    return sum((h.o2 - h.o1) - (h.b2 - h.b1) for h in hunks)


def diff(a: Sequence[bytes], b: Sequence[bytes]) -> list[Hunk] | None:
    """Myers' O(ND) diff as a list of hunks; None when more than ``MAX_EDITS`` edits."""
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end_a, end_b = len(a), len(b)
    while end_a > start and end_b > start and a[end_a - 1] == b[end_b - 1]:
        end_a -= 1
        end_b -= 1
    ids: dict[bytes, int] = {}
    x_seq = [ids.setdefault(line, len(ids)) for line in a[start:end_a]]
    y_seq = [ids.setdefault(line, len(ids)) for line in b[start:end_b]]
    matches = _myers_matches(x_seq, y_seq)
    if matches is None:
        return None
    hunks: list[Hunk] = []
    prev_x = prev_y = 0
    for x, y in [*matches, (len(x_seq), len(y_seq))]:
        if x > prev_x or y > prev_y:
            hunks.append(Hunk(start + prev_x, start + x, start + prev_y, start + y))
        prev_x, prev_y = x + 1, y + 1
    return hunks


def _myers_matches(a: list[int], b: list[int]) -> list[tuple[int, int]] | None:
    """Pairs (i, j) with a[i] == b[j] along a shortest edit script, in order."""
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return []
    offset = min(n + m, MAX_EDITS) + 1
    v = [0] * (2 * offset + 1)
    # trace[d] is v after step d, for diagonals -d..d (index k + d): enough to walk back.
    trace: list[list[int]] = []
    for d in range(offset):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]  # a step down: b[y] inserted
            else:
                x = v[offset + k - 1] + 1  # a step right: a[x] deleted
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[offset + k] = x
            if x >= n and y >= m:
                return _backtrack(trace, d, n, m)
        trace.append(v[offset - d : offset + d + 1])
    return None


def _backtrack(trace: list[list[int]], last: int, n: int, m: int) -> list[tuple[int, int]]:
    matches: list[tuple[int, int]] = []
    x, y = n, m
    for d in range(last, 0, -1):
        prev = trace[d - 1]
        k = x - y
        if k == -d or (k != d and prev[k - 1 + d - 1] < prev[k + 1 + d - 1]):
            prev_k = k + 1
        else:
            prev_k = k - 1
        prev_x = prev[prev_k + d - 1]
        prev_y = prev_x - prev_k
        mid_x, mid_y = (prev_x, prev_y + 1) if prev_k == k + 1 else (prev_x + 1, prev_y)
        while x > mid_x and y > mid_y:
            x -= 1
            y -= 1
            matches.append((x, y))
        x, y = prev_x, prev_y
    while x > 0 and y > 0:
        x -= 1
        y -= 1
        matches.append((x, y))
    matches.reverse()
    return matches
