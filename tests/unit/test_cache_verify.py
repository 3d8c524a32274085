"""The cheap verifier: hard near-duplicates conflict, ordinary paraphrases do not.

The tables below hold one case per two lines, ``kind: cached question`` then the query,
indented. Every case runs both ways, (cached, query) and (query, cached): a conflict is
symmetric, and so is a paraphrase.
"""

from __future__ import annotations

from typing import cast

import pytest

from graphops.cache.verify import Conflict, ConflictKind, Verifier, conflict, corpus_entities
from graphops.errors import ConfigurationError


def _table(text: str) -> list[tuple[str, str, str]]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    cases = []
    for first, query in zip(lines[::2], lines[1::2], strict=True):
        kind, cached = first.split(": ", 1)
        cases.append((kind, cached.strip(), query))
    return cases


CONFLICTS = _table("""
negation: How do I enable the semantic cache?
          How do I disable the semantic cache?
negation: Does the guard refuse runs over the limit?
          Does the guard allow runs over the limit?
negation: Can graphops run without Redis?
          Can graphops run with Redis?
negation: Why doesn't the cache store degraded answers?
          Why does the cache store degraded answers?
negation: Is the semantic cache enabled by default?
          is the semantic cache disabled by default
negation: How do I turn the breaker off?
          How do I turn the breaker on?
negation: What happens on a cache hit?
          What happens on a cache miss?
negation: Should I use a local model for grading?
          Should I use a remote model for grading?
negation: How do I increase the retry budget?
          How do I decrease the retry budget?
negation: How do I add a provider to the chain?
          How do I remove a provider from the chain?
negation: Why is the breaker open?
          Why is the breaker closed?
negation: Is the limiter sync?
          Is the limiter async?
negation: What is the maximum batch size?
          What is the minimum batch size?
negation: Where do limits live when GRAPHOPS_REDIS_URL is unset?
          Where do limits live when GRAPHOPS_REDIS_URL is set?
negation: Does the guard run before the cache lookup?
          Does the guard run after the cache lookup?
negation: How do I serve stale answers?
          How do I serve fresh answers?
negation: Does the cache never expire entries?
          Does the cache expire entries?
negation: Which spans are included in the export?
          Which spans are excluded from the export?
negation: Is the prompt label required?
          Is the prompt label optional?
negation: Why are input tokens counted twice?
          Why are output tokens counted twice?
negation: Which errors does a ResilientChatModel retry?
          Which errors does a ResilientChatModel not retry?
negation: What does graphops runs prune do without --yes when stdin is not a terminal?
          What does graphops runs prune do without --yes when stdin is a terminal?
number:   Does graphops retry 3 times?
          Does graphops retry 5 times?
number:   How do I allow 100 requests per minute?
          How do I allow 1000 requests per minute?
number:   Set the breaker timeout to 30s
          Set the breaker timeout to 30 minutes
number:   What does a similarity of 0.9 mean?
          What does a similarity of 0.95 mean?
number:   Does langgraph 1.2.20 work with graphops?
          Does langgraph 1.3.0 work with graphops?
number:   How do I cap spend at 50% of the budget?
          How do I cap spend at 80% of the budget?
number:   Can a tenant hold two bulkhead slots?
          Can a tenant hold three bulkhead slots?
number:   What does HTTP 429 mean for the chain?
          What does HTTP 503 mean for the chain?
number:   What happens on the second retry?
          What happens on the third retry?
number:   Why does a run retry twice?
          Why does a run retry 3 times?
number:   retrieve the top 5 passages
          retrieve the top 10 passages
number:   How do I give each user 100k tokens?
          How do I give each user 10k tokens?
number:   What happens if GRAPHOPS_TOP_K is 0?
          What happens if GRAPHOPS_TOP_K is set?
date:     What changed in the 2026-12-01 release?
          What changed in the 2026-11-30 release?
date:     What was measured in 2025?
          What was measured in 2026?
date:     Which runs failed on Monday?
          Which runs failed on Friday?
date:     Show the runs from yesterday
          Show the runs from today
date:     What changed in the December release?
          What changed in the November release?
date:     How do I set a daily token quota?
          How do I set a monthly token quota?
date:     Which runs failed on March 3?
          Which runs failed on March 4?
entity:   How do I set GRAPHOPS_REDIS_URL?
          How do I set GRAPHOPS_DATABASE_URL?
entity:   Does the limiter work with Redis?
          Does the limiter work with Postgres?
entity:   How do I store checkpoints in SQLite?
          How do I store checkpoints in Postgres?
entity:   What does `graphops replay` print?
          What does `graphops ingest` print?
entity:   What does the --dry-run flag do?
          What does the --yes flag do?
entity:   How does ResilientChatModel pick a provider?
          How does ConcurrencyLimitedChatModel pick a provider?
entity:   What is in src/graphops/limits/redis.py?
          What is in src/graphops/limits/memory.py?
entity:   Does graphops support gpt-4o?
          Does graphops support gpt-4o-mini?
entity:   How do I export spans to Jaeger?
          How do I export spans to Prometheus?
entity:   What does the 'answer' prompt say?
          What does the 'grade' prompt say?
entity:   How is GRAPHOPS_TOP_K used?
          How is GRAPHOPS_N_CTX used?
entity:   Can I use Gemini as a fallback?
          Can I use Ollama as a fallback?
entity:   How many dimensions do the local embeddings have?
          How many dimensions do HashEmbeddings have?
order:    Does the guard run before the cache?
          Does the cache run before the guard?
order:    How do I migrate from Redis to Postgres?
          How do I migrate from Postgres to Redis?
order:    Does ResilientChatModel wrap the limiter?
          Does the limiter wrap ResilientChatModel?
order:    Is Redis faster than Postgres for limits?
          Is Postgres faster than Redis for limits?
order:    Should I prefer Redis over Postgres?
          Should I prefer Postgres over Redis?
order:    Does the retriever depend on the index?
          Does the index depend on the retriever?
order:    How do I use SQLite instead of Postgres?
          How do I use Postgres instead of SQLite?
order:    Can I convert a checkpoint into a span?
          Can I convert a span into a checkpoint?
order:    Does the budget call the breaker?
          Does the breaker call the budget?
order:    How do I copy prompts from staging to production?
          How do I copy prompts from production to staging?
order:    Is ConfigurationError a subclass of UserError?
          Is UserError a subclass of ConfigurationError?
order:    Are the MiniLM weights converted before the docs are embedded?
          Are the docs embedded before the MiniLM weights are converted?
order:    Does a remote chat model fall back to the local model?
          Does the local chat model fall back to a remote model?
topic:    Which page of the manual explains retry budgets and backoff?
          Which page of the manual explains answer caching and expiry?
topic:    What does the span exporter do when the database is locked?
          What does the answer store's background worker do when the database is locked?
topic:    Where are prompt versions kept when a deployment uses Postgres?
          Where are cached answers and their feedback kept when a deployment uses Postgres?
topic:    How do I see the run tree of a stored thread?
          How do I see the request limits of a stored tenant?
""")

