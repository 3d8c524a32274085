"""The cheap verifier of the semantic cache: can two similar questions share an answer?

Embedding similarity puts "How do I enable the cache?" next to "How do I disable the
cache?", and next to questions that differ only in a number, a date, a name or the order
of two things. Serving one's answer for the other is a wrong answer, while a veto costs
only a cache miss, so a match above the similarity threshold is vetoed when
:func:`conflict` finds the two cannot share an answer. It is pure and fast (standard
library, no model, no I/O): a text is parsed once (memoised: cached questions recur) and
six checks compare two parses.

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
from functools import lru_cache
from typing import Literal, NamedTuple, get_args

from graphops.errors import ConfigurationError

__all__ = ["Conflict", "ConflictKind", "Verifier", "conflict", "corpus_entities"]

ConflictKind = Literal["negation", "number", "date", "entity", "order", "topic"]
_KINDS: frozenset[ConflictKind] = frozenset(get_args(ConflictKind))

_TOKEN = re.compile(
    r"`(?P<tick>[^`\n]+)`|\"(?P<quote>[^\"\n]+)\"|(?<![\w'])'(?P<sq>[^'\n]+)'(?!\w)"
    r"|(?P<flag>--[A-Za-z][\w-]*)|(?P<path>(?<![\w.])(?:~|\.{1,2})?/[\w.\-/]+)"
    r"|(?P<iso>\d{4}-\d{1,2}-\d{1,2})(?![\d-])"
    r"|(?P<num>\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:[.:]\d+)*)(?P<suffix>%|[A-Za-z]+\b)?"
    r"|(?P<word>\w+(?:'\w+|[-./@]\w+)*)|(?P<punct>[,;:?!.])"
)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_CAMEL = re.compile(r"[a-z][A-Z]|[A-Z]{2}[a-z]")  # LangGraph, SQLite
_NAMED = re.compile(r"[_./@\d]")  # snake_case, dotted.name, a/path, hit@k, v2
_PREFIX = re.compile(r"(un|non|dis|in|im|de)-?(\w+)")
_PREFIX_REST = {"un": 3, "non": 4, "dis": 4, "in": 5, "im": 5, "de": 6}  # letters after it
_SPLIT = re.compile(r"[-/]")
_SEP = re.compile(r"[\W_]+")
_VOWEL = re.compile(r"[aeiouy]")
_TERM = re.compile(r"(?:--)?\w[\w.\-/@:]*(?: --?\w[\w.\-/@:]*| \w[\w.\-/@:]*){0,2}")


def _words(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


def _in_order(spec: str, separator: str | None = None) -> list[str]:
    return spec.split(separator)


def _table(spec: str) -> dict[str, str]:
    """'key: form form; key: form' -> {form: key}."""
    pairs = (entry.split(":") for entry in spec.split(";"))
    return {form: key.strip() for key, forms in pairs for form in forms.split()}


_STOP = _words(
    "a an the i me my we our you your it its is are was were be been being am do does did "
    "have has had can could should would will shall may might must how what which who whom "
    "whose why when where that this these those there here of in on at by for with about as "
    "and or but if so then to from please thanks thank hi hello wonder wondering curious tell "
    "know want need like just some any all each every also way thing something anything many "
    "much possible able explain help quick both either actually really exactly etc one it's "
    "i'm i'd i've let get yet already still only even ever again"
)
_NEGATION = _words(
    "not no never none nothing nobody nowhere neither nor without cannot unless dont doesnt "
    "isnt arent wasnt werent cant wont didnt shouldnt wouldnt couldnt hasnt havent"
)
_SYMMETRIC = _words("and or nor vs versus with between")  # "A and B" is "B and A"
_ROLES = _words("of to from by for in on at into onto over than under via as about")
_MARKERS = _NEGATION | _SYMMETRIC | _ROLES  # kept in the word order: they tell the roles
_DETERMINER = _words("the a an its my our your their this that every each")
_CONTEXT = _words("in with using via for on inside within through under from")
_TURN = _words("turn turned turns turning switch switched toggle is are be stay")
_ON_AFTER = _words(". ? ! , ; by again")  # "on" that ends a phrase: switched on, on by default
_UNIT = _table(
    "s: s sec secs second seconds; ms: ms msec millisecond milliseconds; h: h hr hrs hour hours;"
    "min: m min mins minute minutes; d: d day days; w: w wk week weeks; mo: mo month months;"
    "y: y yr yrs year years; %: % percent pct; kb: kb kib; mb: mb mib; gb: gb gib; x: x"
)
_PERIOD = _table("h: hourly; d: daily nightly; w: weekly; mo: monthly; y: yearly annually")
_PER = _words("per a an each every one")
_SCALE = {"hundred": 100, "thousand": 1000, "k": 1000, "million": 1_000_000}
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
_TEENS, _TENS = "fifteen sixteen seventeen eighteen nineteen", "twenty thirty forty fifty sixty"
_NUMERAL = {w: i for i, w in enumerate(_in_order(f"{_UNITS} {_TEENS}"))}
_NUMERAL |= {w: 10 * i for i, w in enumerate(_in_order(f"{_TENS} seventy eighty ninety"), 2)}
_NUMERAL |= {"once": 1, "twice": 2, "thrice": 3, "dozen": 12}
_ORDINAL = {w: i for i, w in enumerate(_in_order("second third fourth fifth sixth"), 2)}
_MONTHS = "january february march april may june july august september october november december"
_MONTH = {m: i for i, m in enumerate(_in_order(_MONTHS), 1)}
_FULL_MONTHS = frozenset(_MONTH)
_MONTH |= {m[:3]: i for m, i in _MONTH.items() if m not in ("march", "may")} | {"sept": 9}
_DAYS = _words("monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday")
_OPPOSITES = _in_order(  # a concept each: the words of one side | the words of the other
    "enable enabled activate on | disable deactivate off; before | after; first | last;"
    "allow permit accept admit grant | deny block forbid refuse reject ban; hit | miss;"
    "include inclusive | exclude exclusive; input | output; local | remote; global | local;"
    "max maximum most largest highest | min minimum least smallest lowest; true | false;"
    "start begin resume | stop end halt pause finish; open | close closed shut; hard | soft;"
    "sync synchronous synchronously | async asynchronous asynchronously; fresh | stale;"
    "succeed success successful | fail failure; add insert create | remove delete drop;"
    "read | write wrote written; new newer newest | old older oldest; more | less fewer;"
    "increase raise grow | decrease reduce lower shrink; above higher | below lower;"
    "inside | outside; upper | lower; fast faster fastest | slow slower slowest;"
    "large larger big bigger | small smaller; public | private; online | offline;"
    "required mandatory | optional; same identical | different; static | dynamic;"
    "import | export; encode | decode; upgrade | downgrade",
    ";",
)
_NEAR_WORDS, _NEAR_SHARE = 2, 0.25  # "one small edit": so many content words may differ
_SAME_WORDS = 0.6  # the share of content words two questions hold to compare word order


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A crude suffix stemmer: enough that enables, enabled and enabling meet at "enabl"."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith(("ies", "ied")):
        return word[:-3] + "i"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and not word.endswith(("ss", "us", "is", "eed")):
            base = word[: -len(suffix)]
            if suffix == "es" and not base.endswith(("s", "x", "z", "ch", "sh")):
                base = word[:-1]
            if len(base) < 2 or not _VOWEL.search(base):
                return word
            if suffix in ("ing", "ed") and len(base) > 2 and base[-1] == base[-2] not in "lsdzf":
                base = base[:-1]  # stopped -> stop, but called -> call
            word = base
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word[:-1] + "i" if len(word) > 3 and word.endswith("y") else word


@lru_cache(maxsize=65536)
def _variants(word: str) -> frozenset[str]:
    key = _SEP.sub("", word)
    return frozenset((word, key, key + "s", key.removesuffix("s"), _stem(key)))


_CONCEPT: dict[str, list[tuple[int, int]]] = {}  # stem -> (concept, side), for each sense
for _index, _line in enumerate(_OPPOSITES):
    for _sign, _side in zip((1, -1), _line.split("|"), strict=True):
        for _word in _side.split():
            _CONCEPT.setdefault(_stem(_word), []).append((_index, _sign))
_STOP_STEMS = frozenset(_stem(w) for w in _STOP | _NEGATION)
_QUANTITY_WORDS = frozenset([*_UNIT, *_PERIOD, *_NUMERAL, *_ORDINAL, *_MONTH, *_DAYS, "week"])
_QUANTITY_WORDS |= {"month", "year"} | {d + "s" for d in _DAYS}
_NOT_ONE = _DETERMINER | {"which", "any", "no", "another"}  # "one" is no count after these
_NUMBER_SUFFIXES = frozenset([*_UNIT, *_SCALE, "", "st", "nd", "rd", "th"])  # 30s, 10k, 3rd
_NOT_NAMES = _STOP | frozenset(_MONTH) | _DAYS  # capitalised, still no names


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why two questions cannot share an answer: the rule that found it and a short reason."""

    kind: ConflictKind
    detail: str


