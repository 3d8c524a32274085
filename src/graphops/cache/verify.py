"""The cheap verifier of the semantic cache: can two similar questions share an answer?

Embedding similarity puts "How do I enable the cache?" next to "How do I disable the
cache?", and next to questions that differ only in a number, a date, a name or the order
of two things. Serving one's answer for the other is a wrong answer, while a veto costs
only a cache miss, so a match above the similarity threshold is vetoed when
:func:`conflict` finds the two cannot share an answer. It is pure and fast (standard
library, no model, no I/O): a text is parsed once (:mod:`graphops.cache.verify_parse`,
memoised: cached questions recur) and six checks compare two parses.

The checks look for *one small edit*: a hard near-duplicate is the same question with one
thing changed, a paraphrase rewords it. What can only mean another question vetoes
outright: two different numbers or dates, the same words with two runs of them trading
places ("A before B", "B before A"), the same frame around another subject ("Which
page covers breakers?", "Which page covers quotas and bulkheads?"). Weaker evidence
(opposite words, a negation, a number or a name on one side only, two different names)
vetoes only when little else differs, since a paraphrase may say "no" for "without",
drop a name or use a related one.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, get_args

from graphops.cache.verify_parse import (
    _CONCEPT,
    _MARKERS,
    _PER,
    _QUOTES,
    _SEP,
    _STOP,
    _names,
    _Parse,
    _parse,
    _stem,
    _tokenise,
    _variants,
    _words,
)
from graphops.errors import ConfigurationError

__all__ = ["Conflict", "ConflictKind", "Verifier", "conflict", "corpus_entities"]

ConflictKind = Literal["negation", "number", "date", "entity", "order", "topic"]
_KINDS: frozenset[ConflictKind] = frozenset(get_args(ConflictKind))

_TERM = re.compile(r"(?:--)?\w[\w.\-/@:]*(?: --?\w[\w.\-/@:]*| \w[\w.\-/@:]*){0,2}")
_NEAR_WORDS, _NEAR_SHARE = 2, 0.25  # "one small edit": so many content words may differ
_SAME_WORDS = 0.6  # the share of content words two questions hold to compare word order


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why two questions cannot share an answer: the rule that found it and a short reason."""

    kind: ConflictKind
    detail: str


def _show(items: Iterable[str]) -> str:
    return "{" + ", ".join(sorted(items)) + "}"


def _near(a: _Parse, b: _Parse, slot: Iterable[str] = ()) -> bool:
    """Whether the questions are one small edit apart: besides ``slot`` (the keys of what a
    check found different) at most a couple of content words differ, or a quarter of them."""
    slots = set(slot)
    rest = [w for w in a.content - b.content if w[0] == "~" or not b.has(w)]
    rest += [w for w in b.content - a.content if w[0] == "~" or not a.has(w)]
    rest = [w for w in rest if _variants(w).isdisjoint(slots)]
    return len(rest) <= max(_NEAR_WORDS, _NEAR_SHARE * len(a.content | b.content))


def _flips(a: _Parse, b: _Parse) -> list[tuple[int, str]]:
    """Opposites one question says one way and the other the other way: enable vs disable."""
    out = []
    for index in a.concepts.keys() & b.concepts.keys():
        mine, theirs = a.concepts[index], b.concepts[index]
        if len(mine) == 1 == len(theirs) and mine.keys() != theirs.keys():
            out.append((index, f"{next(iter(mine.values()))!r} vs {next(iter(theirs.values()))!r}"))
    said = {index for index, _ in out}
    for one, other, forward in ((a, b, True), (b, a, False)):
        for rest, word in one.prefixed.items():  # unset vs set, invalid vs valid
            senses = {index for index, _ in _CONCEPT.get(rest, ())}
            found = rest in other.vocabulary and rest not in one.vocabulary
            if found and _stem(word) not in other.vocabulary and said.isdisjoint(senses):
                out.append((-1, f"{word!r} vs {rest!r}" if forward else f"{rest!r} vs {word!r}"))
    return out


def _kept(sequence: tuple[tuple[str, str], ...], shared: Counter[str]) -> list[tuple[str, str]]:
    """The words of a sequence that the other question says too, and every opposite."""
    left, out = shared.copy(), []
    for word, mark in sequence:
        if mark[0] == "~" or left[word] > 0:
            left[word] -= 1
            out.append((word, mark))
    return out