PARAPHRASES = _table("""
hit: How do I enable the cache?
     how do i turn the cache on
hit: How do I enable the semantic cache?
     Please, how can I switch on the semantic cache in graphops?
hit: Why is the cache not enabled?
     Why is the cache disabled?
hit: Why was my run refused by the guard?
     Why didn't the guard admit my run?
hit: Why was my run refused by the guard?
     Why did the guard reject my run?
hit: Does graphops retry 3 times?
     does graphops retry three times
hit: Set the breaker timeout to 30s
     set breaker timeout 30 seconds
hit: How do I set GRAPHOPS_TOP_K?
     GRAPHOPS_TOP_K how to set
hit: How do I set GRAPHOPS_TOP_K?
     How do I change graphops top k
hit: What is the default value of GRAPHOPS_TOP_K?
     graphops top_k default?
hit: What happens if GRAPHOPS_N_CTX is set to 128?
     n_ctx 128 error?
hit: How do I configure Redis?
     I wonder how I configure Redis in graphops
hit: For a tenant, how do I purge the cache?
     how do I purge the cache for a tenant
hit: Does the guard run before the cache?
     Does the cache run after the guard?
hit: Is Redis faster than Postgres?
     Is Postgres slower than Redis?
hit: Is Redis faster than Postgres for limits?
     For limits, is Redis faster than Postgres?
hit: How do I migrate from Redis to Postgres?
     How do I migrate to Postgres from Redis?
hit: Does ResilientChatModel wrap the limiter?
     Is the limiter wrapped by ResilientChatModel?
hit: How do I use Redis and Postgres together?
     How do I use Postgres and Redis together?
hit: What does `graphops replay` print?
     what does graphops replay print
hit: How do I use Redis for rate limits?
     rate limits with redis
hit: How do I store checkpoints in Postgres?
     How can checkpoints be stored in Postgres?
hit: What is the default timeout of a run?
     What's a run's default timeout?
hit: How do I raise the retry budget?
     How do I increase the retry budget?
hit: How do I list the prompts in the registry?
     How can I see which prompts are in the registry?
hit: What does GRAPHOPS_DATABASE_URL do?
     What is GRAPHOPS_DATABASE_URL for?
hit: How do I replay a thread with `graphops replay`?
     how to use graphops replay on a thread
hit: How do I cache answers in SQLite?
     HOW DO I CACHE ANSWERS IN SQLITE
hit: How Do I Enable The Semantic Cache
     how do i enable the semantic cache
hit: Can I run the guard without Redis?
     Is it possible to run the guard with no Redis?
hit: How do I set a limit of 100 requests per minute?
     How do I limit to 100 requests a minute?
hit: How much does one call to gpt-4o cost?
     What is the cost of a gpt-4o call?
hit: Where are spans stored when Postgres is configured?
     With Postgres configured, where do spans get stored?
hit: How do I make `graphops ask` use Gemini?
     how to use gemini with graphops ask
hit: Does the breaker open after 5 failures?
     After five failures, does the breaker open?
hit: What is the rate limit for a tenant?
     what's the tenant rate-limit
hit: How does the budget give each node its deadline?
     How does each node get its deadline from the budget?
hit: How do I delete old runs?
     How do I remove old runs?
hit: Why does the breaker stay half-open?
     why is my breaker stuck half open
hit: What does graphops do when Redis is down?
     When Redis is down, what does graphops do?
hit: What is 127.0.0.1:6379 used for in the graphops tests?
     the redis at localhost:6379 in the graphops tests
hit: How many tokens does a retry take with percent=0.2?
     With a 20% retry budget, how many tokens does a retry take?
hit: What happens when several first questions are asked at once?
     What happens when several first questions arrive together?
hit: Why does the cache miss?
     Why is there no cache hit?
""")


