"""Every exception grader raises, in one tree.

Lecturer-side problems (a malformed rubric, a missing reference) are ``RubricError``
and stop the run with a message naming the file, line and key. Student-side
problems are ``SubmissionError``: they become a verdict on a rubric item or on the
whole submission, never a crash of the grader.
"""

from __future__ import annotations

__all__ = [
    "GraderError", "RubricError", "SubmissionError", "MissingName", "KernelDied",
    "ExecutionTimeout", "ProtocolError", "StudentException", "SandboxUnavailable",
    "CourseError", "KernelStartError", "AdjustmentError",
]


class GraderError(Exception):
    """The root of every error raised by grader."""


class RubricError(GraderError, ValueError):
    """A rubric file is malformed: names the file, the line and the key."""

    def __init__(self, path: object, message: str, *, line: int | None = None,
                 key: str | None = None, hint: str = "") -> None:
        self.path, self.line, self.key, self.hint = path, line, key, hint
        where = f"{path}" + (f", line {line}" if line else "") + (f", key `{key}`" if key else "")
        text = f"{where}: {message}"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class CourseError(GraderError, ValueError):
    """The course folder or a submission path is not what grader expects."""


class AdjustmentError(CourseError):
    """A TA's adjustment cannot be recorded (an unknown student or item, points out of
    range, a bad row of an adjustments file): each problem names where it is (the file and
    line, or the command line), the value and the fix. Nothing is recorded."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n".join(f"  {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{len(problems)} adjustment problem(s); nothing was recorded:\n"
                         f"{shown}{more}")


class SandboxUnavailable(GraderError, RuntimeError):
    """bubblewrap cannot run here; grading refuses unless explicitly unsafe."""


class KernelStartError(GraderError, RuntimeError):
    """The kernel could not be started or did not answer: not the student's doing (no student
    code has run yet), so every item it leaves ungraded needs review. ``log`` is the end of the
    kernel process's own output, for the TA."""

    def __init__(self, message: str, log: str = "") -> None:
        self.log = log
        super().__init__(message)


class SubmissionError(GraderError):
    """Something about the student's work; becomes a verdict, never a crash."""


class MissingName(SubmissionError, LookupError):
    """The notebook does not define a name the rubric needs."""


class KernelDied(SubmissionError, RuntimeError):
    """The student's kernel exited (os._exit, segfault, killed for memory)."""


class ExecutionTimeout(SubmissionError, TimeoutError):
    """A cell, a call or the whole run took longer than its limit."""


class ProtocolError(SubmissionError):
    """The kernel's reply is malformed, oversized, or not the data asked for."""


class StudentException(SubmissionError):
    """The student's code raised; carries the exception name, value and traceback."""

    def __init__(self, ename: str, evalue: str, traceback: str) -> None:
        self.ename, self.evalue, self.traceback = ename, evalue, traceback
        super().__init__(f"{ename}: {evalue}")
