"""The paraphrase set in evals/paraphrase.jsonl is well formed and big enough to measure with.

It labels pairs of questions about docs/: a cached question and a new query that either asks
the same thing (a hit: the cached answer is right for it) or only looks alike (a hard negative
that needs another answer). It measures the semantic answer cache's hit rate and precision,
which docs/caching.md reports, so a malformed line, a missing kind of negative or a shrunken
set would silently change those figures.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PARAPHRASES = ROOT / "evals" / "paraphrase.jsonl"
FIELDS = {"id", "cached", "query", "label", "kind", "doc"}
MISS_KINDS = {"negation", "number", "entity", "order", "other_doc"}
MIN_HITS, MIN_MISSES, MIN_PER_MISS_KIND, MIN_CACHED = 190, 150, 28, 100


def _entries() -> list[dict[str, Any]]:
    lines = PARAPHRASES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_every_entry_has_the_fields_with_allowed_values() -> None:
    for entry in _entries():
        assert set(entry) == FIELDS, entry
        assert all(isinstance(entry[field], str) and entry[field].strip() for field in FIELDS)
        assert entry["label"] in {"hit", "miss"}, entry
        if entry["label"] == "hit":
            assert entry["kind"] == "paraphrase", entry
        else:
            assert entry["kind"] in MISS_KINDS, entry
        assert entry["doc"].startswith("docs/"), entry
        assert (ROOT / entry["doc"]).is_file(), entry["doc"]


def test_ids_are_unique_and_pairs_are_distinct() -> None:
    entries = _entries()
    ids = [entry["id"] for entry in entries]
    assert len(ids) == len(set(ids))
    pairs = [(entry["cached"], entry["query"]) for entry in entries]
    assert len(pairs) == len(set(pairs))
    assert all(entry["query"] != entry["cached"] for entry in entries)


def test_no_miss_query_is_a_cached_question() -> None:
    entries = _entries()
    cached = {entry["cached"] for entry in entries}
    assert not [e["query"] for e in entries if e["label"] == "miss" and e["query"] in cached]


def test_the_set_has_enough_of_every_kind() -> None:
    entries = _entries()
    labels = Counter(entry["label"] for entry in entries)
    kinds = Counter(entry["kind"] for entry in entries if entry["label"] == "miss")
    assert labels["hit"] >= MIN_HITS
    assert labels["miss"] >= MIN_MISSES
    assert all(kinds[kind] >= MIN_PER_MISS_KIND for kind in MISS_KINDS), kinds
    assert len({entry["cached"] for entry in entries}) >= MIN_CACHED
