"""The semantic tier: GPTCache configured explicitly, a partition per scope, never a pip install."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from graphops.cache.decide import ErrorBound, decide, threshold_for
from graphops.cache.semantic import SemanticTier, no_runtime_installs
from graphops.cache.store import Observation
from graphops.errors import ConfigurationError
from graphops.models.hashing import HashEmbeddings


@pytest.fixture
def tier(tmp_path: Path) -> Any:
    semantic = SemanticTier(HashEmbeddings(), tmp_path / "semantic")
    yield semantic
    semantic.close()


def test_search_finds_only_its_own_partition(tier: SemanticTier) -> None:
    question = "how do quotas settle after a run"
    tier.add("tenant-a", question, "key-a", tier.embed(question))
    assert tier.search("tenant-b", tier.embed(question)) == []
    [(similarity, key)] = tier.search("tenant-a", tier.embed(question))
    assert key == "key-a" and similarity == pytest.approx(1.0, abs=1e-5)


def test_a_partition_survives_a_restart_from_its_file_or_the_scalar_store(
    tmp_path: Path,
) -> None:
    first = SemanticTier(HashEmbeddings(), tmp_path)
    first.add("p", "what is a bulkhead", "k1", first.embed("what is a bulkhead"))
    first.close()  # flushed: p.faiss is written
    assert (tmp_path / "p.faiss").exists()
    second = SemanticTier(HashEmbeddings(), tmp_path)
    assert [k for _, k in second.search("p", second.embed("what is a bulkhead"))] == ["k1"]
    second.add("q", "what is a quota", "k2", second.embed("what is a quota"))
    second._scalar.close()  # a crash: q never flushed, its rows are in the scalar store
    third = SemanticTier(HashEmbeddings(), tmp_path)
    assert [k for _, k in third.search("q", third.embed("what is a quota"))] == ["k2"]
    third.close()


def test_forgotten_rows_are_not_found_again(tier: SemanticTier) -> None:
    tier.add("p", "what is a bulkhead", "k1", tier.embed("what is a bulkhead"))
    assert tier.count("p") == 1
    tier.forget("p", [1])
    assert tier.search("p", tier.embed("what is a bulkhead")) == []


def test_gptcache_never_installs_anything(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every backend GPTCache needs is declared; a missing one fails, it never runs pip."""
    calls: list[Any] = []
    real = subprocess.check_call

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "check_call", spy)
    semantic = SemanticTier(HashEmbeddings(), tmp_path)
    semantic.add("p", "q", "k", semantic.embed("q"))
    semantic.search("p", semantic.embed("q"))
    semantic.close()
    assert calls == []
    import gptcache.utils

    no_runtime_installs()
    with pytest.raises(ConfigurationError, match="never installs"):
        gptcache.utils._check_library("a_module_nobody_has_graphops", prompt=True)
    assert calls == []


def test_bad_configuration_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="Embeddings"):
        SemanticTier(object(), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="top_k"):
        SemanticTier(HashEmbeddings(), tmp_path, top_k=0)


def test_the_threshold_is_the_lowest_that_keeps_the_estimated_error_under_delta() -> None:
    clean = [(0.99 - i * 0.001, True) for i in range(100)]
    assert threshold_for(clean, 0.02) == pytest.approx(0.99 - 99 * 0.001)
    assert threshold_for(clean[:10], 0.02) == float("inf")  # ten clean points prove nothing
    noisy = [*clean, (0.80, False), (0.79, True)]
    assert threshold_for(noisy, 0.02) == pytest.approx(0.79)  # 1 wrong in 102: (1+1)/104
    assert threshold_for([*clean, (0.8, False), (0.8, False)], 0.02) == pytest.approx(0.891)
    with pytest.raises(ConfigurationError, match="delta"):
        ErrorBound(delta=0)


def test_an_entry_learns_its_own_threshold_from_feedback() -> None:
    bound = ErrorBound(delta=0.02, points=tuple((0.9, True) for _ in range(100)))
    assert bound.threshold == pytest.approx(0.9)
    wrong_at_095 = [Observation(0.95, False)]
    assert bound.entry_threshold(wrong_at_095) > 0.95
    many_right = [Observation(0.8, True) for _ in range(60)]
    assert bound.entry_threshold(many_right) == pytest.approx(0.8)
    assert bound.entry_threshold(many_right[:5]) == pytest.approx(0.9)


def test_decide_takes_the_best_candidate_the_verifier_lets_through() -> None:
    bound = ErrorBound(delta=0.02, points=tuple((0.8, True) for _ in range(100)))
    candidates = [
        (0.97, "k-disable", "How do I disable the cache?", []),
        (0.90, "k-enable", "how can the cache be enabled", []),
        (0.70, "k-far", "What is a quota?", []),
    ]
    decision = decide(bound, "How do I enable the cache?", candidates)
    assert decision.key == "k-enable"
    assert [c.kind for c in decision.rejected] == ["negation"]
    assert decide(bound, "How do I enable the cache?", candidates[2:]).key is None


def test_partitions_hold_half_precision_vectors_and_still_forget_rows(tier: SemanticTier) -> None:
    import faiss

    tier.add("p", "what is a bulkhead", "k1", tier.embed("what is a bulkhead"))
    index = tier._managers["p"].v._index
    assert isinstance(faiss.downcast_index(index.index), faiss.IndexScalarQuantizer)
    [(similarity, _)] = tier.search("p", tier.embed("what is a bulkhead"))
    assert similarity == pytest.approx(1.0, abs=2e-3)
    tier.forget("p", [1])
    assert tier.count("p") == 0


def test_the_settings_tier_keeps_gptcache_out_of_graphops_database(tmp_path: Path) -> None:
    from graphops.cache.factory import semantic_tier
    from graphops.settings import Settings

    settings = Settings(data_dir=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none")
    tier = semantic_tier(settings, HashEmbeddings())
    assert tier.url == f"sqlite:///{tmp_path / 'cache' / 'semantic.sqlite'}"
    assert tier.directory == tmp_path / "cache"