class _Token(NamedTuple):
    kind: str  # word, part (of a hyphenated word), num, tick, quote, flag, path, iso, punct
    raw: str
    low: str
    stem: str
    suffix: str = ""
    initial: bool = False  # the first word of a sentence, whose capital says nothing


def _tokenise(text: str) -> list[_Token]:
    """The question's tokens; a quoted or backticked span is one term, then its own tokens."""
    out: list[_Token] = []
    initial = True
    for match in _TOKEN.finditer(text):
        name = "num" if match.lastgroup == "suffix" else match.lastgroup or ""
        kind, raw = "quote" if name == "sq" else name, match.group(name)
        parts = _SPLIT.split(raw) if kind == "word" and ("-" in raw or "/" in raw) else []
        path = "/" in raw and ("." in raw or raw.count("/") > 1)  # a/b.py, src/graphops/cache
        if kind in ("tick", "quote"):
            if len(raw.split()) <= 4 and any(c.isalpha() for c in raw):
                out.append(_Token(kind, raw, raw.casefold(), raw.casefold()))
            out += [t for t in _tokenise(raw) if t.kind != "punct"]
        elif parts and all(p.casefold() in _NUMERAL for p in parts):  # twenty-five
            out += [_Token("word", p, p.casefold(), p.casefold()) for p in parts]
        elif len(parts) > 1 and all(p.isalpha() or p.isdigit() for p in parts) and not path:
            if "/" not in raw and all(p.isalpha() for p in parts):  # rate-limit, half-open
                out.append(_Token("word", raw, raw.casefold(), raw.casefold(), "", initial))
            for p in parts:  # and each part: "half-open" is open, "top-5" has a 5
                low = p.casefold()
                out.append(_Token("num" if p.isdigit() else "part", p, low, _stem(low)))
        else:
            low = raw.casefold().removesuffix("'s")  # possessive: GRAPHOPS_TOP_K's
            out.append(_Token(kind, raw, low, _stem(low), match.group("suffix") or "", initial))
        initial = kind == "punct" and (initial or raw in ".?!:")
    return out


