"""Measuring the semantic tier on labelled pairs, and turning δ into a threshold.

A labelled pair is a cached question, a new question, and whether the cached
answer is right for it (evals/paraphrase.jsonl: paraphrases that must hit, hard
negatives that must not). :func:`served` puts every distinct cached question
in one index, as a real partition would hold them, and asks it each new
question the way the tier does: the best candidates by cosine similarity, the
first one the verifier does not veto is what would be served. Each becomes a
:class:`Served` point; :func:`report` says, at a threshold, how many
paraphrases hit and how precise the hits are; :func:`cross_validated` picks
the threshold for δ on one half of the cached questions and measures it on
the other, so the numbers are never measured on what they were fitted to.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphops.cache.decide import ErrorBound, threshold_for
from graphops.cache.verify import Verifier
from graphops.errors import InvalidInputError

__all__ = [
    "Pair",
    "Report",
    "Served",
    "cross_validated",
    "load_pairs",
    "minilm_bound",
    "points",
    "report",
    "served",
]


@dataclass(frozen=True, slots=True)
class Pair:
    """One labelled pair: may ``cached``'s answer answer ``query``?"""

    id: str
    cached: str
    query: str
    hit: bool
    kind: str


@dataclass(frozen=True, slots=True)
class Served:
    """What the tier would serve ``pair``'s query: the candidate's similarity, and if right.

    ``similarity`` is None when every candidate was vetoed (nothing is served
    at any threshold).
    """

    pair: Pair
    similarity: float | None
    correct: bool


@dataclass(frozen=True, slots=True)
class Report:
    """The tier's quality at one threshold."""

    threshold: float
    hit_rate: float  # paraphrases served their own cached answer
    precision: float  # served answers that were right
    served: int
    wrong: int

    @property
    def error_rate(self) -> float:
        """Wrong answers among those served."""
        return self.wrong / self.served if self.served else 0.0


def load_pairs(path: str | Path) -> list[Pair]:
    """The pairs of a JSON Lines file (fields id, cached, query, label, kind)."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append(
                Pair(row["id"], row["cached"], row["query"], row["label"] == "hit", row["kind"])
            )
        except (ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}:{number}: not a labelled pair ({exc})") from None
    return pairs


def served(
    pairs: Sequence[Pair],
    embed: Callable[[list[str]], list[list[float]]],
    verifier: Verifier | None = None,
    top_k: int = 4,
) -> list[Served]:
    """What the tier would serve each pair's query, all cached questions in one index."""
    verifier = verifier or Verifier()
    cached = sorted({p.cached for p in pairs})
    matrix = _unit(embed(cached))
    queries = _unit(embed([p.query for p in pairs]))
    out = []
    for pair, vector in zip(pairs, queries, strict=True):
        scores = matrix @ vector
        best = None
        for index in np.argsort(-scores)[:top_k]:
            if verifier.conflict(cached[index], pair.query) is None:
                best = int(index)
                break
        if best is None:
            out.append(Served(pair, None, False))
        else:
            right = pair.hit and cached[best] == pair.cached
            out.append(Served(pair, float(scores[best]), right))
    return out


def _unit(vectors: list[list[float]]) -> np.ndarray:
    array = np.asarray(vectors, dtype="float64")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms == 0, 1, norms)


def points(results: Sequence[Served]) -> list[tuple[float, bool]]:
    """The ``(similarity, correct)`` points :class:`~graphops.cache.decide.ErrorBound` takes."""
    return [(r.similarity, r.correct) for r in results if r.similarity is not None]


def report(results: Sequence[Served], threshold: float) -> Report:
    """Hit rate and precision of ``results`` at ``threshold``."""
    shown = [r for r in results if r.similarity is not None and r.similarity >= threshold]
    right = sum(r.correct for r in shown)
    paraphrases = sum(r.pair.hit for r in results)
    hits = sum(r.correct for r in shown if r.pair.hit)
    return Report(
        threshold=threshold,
        hit_rate=hits / paraphrases if paraphrases else 0.0,
        precision=right / len(shown) if shown else 1.0,
        served=len(shown),
        wrong=len(shown) - right,
    )


def _fold(pair: Pair) -> int:
    return hashlib.sha256(pair.cached.encode()).digest()[0] % 2


def cross_validated(results: Sequence[Served], delta: float) -> tuple[Report, Report]:
    """The threshold for ``delta`` fitted on each half of the cached questions, measured on
    the other half: one report per held-out half."""
    out = []
    for held_out in (0, 1):
        fit = [r for r in results if _fold(r.pair) != held_out]
        test = [r for r in results if _fold(r.pair) == held_out]
        out.append(report(test, threshold_for(points(fit), delta)))
    return out[0], out[1]


MINILM_POINTS = "minilm_points.json"
"""The packaged points: the served candidates of evals/paraphrase.jsonl on graphops' MiniLM."""


def minilm_bound(delta: float = 0.02) -> ErrorBound:
    """The error bound for δ with the points measured for graphops' local MiniLM embeddings.

    ``benchmarks/cache_precision.py --write`` measures them again (an
    integration test checks the packaged file is what the labelled set gives).
    They hold for MiniLM only: with other embeddings, :func:`served` on your
    own labelled pairs gives the points.
    """
    from importlib.resources import files

    raw = json.loads(files("graphops.cache").joinpath(MINILM_POINTS).read_text(encoding="utf-8"))
    return ErrorBound(delta=delta, points=tuple((float(s), bool(c)) for s, c in raw["points"]))