def _exchange(a: _Parse, b: _Parse) -> tuple[str, str, bool] | None:
    """Two runs of words that trade places around the same middle, all else the same ("A
    before B", "B before A"): the runs, and whether an opposite in the middle says it
    backwards ("B after A", "B slower than A"). Around and/or/with it is no exchange."""
    if len(a.content & b.content) < _SAME_WORDS * len(a.content | b.content):
        return None
    roles = [Counter(m for _, m in p.sequence if m == "&" or m in _MARKERS) for p in (a, b)]
    if roles[0] != roles[1]:  # "by", "of", "to" tell the roles: "called by" is no swap
        return None
    shared = Counter(w for w, _ in a.sequence) & Counter(w for w, _ in b.sequence)
    x, y = _kept(a.sequence, shared), _kept(b.sequence, shared)
    while x and y and x[0] == y[0]:
        x, y = x[1:], y[1:]
    while x and y and x[-1] == y[-1]:
        x, y = x[:-1], y[:-1]
    n = len(x)
    for first in range(1, n - 1) if n == len(y) else ():
        for last in range(1, n - first):
            if x[:first] != y[n - first :] or x[n - last :] != y[:last]:
                continue
            middle, other = x[first : n - last], y[last : n - first]
            marks = [m for _, m in middle]
            if marks == [m for _, m in other] and set(marks) != {"&"}:
                runs = [" ".join(w for w, _ in run) for run in (x[:first], x[n - last :])]
                return runs[0], runs[1], middle != other
    return None


