"""Errors and problem reports for bad input.

Every problem with input data is a :class:`DataProblem`: the file, the line (when the
problem is on a line) and what is wrong. Readers either raise it at once
(``on_error="raise"``) or collect it in a :class:`ProblemLog` and skip the sample
(``on_error="skip"``); a skip is never silent, the log is written out and summarised.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class DataProblem:
    """One problem found in the input: which file, which line, what is wrong."""

    path: str
    problem: str
    line: int | None = None
    kind: str = "data"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.problem}"


class DataError(ValueError):
    """Bad input data. The message names the file (and line) and the problem."""

    def __init__(self, problem: DataProblem | str, *, path: str | Path | None = None,
                 line: int | None = None, kind: str = "data") -> None:
        if not isinstance(problem, DataProblem):
            problem = DataProblem(str(path) if path is not None else "<input>", problem, line, kind)
        self.problem = problem
        super().__init__(str(problem))


class ConfigError(ValueError):
    """Bad configuration: an unknown key, a value of the wrong type or range."""


class MtbrainWarning(UserWarning):
    """A problem mtbrain works around and reports (input it ignores, a cache it cannot
    use). The command line prints these as plain ``warning: <message>`` lines."""


@dataclass
class ProblemLog:
    """Collects problems under a policy: raise at the first one, or skip and record.

    Args:
        on_error: ``"raise"`` stops at the first problem with a :class:`DataError`;
            ``"skip"`` records it and lets the caller drop the sample.
    """

    on_error: OnError = "raise"
    problems: list[DataProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"on_error must be 'raise' or 'skip', got {self.on_error!r}")

    def report(self, path: str | Path, problem: str, *, line: int | None = None,
               kind: str = "data") -> None:
        """Record a problem, or raise it when the policy is ``raise``."""
        item = DataProblem(str(path), problem, line, kind)
        if self.on_error == "raise":
            raise DataError(item)
        self.problems.append(item)

    def extend(self, other: ProblemLog) -> None:
        self.problems.extend(other.problems)

    def __len__(self) -> int:
        return len(self.problems)

    def summary(self) -> str:
        """One line per kind of problem with its count, then the first few problems."""
        if not self.problems:
            return "no problems"
        counts = Counter(p.kind for p in self.problems)
        head = ", ".join(f"{n} {k}" for k, n in counts.most_common())
        first = "\n".join(f"  {p}" for p in self.problems[:5])
        more = f"\n  ... and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        return f"{len(self.problems)} skipped ({head}):\n{first}{more}"

    def write(self, path: str | Path) -> Path:
        """Write every problem as JSON (atomically) and return the path."""
        from mtbrain.io import write_json

        return write_json(path, [asdict(p) for p in self.problems])
