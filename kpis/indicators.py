"""The assessment's indicators (../shared/DOMAIN.md "Assessment"), computed from summed counters.

Every rate is `sum(numerator) / sum(denominator)` over the rollup rows of the org unit and the
period (never an average of averages); each says what it is, what its numerator and denominator
count, and what it is worth in the composite score when nothing was due (`empty`). The score is a
formula from the configuration (GCC_KPI_SCORE), evaluated over the rates as fractions, graded by
GCC_KPI_GRADES; `Totals` is one org unit's sums for one period.
"""
from __future__ import annotations

import ast
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.catalogue import Label
from kpis.facts import MEASURES, bin_upper, stage_counter

DEFAULT_SCORE = "on_time_handling * 60 + closure * 30 + (1 - rework) * 10 - 10 * overdue"
DEFAULT_GRADES = "A:90,B:75,C:60,D:40,E:0"


@dataclass(frozen=True)
class Rate:
    key: str
    label: Label
    numerator: str
    denominator: str
    definition: str
    empty: float | None = None      # its value in the score when the denominator is 0 (None: no score)
    higher_is_better: bool = True


@dataclass(frozen=True)
class Count:
    key: str
    label: Label
    definition: str
    higher_is_better: bool | None = None


RATES: tuple[Rate, ...] = (
    Rate("closure", Label("Closure rate", "结案率"), "due_closed", "due",
         "cases due to close in the period (handled, or past a deadline) that are closed"),
    Rate("on_time_closure", Label("On-time closure", "按期结案率"), "due_on_time", "assessable",
         "cases due in the period closed with no stage past its deadline, of those due that were neither "
         "suspended nor extended (应结案数 − 缓办数 − 延期数)"),
    Rate("on_time_dispatch", Label("On-time dispatch", "按时派遣率"), stage_counter("dispatch", "on_time"),
         stage_counter("dispatch", "due"),
         "dispatch stages done within their limit, of those done or past their deadline in the period"),
    Rate("on_time_handling", Label("On-time handling", "按期处置率"), stage_counter("handle", "on_time"),
         stage_counter("handle", "due"),
         "handling stages with feedback within their limit (extensions included), of those done or past "
         "their deadline in the period"),
    Rate("rework", Label("Rework rate", "返工率"), "reworked", "handled",
         "failed verifications, of feedbacks given in the period", empty=0.0, higher_is_better=False),
    Rate("extension", Label("Extension rate", "延期率"), "due_extended", "due",
         "cases due in the period that had an extension approved", empty=0.0, higher_is_better=False),
    Rate("inspection", Label("Inspection rate", "巡查率"), "grid_days_inspected", "grid_days",
         "grid-days with a member's fix inside the grid (patrolled at least once that day), of the grids' days",
         empty=None),
    Rate("active", Label("Members active", "在岗率"), "member_days_active", "member_days",
         "member-days with at least one fix stored, of the members' days", empty=None),
    Rate("overdue", Label("Overdue rate", "超期率"), "went_overdue", "due",
         "cases that first went past a deadline in the period, of the cases due in it", empty=0.0,
         higher_is_better=False),
)
RATE_BY_KEY = {r.key: r for r in RATES}

COUNTS: tuple[Count, ...] = (
    Count("registered", Label("Registered", "立案数"), "cases registered in the period"),
    Count("closed", Label("Closed", "结案数"),
          "closures in the period (a case reopened and closed again counts twice)"),
    Count("due", Label("Due to close", "应结案数"),
          "cases that became due to close in the period: handled, or past a stage deadline after registration"),
    Count("went_overdue", Label("Overdue in period", "期内超期"), "cases that first went past a deadline in the period",
          higher_is_better=False),
    Count("due_suspended", Label("Suspended", "缓办数"), "cases due in the period that were suspended at some time"),
    Count("due_extended", Label("Extended", "延期数"), "cases due in the period with an approved extension"),
    Count("reworked", Label("Reworked", "返工数"), "failed verifications in the period", higher_is_better=False),
    Count("refused", Label("Refused", "不予立案"), "reports and cases refused in the period"),
)
COUNT_BY_KEY = {c.key: c for c in COUNTS}

MEASURE_LABELS = {"register": Label("Time to register", "立案用时"), "dispatch": Label("Time to dispatch", "派遣用时"),
                  "accept": Label("Time to accept", "接单用时"), "handle": Label("Time to handle", "处置用时"),
                  "close": Label("Time to close", "结案用时")}
MEASURE_DEFINITIONS = {"register": "from the report to its registration",
                       "dispatch": "from registration to the first dispatch",
                       "accept": "from a dispatch to its acceptance",
                       "handle": "from acceptance to the first feedback",
                       "close": "from registration to the first closure"}


def percent(value: float | None) -> str:
    """A rate as the page and the report write it."""
    return "–" if value is None else f"{100 * value:.1f} %"


def hours(seconds: float | None) -> str:
    """A duration as the page and the report write it: minutes, hours or days."""
    if seconds is None:
        return "–"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@dataclass(frozen=True)
class Value:
    value: float | None             # None: nothing to divide by
    numerator: int
    denominator: int