@dataclass(frozen=True, slots=True)
class _Parse:
    negations: int  # how many negation cues
    concepts: dict[int, dict[int, str]]  # concept -> side -> the word that said so
    prefixed: dict[str, str]  # un-/in-/non-/dis- words: the stem of the rest -> the word
    vocabulary: frozenset[str]  # stems, and runs of 1-3 words without separators: TOP_K
    context: frozenset[str]  # keys right after "in", "with", "for"...: added context
    content: frozenset[str]  # content words; an opposite as its concept ("~3")
    sequence: tuple[tuple[str, str], ...]  # (stem, mark) of content and role words in order;
    # the mark of an opposite is its concept, of and/or/with "&", of other words the stem
    numbers: Counter[str]
    ones: int  # how many of the 1s are the word "one", often no count ("one of the")
    units: dict[str, frozenset[str]]
    dates: Counter[str]
    periods: frozenset[str]
    names: dict[str, frozenset[str]]  # key -> tails of its segments (GRAPHOPS_TOP_K: topk)
    tails: frozenset[str]
    words: tuple[tuple[str, str, str], ...]  # (lowercase, stem, kind) of every word, in order

    def has(self, word: str) -> bool:
        """Whether a word or term is in this question, in any case, spacing or number."""
        return not _variants(word).isdisjoint(self.vocabulary)

    def names_too(self, key: str, tails: frozenset[str]) -> bool:
        """Whether a name (key, and the tails of its segments) is here as well: GRAPHOPS_TOP_K
        and top_k name one setting, gpt-4o and gpt-4o-mini two models."""
        return self.has(key) or key in self.tails or not tails.isdisjoint(self.vocabulary)


