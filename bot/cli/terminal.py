"""Plain-text rendering of steps and results for a terminal (and CI logs)."""

from __future__ import annotations

from commands.results import Result, Status, Step, StepState

STEP_MARK = {
    StepState.RUNNING: "…",
    StepState.DONE: "✓",
    StepState.SKIPPED: "-",
    StepState.FAILED: "✗",
}
STATUS_MARK = {Status.CHANGED: "✓", Status.NOOP: "✓", Status.FAILED: "✗", Status.DENIED: "⛔"}


def step_line(step: Step) -> str:
    return f"  {STEP_MARK[step.state]} {step.name}" + (f": {step.detail}" if step.detail else "")


def result_text(result: Result) -> str:
    lines = [f"{STATUS_MARK[result.status]} {result.command} {result.target}: {result.summary}"]
    width = max((len(f.name) for f in result.facts), default=0)
    lines += [f"  {f.name.ljust(width)}  {f.value}" for f in result.facts]
    lines += [f"  {link.title}: {link.url}" for link in result.links]
    if result.actions:
        lines.append("  next: " + "; ".join(f"chatops {a.command}" for a in result.actions))
    return "\n".join(lines)