@pytest.mark.parametrize(("kind", "cached", "query"), CONFLICTS)
def test_conflicts_are_vetoed_with_their_kind(kind: str, cached: str, query: str) -> None:
    found = conflict(cached, query)
    assert found is not None and found.kind == kind, found
    backwards = conflict(query, cached)
    assert backwards is not None and backwards.kind == kind, backwards


@pytest.mark.parametrize(("kind", "cached", "query"), PARAPHRASES)
def test_paraphrases_are_not_vetoed(kind: str, cached: str, query: str) -> None:
    assert conflict(cached, query) is None
    assert conflict(query, cached) is None


def test_the_tables_cover_every_kind() -> None:
    kinds = [kind for kind, _, _ in CONFLICTS]
    assert {cast(ConflictKind, kind) for kind in kinds} == Verifier().checks
    assert len(CONFLICTS) >= 60 and len(PARAPHRASES) >= 25


def test_a_question_never_conflicts_with_itself() -> None:
    for _, cached, query in CONFLICTS + PARAPHRASES:
        assert conflict(cached, cached) is None
        assert conflict(query, query) is None


def test_the_detail_says_what_differs() -> None:
    assert conflict("retry 3 times", "retry 5 times") == Conflict("number", "numbers {3} vs {5}")
    enable, disable = "How do I enable the cache?", "How do I disable the cache?"
    assert conflict(enable, disable) == Conflict("negation", "'enable' vs 'disable'")
    redis, postgres = "Does the limiter use Redis?", "Does the limiter use Postgres?"
    assert conflict(redis, postgres) == Conflict("entity", "entities {redis} vs {postgres}")
    found = conflict("Does the budget call the breaker?", "Does the breaker call the budget?")
    assert found == Conflict("order", "'budget' and 'breaker' trade places")


