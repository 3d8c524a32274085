"""The answer cache's lookup and store: what :class:`~graphops.policies.CachePolicy` does.

**Lookup** (the head's ``cache_lookup`` step, before any user node): the run's
question (``question_key``, else the last user message), the earlier turns of
its conversation, and a snapshot of everything else the answer depends on
(:class:`~graphops.cache.keys.CacheScope`: tenant, access scope, the user when
answers are private, the graph, the version of every prompt in
``prompt_names`` — pinned for the run, so its nodes use exactly those —, the
model chain and the corpus version). The exact tier is asked first; then, for
a single-turn question, the semantic tier within the partition, each candidate
held to its entry's threshold for δ and to the verifier
(:mod:`graphops.cache.decide`).

**A hit restores** ``restore`` (``answer`` and ``sources`` by default) as the
run that made the entry left them, the question under ``question_key`` when
the graph has that key, and, when it has ``messages``, the question as a
``HumanMessage`` (if it was asked as ``question``) and the answer as a fresh
``AIMessage`` (a new id; ``response_metadata["graphops_cache"]`` says it is
cached). The ops channel says ``cache: {hit, tier, similarity, age_s}``.

**Store** (as the run closes, after a normal end; never a refused, cached or
degraded run, nor one whose ``skip_if`` keys are true): the entry under the key
the lookup made, with its documents (the part of each source id before ``#``)
for the reverse index, and the tokens the run used (saved by every later hit).

A store or semantic tier that fails never fails the run: the lookup is a miss
and the store is skipped, each logged and on the step's span.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphops.cache.decide import Decision, decide
from graphops.cache.keys import CacheScope, exact_key, history_digest
from graphops.cache.store import CacheEntry, Observation
from graphops.errors import GraphopsError

if TYPE_CHECKING:
    import numpy as np

    from graphops.policies import CacheAnswer, CachePolicy
    from graphops.runtime import RunScope

__all__ = ["Lookup", "feedback", "lookup", "stale", "store"]

_log = logging.getLogger("graphops.cache")
_MISSING = object()


@dataclass(slots=True)
class Lookup:
    """What the lookup took, kept in the run's scope for the store at close."""

    key: str
    scope: CacheScope
    question: str  # as asked (stripped)
    asked_as_question: bool  # under question_key, not as the last message
    single_turn: bool
    vector: np.ndarray | None = None
    decision: Decision | None = None
    error: str | None = None  # why the lookup could not ask a tier
    not_stored: str | None = None  # why the store did not store, once it ran


def _field(state: Any, key: str) -> Any:
    if isinstance(state, Mapping):
        return state.get(key, _MISSING)
    return getattr(state, key, _MISSING)


def _question(policy: CachePolicy, state: Any) -> tuple[str, bool, list[tuple[str, str]]] | None:
    """The question, whether it came as ``question_key``, and the turns before it."""
    messages = _field(state, policy.messages_key) if policy.messages_key else _MISSING
    messages = list(messages) if isinstance(messages, list | tuple) else []
    asked = _field(state, policy.question_key)
    turns = [(str(getattr(m, "type", "")), str(getattr(m, "text", ""))) for m in messages]
    if isinstance(asked, str) and asked.strip():
        last = turns[-1] if turns else None
        if last is not None and last[0] == "human" and last[1].strip() == asked.strip():
            return asked.strip(), False, turns[:-1]  # the same question, already a message
        return asked.strip(), True, turns
    if turns and turns[-1][0] == "human" and turns[-1][1].strip():
        return turns[-1][1].strip(), False, turns[:-1]
    return None


def _snapshot(policy: CachePolicy, scope: RunScope) -> CacheScope:
    """The run's cache scope, with its prompt versions pinned for its nodes."""
    prompts: list[tuple[str, str]] = []
    if policy.prompts is not None and policy.prompt_names:
        from graphops.prompts.source import flagged_ref, prompt_overrides

        overrides = prompt_overrides()
        for name in policy.prompt_names:
            ref = overrides.get(name)
            prompt = policy.prompts.resolve(name, ref if ref is not None else flagged_ref(name))
            prompts.append((name, prompt.ref))
            if prompt.version is not None and name not in overrides:
                scope.prompt_pins[name] = prompt.version
    who = scope.identity
    return CacheScope(
        tenant=who.tenant,
        access=who.access,
        graph=scope.graph,
        prompts=tuple(prompts),
        models=policy.model_fingerprint(),
        corpus=policy.corpus(),
        user=who.user if policy.share == "user" else None,
    )


def lookup(policy: CachePolicy, state: Any, scope: RunScope) -> CacheAnswer | None:
    """The cached answer for this run, or None (see the module docstring)."""
    from graphops.policies import CacheAnswer

    asked = _question(policy, state)
    if asked is None:
        return None
    question, as_question, turns = asked
    cache_scope = _snapshot(policy, scope)
    key = exact_key(question, cache_scope, history_digest(turns))
    found = Lookup(key, cache_scope, question, as_question, not turns)
    scope.cache = found
    now = policy.clock()
    try:
        entry = policy.answer_store.get(key, now)
        if entry is not None:
            return CacheAnswer(
                _restored(policy, entry, found, "exact", 1.0, now),
                "exact",
                similarity=1.0,
                age_s=max(now - entry.created, 0.0),
                key=key,
            )
        if policy.semantic is None or not found.single_turn:
            return None
        found.vector = policy.semantic.embed(question)
        found.decision, entries = _semantic(policy, found, now)
        decision = found.decision
        if decision.key is None:
            return None
        entry = entries[decision.key]
        similarity = float(decision.similarity or 0.0)
        return CacheAnswer(
            _restored(policy, entry, found, "semantic", similarity, now),
            "semantic",
            similarity=similarity,
            age_s=max(now - entry.created, 0.0),
            key=entry.key,
        )
    except GraphopsError as exc:
        found.error = str(exc)
        _log.warning("cache lookup failed, run goes on uncached: %s", exc)
        return None