def _month(t: _Token) -> bool:
    """A month's name, not the verb "may", nor "dec" unless beside a number."""
    named = t.raw[0].isupper() and not t.initial
    return t.low in _FULL_MONTHS and (t.low not in ("may", "march") or named)


_Quantities = tuple[Counter[str], int, dict[str, frozenset[str]], Counter[str], frozenset[str]]


def _quantities(tokens: list[_Token]) -> _Quantities:
    """Numbers with their units, dates and periods: 3 and three are one number, and so are
    30s and 30 seconds, 20% and 0.2."""
    numbers, units, dates, periods = Counter[str](), dict[str, set[str]](), Counter[str](), set()
    ones, skip = 0, -1
    for i, t in enumerate(tokens):
        if (t.kind == "word" and t.low not in _QUANTITY_WORDS) or i == skip:
            continue
        prev = tokens[i - 1].low if i else ""
        after = tokens[i + 1].low if i + 1 < len(tokens) else ""
        if t.kind == "iso" or (t.kind == "word" and t.low.removesuffix("s") in _DAYS):
            dates[t.low.removesuffix("s")] += 1
        elif t.low in _MONTH and (prev[:1].isdigit() or after[:1].isdigit() or _month(t)):
            dates[f"month {_MONTH[t.low]}"] += 1
        elif t.low in ("week", "month", "year") and prev in ("last", "this", "next"):
            dates[f"{prev} {t.low}"] += 1
        elif t.low in _PERIOD or (prev in _PER and _UNIT.get(t.low, "%") in "s min h d w mo y"):
            periods.add(_PERIOD.get(t.low) or _UNIT[t.low])  # daily, per minute, a day
        if t.kind == "num" and t.low.count(".") < 3:  # 127.0.0.1 is an address
            value, suffix = t.low.replace(",", ""), t.suffix.casefold()
            if value.count(".") == 1 and ":" not in value:
                value = value.rstrip("0").rstrip(".")
            value = (value.lstrip("0") or "0") if value.isdigit() else value
            suffix = "-" if suffix in ("st", "nd", "rd", "th") else suffix
        elif t.low in _NUMERAL and t.kind == "word":
            if (t.low, prev) == ("once", "at") or (t.low == "one" and prev in _NOT_ONE):
                continue  # at once, which one
            number = _NUMERAL[t.low]
            if 20 <= number == number // 10 * 10 and 0 < _NUMERAL.get(after, 10) < 10:
                number, skip = number + _NUMERAL[after], i + 1  # twenty five, twenty-five
                after = tokens[i + 2].low if i + 2 < len(tokens) else ""
            value, suffix, ones = str(number), "", ones + (t.low == "one")
        elif t.low in _ORDINAL and not (t.low == "second" and (prev[:1].isdigit() or prev in _PER)):
            value, suffix = str(_ORDINAL[t.low]), "-"  # the third retry, ranked second
        else:
            continue
        unit = _UNIT.get(suffix or after, "")
        if (suffix or after) in _SCALE and value.replace(".", "").isdigit():
            value, unit = f"{float(value) * _SCALE[suffix or after]:.12g}", ""
        elif suffix not in ("", "-") and not unit:
            continue  # 4o, 3x86: part of a name
        if unit == "%" and value.replace(".", "").isdigit():
            value, unit = f"{float(value) / 100:.12g}", ""
        if value.isdigit() and int(value) <= 31 and (prev in _MONTH or after in _MONTH):
            dates[f"day {value}"] += 1
        elif value.isdigit() and 1900 <= int(value) <= 2099 and not unit:
            dates[f"year {value}"] += 1
        else:
            numbers[value] += 1
            units.setdefault(value, set()).add(unit)
    frozen = {value: frozenset(found) for value, found in units.items()}
    return numbers, ones, frozen, dates, frozenset(periods)