@pytest.mark.parametrize(
    ("cached", "query"),
    [
        ("retry 3 times", "retry three times"),
        ("a 30s timeout", "a 30 second timeout"),
        ("a 30s timeout", "a 30-second timeout"),
        ("at 1,000 requests", "at 1000 requests"),
        ("a 10k token quota", "a 10000 token quota"),
        ("a similarity of 0.50", "a similarity of 0.5"),
        ("twenty-five workers", "25 workers"),
        ("a 20% budget", "a 0.2 budget"),
        ("the 3rd retry", "the third retry"),
    ],
)
def test_numbers_written_differently_are_the_same_number(cached: str, query: str) -> None:
    assert conflict(cached, query) is None


def test_a_number_on_one_side_vetoes_only_a_small_edit() -> None:
    many = "How many passages does graphops retrieve?"
    assert conflict(many, "Why do I only get 4 chunks back from the retriever?") is None
    found = conflict("Does the limiter allow bursts?", "Does the limiter allow bursts of 10?")
    assert found == Conflict("number", "numbers {} vs {10}")


def test_domain_entities_make_ordinary_words_names() -> None:
    guard, budget = "Does the guard use Redis?", "Does the budget use Redis?"
    assert conflict(guard, budget) is None  # by default "guard" and "budget" are just words
    both = Verifier(entities=frozenset({"guard", "budget"}))
    assert both.conflict(guard, budget) == Conflict("entity", "entities {guard} vs {budget}")
    only_guard = Verifier(entities=frozenset({"guard"}))  # a name replaced by a word
    assert only_guard.conflict(guard, budget) == Conflict("entity", "entities {guard} vs {}")
    # added context replaces nothing: the query keeps the cached question's names
    assert (
        both.conflict("How does the guard use Redis?", "How does the guard use Redis now?") is None
    )
    in_graphops = Verifier(entities=frozenset({"graphops"}))
    top_k = "What variable sets GRAPHOPS_TOP_K?"
    assert in_graphops.conflict(top_k, "What variable sets GRAPHOPS_TOP_K in graphops?") is None


def test_checks_switch_rules_off() -> None:
    enable = "How do I enable the cache for 3 tenants?"
    disable = "How do I disable the cache for 5 tenants?"
    numbers = Verifier(checks=frozenset({"number"}))
    assert numbers.conflict(enable, disable) == Conflict("number", "numbers {3} vs {5}")
    negation = Verifier(checks=frozenset({"negation"}))
    assert negation.conflict(enable, disable) == Conflict("negation", "'enable' vs 'disable'")
    assert Verifier(checks=frozenset()).conflict(enable, disable) is None
    assert Verifier(checks=frozenset({"date", "entity", "order"})).conflict(enable, disable) is None


def test_an_unknown_check_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="pick from"):
        Verifier(checks=frozenset({"negation", "spelling"}))  # type: ignore[arg-type]


def test_corpus_entities_finds_the_domain_terms() -> None:
    terms = corpus_entities(
        [
            "Set `GRAPHOPS_TOP_K` to change retrieval. The guard keeps its counts in Redis;"
            " run `graphops replay` with --dry-run first.\n"
            "See graphops.cache.verify and ResilientChatModel, or the cache_store step.\n"
            "## Getting Started\n"
            "- Each `guard` decision is counted by Prometheus, `Ops(guard=GuardPolicy())` too.",
        ]
    )
    expected = ["graphops_top_k", "redis", "graphops replay", "--dry-run", "cache_store"]
    expected += ["graphops.cache.verify", "resilientchatmodel", "guard", "prometheus"]
    for term in expected:
        assert term in terms, term
    for word in ["set", "the", "see", "each", "getting", "started", "run", "first"]:
        assert word not in terms, word
    assert "ops(guard=guardpolicy())" not in terms  # code, not a term; its names are
    assert "guardpolicy" in terms
    assert terms == {t.lower() for t in terms}


def test_corpus_entities_feed_the_verifier() -> None:
    terms = corpus_entities(["The `guard` runs first; the `budget` gives each node a deadline."])
    verifier = Verifier(entities=terms)
    cached, query = "What does the guard do on a refusal?", "What does the budget do on a refusal?"
    assert conflict(cached, query) is None
    found = verifier.conflict(cached, query)
    assert found is not None and found.kind == "entity"