def _semantic(
    policy: CachePolicy, found: Lookup, now: float
) -> tuple[Decision, dict[str, CacheEntry]]:
    """The decision on the partition's candidates, and their live entries (read once)."""
    assert policy.semantic is not None and found.vector is not None
    candidates: list[tuple[float, str, str, Sequence[Observation]]] = []
    entries: dict[str, CacheEntry] = {}
    for similarity, key in policy.semantic.search(found.scope.partition, found.vector):
        entry = policy.answer_store.get(key, now)
        if entry is None:
            continue
        if policy.semantic_ttl_s is not None and now - entry.created > policy.semantic_ttl_s:
            continue
        entries[key] = entry
        candidates.append((similarity, key, entry.question, policy.answer_store.observations(key)))
    return decide(policy.error_bound, found.question, candidates), entries


def _restored(
    policy: CachePolicy, entry: CacheEntry, found: Lookup, tier: str, similarity: float, now: float
) -> dict[str, Any]:
    """The state update a hit writes (the step keeps only the graph's own keys of it)."""
    update = {**entry.values, policy.question_key: found.question}
    if policy.messages_key is not None:
        from langchain_core.messages import AIMessage, HumanMessage

        answer = entry.values.get(policy.answer_key)
        marker = {"tier": tier, "similarity": similarity, "age_s": max(now - entry.created, 0.0)}
        messages: list[Any] = [HumanMessage(found.question)] if found.asked_as_question else []
        messages.append(
            AIMessage(
                "" if answer is None else str(answer),
                id=str(uuid.uuid4()),
                response_metadata={"graphops_cache": marker},
            )
        )
        update[policy.messages_key] = messages
    return update


def store(policy: CachePolicy, state: Any, scope: RunScope) -> tuple[bool, str | None]:
    """Store the run's answer under its lookup's key: whether it was stored, and why not."""
    found = scope.cache
    if not isinstance(found, Lookup):
        return False, "not_looked_up"
    stored, reason = _store(policy, state, scope, found)
    found.not_stored = reason
    return stored, reason


def _store(
    policy: CachePolicy, state: Any, scope: RunScope, found: Lookup
) -> tuple[bool, str | None]:
    if found.error is not None:
        return False, "cache_unavailable"
    answer = _field(state, policy.answer_key)
    if answer is _MISSING or answer is None or answer == "":
        return False, "no_answer"
    for key in policy.skip_if:
        if _field(state, key) not in (_MISSING, None, False, "", 0):
            return False, f"skip_if:{key}"
    values = {k: v for k in policy.restore if (v := _field(state, k)) is not _MISSING}
    try:
        values = json.loads(json.dumps(values))
    except (TypeError, ValueError):
        return False, "not_json"
    sources = values.get(policy.sources_key) if policy.sources_key else None
    docs = tuple(sorted({str(s).split("#", 1)[0] for s in sources or ()}))
    now = policy.clock()
    entry = CacheEntry(
        key=found.key,
        partition=found.scope.partition,
        tenant=found.scope.tenant,
        question=found.question,
        values=values,
        docs=docs,
        corpus=found.scope.corpus,
        created=now,
        expires=now + policy.ttl_s if policy.ttl_s is not None else None,
        tokens=scope.usage.tokens,
    )
    try:
        policy.answer_store.put(entry)
        if policy.semantic is not None and found.single_turn:
            vector = found.vector
            if vector is None:
                vector = policy.semantic.embed(entry.question)
            policy.semantic.add(entry.partition, entry.question, entry.key, vector)
    except GraphopsError as exc:
        _log.warning("cache store failed, answer not cached: %s", exc)
        return False, "store_failed"
    return True, None


def stale(policy: CachePolicy, state: Any, scope: RunScope) -> Mapping[str, Any] | None:
    """The exact entry for a degrading run, expired or not; None when there is none."""
    found = scope.cache
    if not isinstance(found, Lookup):
        return None
    try:
        entry = policy.answer_store.get(found.key, 0.0)  # at time 0: expired entries too
    except GraphopsError:
        return None
    if entry is None:
        return None
    return _restored(policy, entry, found, "stale", 1.0, policy.clock())


def feedback(policy: CachePolicy, outcome: Mapping[str, Any], correct: bool) -> bool:
    """Record whether a hit (the ops channel's ``cache`` outcome) was right; False if no hit."""
    key, similarity = outcome.get("key"), outcome.get("similarity")
    if not outcome.get("hit") or not isinstance(key, str) or similarity is None:
        return False
    policy.answer_store.observe(key, Observation(float(similarity), bool(correct)))
    return True