def _polarity(tokens: list[_Token]) -> tuple[int, dict[int, dict[int, str]], dict[str, str]]:
    """How many negation cues, which side of each opposite is said, un-/in-/non- words."""
    negations, concepts, prefixed = 0, dict[int, dict[int, str]](), dict[str, str]()
    for i, t in enumerate(tokens):
        if t.kind not in ("word", "part"):
            continue
        negations += t.kind == "word" and (t.low in _NEGATION or t.low.endswith("n't"))
        after = tokens[i + 1] if i + 1 < len(tokens) else None
        if t.low == "on" and not (  # a preposition, unless "turn it on", "on by default"
            (i and tokens[i - 1].low in _TURN) or after is None or after.low in _ON_AFTER
        ):
            continue
        for index, sign in _CONCEPT.get(t.stem, ()):
            concepts.setdefault(index, {}).setdefault(sign, t.low)
        match = _PREFIX.fullmatch(t.low) if t.kind == "word" else None
        if match and len(match[2]) >= _PREFIX_REST[match[1]]:
            prefixed[_stem(match[2])] = t.low
    return negations, concepts, prefixed


def _names(tokens: list[_Token]) -> dict[str, frozenset[str]]:
    """Named things: identifiers, flags, paths, quoted terms, acronyms, capitalised names."""
    words = [t for t in tokens if t.kind == "word" and t.raw[:1].isalpha() and t.raw != "I"]
    inner = [t for t in words if not t.initial]
    title = len(inner) >= 2 and sum(t.raw[:1].isupper() for t in inner) > 0.6 * len(inner)
    shout = len(words) >= 3 and sum(t.raw.isupper() for t in words) > 0.6 * len(words)
    found = set()
    for t in tokens:
        suffix = t.suffix.casefold()
        if t.kind in ("tick", "quote", "flag", "path"):
            found.add(t.low)
        elif t.kind == "num" and (t.low.count(".") >= 3 or suffix not in _NUMBER_SUFFIXES):
            found.add(t.low + suffix)  # 4o, 127.0.0.1
        elif t.kind != "word" or (t.raw.islower() and t.raw.isalpha()) or t.low in _NOT_NAMES:
            continue
        elif (
            (_NAMED.search(t.raw) and t.low not in ("e.g", "i.e"))
            or _CAMEL.search(t.raw)
            or (t.raw.isupper() and len(t.raw) > 1 and not shout)  # LLM, API
            or (t.raw[0].isupper() and t.raw[1:].islower() and not (t.initial or title or shout))
        ):
            found.add(t.low)
    names = {}
    for name in found:
        segments = [s for s in _SEP.split(name) if s]
        tails = ("".join(segments[i:]) for i in range(1, len(segments)))
        names["".join(segments)] = frozenset(t for t in tails if len(t) > 3)
    names.pop("", None)
    return names


@lru_cache(maxsize=8192)
def _parse(text: str) -> _Parse:
    """Everything the checks compare, from the question's tokens."""
    tokens = _tokenise(unicodedata.normalize("NFKC", text).translate(_QUOTES))
    words = [t for t in tokens if t.kind != "punct"]
    keys = [_SEP.sub("", t.low) for t in words]
    vocabulary = {"".join(keys[j : j + n]) for n in (1, 2, 3) for j in range(len(keys) - n + 1)}
    vocabulary.update(t.stem for t in words if t.kind != "part")
    context: set[str] = set()
    follow = False
    for j, t in enumerate(words):
        if follow and t.low not in _DETERMINER:
            context.update("".join(keys[j : j + n]) for n in (1, 2, 3))
        follow = t.low in _CONTEXT or (follow and t.low in _DETERMINER)
    sequence = []
    for t in words:
        if t.kind != "part" and (t.low in _MARKERS or t.stem not in _STOP_STEMS):
            sides = _CONCEPT.get(t.stem)
            word = "#" + t.low if t.kind == "num" else t.stem
            mark = f"~{sides[0][0]}" if sides else "&" if t.low in _SYMMETRIC else word
            sequence.append((word, mark))
    negations, concepts, prefixed = _polarity(tokens)
    numbers, ones, units, dates, periods = _quantities(tokens)
    content = frozenset(m for _, m in sequence if m != "&" and m not in _MARKERS)
    names = _names(tokens)
    tails = frozenset(t for found in names.values() for t in found)
    plain = tuple((t.low, t.stem, t.kind) for t in words if t.kind != "part")
    return _Parse(
        negations, concepts, prefixed, frozenset(vocabulary), frozenset(context), content,
        tuple(sequence), numbers, ones, units, dates, periods, names, tails, plain,
    )  # fmt: skip


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
