"""What a question says, parsed for the verifier's checks (:mod:`graphops.cache.verify`).

The checks compare two questions by what each says, so a question is parsed once
(:func:`_parse`, memoised: cached questions recur) into a :class:`_Parse`: how many
negation cues it has and which side of each pair of opposites it takes (enable or
disable, before or after), its un-/in-/non- words, its content and role words in order
(what the order check compares), its numbers with their units, its dates and periods (3
and three, 30s and 30 seconds, 20% and 0.2 are one number), the names it mentions
(identifiers, flags, paths, quoted terms, acronyms, capitalised names), and every word in
any case, spacing or number, so that a check can ask whether the other question says it
too. The word tables here say which words are which: stop words, negations, role words,
opposites, units, months, numerals. Like the checks it is pure and fast: standard
library, no model, no I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

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