@dataclass
class Histogram:
    """Durations of one measure: how many, their sum, and how many fell in each log bin."""
    n: int = 0
    total_s: float = 0.0
    bins: dict[int, int] = field(default_factory=dict)

    def add(self, bin_: int, n: int, total_s: float) -> None:
        self.n += n
        self.total_s += total_s
        self.bins[bin_] = self.bins.get(bin_, 0) + n

    @property
    def mean_s(self) -> float | None:
        return self.total_s / self.n if self.n else None

    def quantile_s(self, q: float) -> float | None:
        """The q-quantile, as the upper edge of the bin it falls in (within HISTOGRAM_GAMMA of it)."""
        if not self.n:
            return None
        rank, seen = q * self.n, 0
        for k in sorted(self.bins):
            seen += self.bins[k]
            if seen >= rank:
                return bin_upper(k)
        return bin_upper(max(self.bins))


@dataclass
class Totals:
    """One org unit's sums over a period: the counters and the durations' histograms."""
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, Histogram] = field(default_factory=dict)

    def add(self, counter: str, n: int) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + n

    def add_histogram(self, measure: str, n: int, total_s: float, bins: list[int]) -> None:
        """A rollup row's histogram: how many, their sum, and the count in each bin (index = bin)."""
        h = self.durations.setdefault(measure, Histogram())
        h.n += n
        h.total_s += total_s
        for k, c in enumerate(bins):
            if c:
                h.bins[k] = h.bins.get(k, 0) + c

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)

    def rate(self, key: str) -> Value:
        rate = RATE_BY_KEY[key]
        num, den = self.count(rate.numerator), self.count(rate.denominator)
        return Value(num / den if den else None, num, den)

    def histogram(self, measure: str) -> Histogram:
        return self.durations.get(measure, Histogram())

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())


# --- the composite score --------------------------------------------------------------------------

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_FUNCS = {"min": min, "max": max}


class Formula:
    """A score formula over the rates' keys (fractions 0..1), numbers, + − × ÷, parentheses, min and
    max: checked when it is read (a typo in the configuration stops the start with its reason)."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        try:
            self._tree = ast.parse(self.text, mode="eval").body
        except SyntaxError as bad:
            raise ValueError(f"score formula {text!r}: {bad.msg}") from None
        self.names = frozenset(self._check(self._tree))

    def _check(self, node) -> set[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return set()
        if isinstance(node, ast.Name):
            if node.id not in RATE_BY_KEY:
                raise ValueError(f"score formula {self.text!r}: {node.id!r} is not a rate "
                                 f"(one of {', '.join(RATE_BY_KEY)})")
            return {node.id}
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return self._check(node.left) | self._check(node.right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self._check(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS \
                and not node.keywords and node.args:
            return set().union(*(self._check(a) for a in node.args))
        raise ValueError(f"score formula {self.text!r}: only rates, numbers, + - * /, ( ), min and max")

    def score(self, totals: Totals) -> float | None:
        """The score of these totals, or None when a rate it needs has nothing to divide by."""
        values: dict[str, float] = {}
        for name in self.names:
            value = totals.rate(name).value
            if value is None:
                value = RATE_BY_KEY[name].empty
            if value is None:
                return None
            values[name] = value
        try:
            return float(self._eval(self._tree, values))
        except ZeroDivisionError:
            return None

    def _eval(self, node, values: Mapping[str, float]) -> float:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            return _OPS[type(node.op)](self._eval(node.left, values), self._eval(node.right, values))
        if isinstance(node, ast.UnaryOp):
            return -self._eval(node.operand, values)
        return _FUNCS[node.func.id](*(self._eval(a, values) for a in node.args))


@dataclass(frozen=True)
class Grades:
    """Letters by score: the first whose minimum the score reaches (A ≥ 90, B ≥ 75, … by default)."""
    steps: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str) -> Grades:
        steps = []
        for part in text.split(","):
            letter, _, minimum = part.partition(":")
            try:
                steps.append((letter.strip(), float(minimum)))
            except ValueError:
                raise ValueError(f"grades {text!r}: {part!r} is not letter:minimum") from None
        if not steps or any(not letter for letter, _ in steps):
            raise ValueError(f"grades {text!r}: letter:minimum, comma-separated")
        return cls(tuple(sorted(steps, key=lambda s: -s[1])))

    def grade(self, score: float | None) -> str | None:
        if score is None:
            return None
        for letter, minimum in self.steps:
            if score >= minimum:
                return letter
        return self.steps[-1][0]

    def describe(self) -> str:
        return ", ".join(f"{letter} ≥ {minimum:g}" for letter, minimum in self.steps)


@dataclass(frozen=True)
class Assessment:
    """How units are scored: the formula and the grades (from the configuration)."""
    formula: Formula = field(default_factory=lambda: Formula(DEFAULT_SCORE))
    grades: Grades = field(default_factory=lambda: Grades.parse(DEFAULT_GRADES))

    @classmethod
    def configured(cls, score: str, grades: str) -> Assessment:
        return cls(Formula(score or DEFAULT_SCORE), Grades.parse(grades or DEFAULT_GRADES))


assert set(MEASURE_LABELS) == set(MEASURES)
