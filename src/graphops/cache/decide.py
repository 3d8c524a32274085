"""Whether a similar cached question may answer: a bounded error rate, not a fixed threshold.

A fixed similarity threshold trades hits for wrong answers blindly (GPTCache's
own benchmark: 0.95 gives 45% hits at 94.4% precision; 0.8 makes 9% of hits
wrong). Here the user sets the error rate they accept, ``delta`` (2% by
default), and three things decide:

1. **A threshold measured for δ.** :class:`ErrorBound` takes labelled
   ``(similarity, correct)`` points, the served candidate of each labelled
   question (evals/paraphrase.jsonl for graphops' MiniLM; :func:`calibrate`
   makes them for other embeddings), and picks the lowest threshold at which
   the estimated error rate of what it would serve, ``(wrong + 1) / (served + 2)``
   (Laplace's rule: a handful of clean points never proves a low rate), is at
   most δ. No threshold qualifies: the semantic tier serves nothing.
2. **A cheap verifier** (:mod:`graphops.cache.verify`) vetoes candidates that
   cannot share an answer however similar they embed: negations, different
   numbers, dates, named entities, or arguments of "before"/"from…to" swapped.
3. **Per-entry thresholds learned from feedback**, after vCache (ICLR 2026),
   which learns a threshold per cached entry online under δ: every entry starts
   at the global threshold; a hit reported wrong at similarity ``s`` raises that
   entry's threshold above ``s``; correct reports below the global threshold
   lower the entry's own once, with Laplace's rule again, they alone keep its
   error at most δ.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from graphops.cache.store import Observation
from graphops.cache.verify import Conflict, Verifier
from graphops.errors import ConfigurationError

if TYPE_CHECKING:
    pass

__all__ = ["Decision", "ErrorBound", "decide", "estimated_error", "threshold_for"]

_NEVER = math.inf  # a threshold no similarity reaches: the tier serves nothing
_EPS = 1e-6


def estimated_error(wrong: int, served: int) -> float:
    """The error rate Laplace's rule estimates from ``wrong`` of ``served`` answers."""
    return (wrong + 1) / (served + 2)


def threshold_for(points: Iterable[tuple[float, bool]], delta: float) -> float:
    """The lowest similarity threshold whose served points keep the estimated error ≤ ``delta``.

    ``points`` are ``(similarity, correct)``: what would be served at or above
    each threshold. Returns ``math.inf`` when no threshold qualifies.
    """
    ordered = sorted(points, key=lambda p: -p[0])
    best = _NEVER
    wrong = served = 0
    index = 0
    while index < len(ordered):
        similarity = ordered[index][0]
        while index < len(ordered) and ordered[index][0] == similarity:  # ties go together
            served += 1
            wrong += not ordered[index][1]
            index += 1
        if estimated_error(wrong, served) <= delta:
            best = similarity
    return best


@dataclass(frozen=True, slots=True)
class Decision:
    """What the semantic tier decided for a question's candidates.

    ``key`` and ``similarity`` name the entry that answers (None: a miss);
    ``rejected`` lists the verifier's vetoes, ``below`` how many candidates were
    under their entry's threshold.
    """

    key: str | None
    similarity: float | None
    threshold: float | None
    rejected: tuple[Conflict, ...] = ()
    below: int = 0


@dataclass(frozen=True)
class ErrorBound:
    """The user's error bound δ and the labelled points that turn it into a threshold.

    ``points`` are ``(similarity, correct)`` of served candidates (after the
    verifier), measured for the embeddings in use; ``floor`` is the lowest
    threshold ever used, whatever the points say.
    """

    delta: float = 0.02
    points: tuple[tuple[float, bool], ...] = field(default=(), repr=False)
    floor: float = 0.5
    verifier: Verifier = field(default_factory=Verifier)

    def __post_init__(self) -> None:
        if isinstance(self.delta, bool) or not isinstance(self.delta, int | float):
            raise ConfigurationError(f"ErrorBound.delta is {self.delta!r}: give a rate in (0, 1)")
        if not 0 < self.delta < 1:
            raise ConfigurationError(f"ErrorBound.delta is {self.delta!r}: give a rate in (0, 1)")
        object.__setattr__(self, "points", tuple((float(s), bool(c)) for s, c in self.points))
        object.__setattr__(
            self, "_threshold", max(threshold_for(self.points, self.delta), self.floor)
        )

    @property
    def threshold(self) -> float:
        """The global threshold for δ (``math.inf``: the points allow none)."""
        return float(self._threshold)  # type: ignore[attr-defined]

    def entry_threshold(self, observations: Sequence[Observation]) -> float:
        """One entry's threshold: the global one, moved by that entry's own feedback."""
        threshold = self.threshold
        wrong = [o.similarity for o in observations if not o.correct]
        if wrong:
            threshold = max(threshold, max(wrong) + _EPS)
        own = threshold_for(((o.similarity, o.correct) for o in observations), self.delta)
        if own < threshold and not any(s >= own for s in wrong):
            threshold = max(own, self.floor)
        return threshold


def decide(
    bound: ErrorBound,
    question: str,
    candidates: Sequence[tuple[float, str, str, Sequence[Observation]]],
) -> Decision:
    """The first candidate, best first, at or above its threshold that the verifier lets through.

    ``candidates`` are ``(similarity, key, cached question, its observations)``.
    """
    rejected: list[Conflict] = []
    below = 0
    for similarity, key, cached, observations in sorted(candidates, key=lambda c: -c[0]):
        threshold = bound.entry_threshold(observations)
        if similarity < threshold:
            below += 1
            continue
        conflict = bound.verifier.conflict(cached, question)
        if conflict is not None:
            rejected.append(conflict)
            continue
        return Decision(key, similarity, threshold, tuple(rejected), below)
    return Decision(None, None, None, tuple(rejected), below)