def _check_negation(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    flips = _flips(a, b)
    if len(flips) == 1 and (swap := _exchange(a, b)) and swap[2]:  # A before B, B after A
        flips = []
    if a.negations != b.negations:  # "not enabled" and "disabled": a negation and a flip cancel
        if (len(flips) == 1 and abs(a.negations - b.negations) == 1) or not _near(a, b):
            return None
        return Conflict("negation", f"{a.negations} negations vs {b.negations}")
    return Conflict("negation", flips[0][1]) if flips and _near(a, b) else None


def _check_number(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    x, y = a.numbers, b.numbers
    if not (x or y):
        return None
    if x != y and (a.ones or b.ones):  # "one" alone is rarely a count: "one of the"
        x, y = x.copy(), y.copy()
        x["1"] -= 0 if b.numbers["1"] else a.ones
        y["1"] -= 0 if a.numbers["1"] else b.ones
        x, y = +x, +y
    if x != y and ((x and y) or _near(a, b)):  # a number on one side only: a small edit
        return Conflict("number", f"numbers {_show(x.elements())} vs {_show(y.elements())}")
    for value, units in a.units.items() if a.units != b.units else ():
        mine, theirs = units - {""}, b.units.get(value, frozenset()) - {""}
        if mine and theirs and mine != theirs:
            return Conflict("number", f"units of {value}: {_show(mine)} vs {_show(theirs)}")
    return None


def _check_date(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    if (a.dates or b.dates) and a.dates != b.dates and ((a.dates and b.dates) or _near(a, b)):
        dates = [_show(p.dates.elements()) for p in (a, b)]
        return Conflict("date", f"dates {dates[0]} vs {dates[1]}")
    if a.periods and b.periods and a.periods != b.periods:
        return Conflict("date", f"periods {_show(a.periods)} vs {_show(b.periods)}")
    return None


def _check_entity(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    """In one small edit: names each side lacks (a swap), or a name one side lacks where it
    says another word instead. Added context ("in graphops") replaces nothing."""
    if not (a.names or b.names or entities):
        return None
    ea = {k: frozenset[str]() for k in entities & a.vocabulary} | a.names
    eb = {k: frozenset[str]() for k in entities & b.vocabulary} | b.names
    only_a = {e for e, tails in ea.items() if not b.names_too(e, tails)}
    only_b = {e for e, tails in eb.items() if not a.names_too(e, tails)}
    if only_a and only_b and _near(a, b, only_a | only_b):
        return Conflict("entity", f"entities {_show(only_a)} vs {_show(only_b)}")
    for only, one, other in ((only_a, a, b), (only_b, b, a)):
        replaced = only - one.context
        instead = any(not one.has(w) for w in other.content if w[0] != "~")
        if replaced and instead and _near(a, b, replaced):
            sides = (_show(replaced), "{}") if one is a else ("{}", _show(replaced))
            return Conflict("entity", f"entities {sides[0]} vs {sides[1]}")
    return None


def _check_order(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    swap = _exchange(a, b)
    if swap is None or swap[2]:
        return None  # "A faster than B" is "B slower than A"
    return Conflict("order", f"{swap[0]!r} and {swap[1]!r} trade places")


def _check_topic(a: _Parse, b: _Parse, entities: frozenset[str]) -> Conflict | None:
    """The same frame around another subject: "Which page covers circuit breakers?" and
    "Which page covers token quotas and bulkheads?". The words both questions start and end
    with make up at least :data:`_FRAME` of the longer one, and what differs between them
    holds at least four content words in all, two on each side, that the other question
    lacks: one word swapped for another ("set" for "change") may be a synonym, and words
    of manner or time ("at once", "together") say nothing of the subject."""
    x, y = a.words, b.words
    start = 0
    while start < min(len(x), len(y)) and x[start][0] == y[start][0]:
        start += 1
    end = 0
    while end < min(len(x), len(y)) - start and x[-1 - end][0] == y[-1 - end][0]:
        end += 1
    if start + end < _FRAME * max(len(x), len(y)):
        return None
    only_a, only_b = _subject(x[start : len(x) - end], b), _subject(y[start : len(y) - end], a)
    only_a, only_b = only_a - only_b, only_b - only_a
    if min(len(only_a), len(only_b)) >= _SIDE_WORDS and len(only_a | only_b) >= _SUBJECT_WORDS:
        return Conflict("topic", f"subjects {_show(only_a)} vs {_show(only_b)}")
    return None


def _subject(words: tuple[tuple[str, str, str], ...], other: _Parse) -> set[str]:
    """The content words of one side's differing part that the other question lacks; what
    the other checks judge (negations, opposites, numbers, names) is theirs, not a subject."""
    return {
        stem
        for low, stem, kind in words
        if kind != "num"
        and low not in _STOP
        and low not in _ADVERBS
        and low not in _MARKERS
        and not low.endswith("n't")
        and stem not in _CONCEPT
        and not other.has(low)
    }


_ADVERBS = _words(  # how and when, not what: "asked at once" is "arrive together"
    "once together again still already ever often always usually sometimes now currently "
    "simply instead too even only later soon meanwhile anyway"
)
_FRAME = 0.3  # of the longer question's words, shared at its start and end
_SUBJECT_WORDS = 4  # content words in the two differing parts together
_SIDE_WORDS = 2  # ... and on each side

_Check = Callable[[_Parse, _Parse, frozenset[str]], "Conflict | None"]
_CHECKS: tuple[tuple[ConflictKind, _Check], ...] = (
    ("negation", _check_negation),
    ("number", _check_number),
    ("date", _check_date),
    ("entity", _check_entity),
    ("order", _check_order),
    ("topic", _check_topic),
)


@dataclass(frozen=True)
class Verifier:
    """Configurable; the defaults are what graphops uses.

    ``entities`` adds domain terms (lowercase; :func:`corpus_entities` builds them from the
    corpus) that are names although they look like ordinary words: "the guard" and "the
    budget" are two components, which no capital letter tells. More names mean more vetoes
    of paraphrases that swap a name for a related one, so the default adds none.
    ``checks`` picks the rules that may veto a match (all six by default).
    """

    entities: frozenset[str] = frozenset()
    checks: frozenset[ConflictKind] = _KINDS
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if unknown := set(self.checks) - _KINDS:
            raise ConfigurationError(
                f"Verifier(checks=...) got {_show(unknown)}; pick from {_show(_KINDS)}"
            )
        keys = frozenset(k for e in self.entities if (k := _SEP.sub("", e.casefold())))
        object.__setattr__(self, "_keys", keys)

    def conflict(self, cached: str, query: str) -> Conflict | None:
        """The first reason why the cached question's answer cannot serve the query, or None.

        Symmetric but for the order of the detail's two sides; the checks run in the order
        negation, number, date, entity, order, topic, and the first that vetoes names the kind.
        """
        a, b = _parse(cached), _parse(query)
        for kind, check in _CHECKS:
            if kind in self.checks and (found := check(a, b, self._keys)) is not None:
                return found
        return None


_DEFAULT = Verifier()


def conflict(cached: str, query: str) -> Conflict | None:
    """:meth:`Verifier.conflict` with the defaults graphops uses."""
    return _DEFAULT.conflict(cached, query)


def corpus_entities(texts: Iterable[str]) -> frozenset[str]:
    """Domain terms from documents: identifiers in backticks, ALL_CAPS/snake_case/CamelCase/dotted
    names, --flags, and capitalised words that are not sentence-initial, lowercased.

    Each line is read as a text of its own (a list item starts a sentence); headings, in
    Title Case, are skipped, and so are stop words, role words and numbers.
    """
    out: set[str] = set()
    for text in texts:
        for line in unicodedata.normalize("NFKC", text).translate(_QUOTES).splitlines():
            if line.lstrip().startswith("#"):
                continue
            tokens = [t for t in _tokenise(line.lstrip(">*-|+ ")) if t.kind != "quote"]
            names = _names(tokens)
            for t in tokens:
                if t.kind == "tick" and _TERM.fullmatch(term := t.low.strip("()[]{}<>,.:;")):
                    out.add(term)  # `graphops replay`, `--dry-run`, `guard`; not code
                elif t.kind not in ("part", "tick") and _SEP.sub("", t.low) in names:
                    out.add(t.low)
    terms = {e for e in out - _MARKERS - _STOP - _PER if len(e) > 1 and not e.isdigit()}
    return frozenset(e for e in terms if _stem(e) not in _CONCEPT)  # opposites: negation's
