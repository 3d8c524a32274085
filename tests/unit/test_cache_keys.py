"""The exact key holds every field an answer depends on: leaving one out serves wrong answers."""

from __future__ import annotations

import dataclasses

import pytest

from graphops.cache.keys import (
    CacheScope,
    exact_key,
    history_digest,
    model_fingerprint,
    normalise,
)
from graphops.models.resilient import resilient_chat
from graphops.models.scripted import ScriptedChatModel

BASE = CacheScope(
    tenant="acme",
    access=("group-a",),
    graph="agentic_rag",
    prompts=(("answer", "answer@3"), ("route", "route@1")),
    models="model-fingerprint",
    corpus="corpus-v1",
)


@pytest.mark.parametrize(
    ("field", "other"),
    [
        ("tenant", "globex"),
        ("tenant", None),
        ("access", ("group-b",)),
        ("access", ()),
        ("graph", "other_graph"),
        ("prompts", (("answer", "answer@4"), ("route", "route@1"))),
        ("prompts", (("answer", "answer@3"),)),
        ("models", "another-model"),
        ("corpus", "corpus-v2"),
        ("corpus", None),
        ("user", "alice"),
    ],
)
def test_every_scope_field_changes_the_key(field: str, other: object) -> None:
    changed = dataclasses.replace(BASE, **{field: other})
    assert exact_key("What is X?", changed) != exact_key("What is X?", BASE)
    assert changed.partition != BASE.partition


def test_the_question_and_the_conversation_change_the_key_but_not_the_partition() -> None:
    assert exact_key("What is X?", BASE) != exact_key("What is Y?", BASE)
    earlier = history_digest([("human", "hello"), ("ai", "hi")])
    assert exact_key("and Redis?", BASE, earlier) != exact_key("and Redis?", BASE)
    assert history_digest([]) == ""


def test_equal_questions_share_a_key_after_normalising() -> None:
    assert exact_key("What is  X?", BASE) == exact_key("what is x", BASE)
    assert normalise("  \uff37hat is X?! ") == "what is x"
    assert normalise("is 1.0 = 1?") == "is 1.0 = 1"  # inner punctuation stays


def test_values_of_another_type_never_collide() -> None:
    # langgraph#8009: inputs differing only in type shared a key
    one = dataclasses.replace(BASE, corpus="1")
    assert one.fields() != dataclasses.replace(BASE, corpus=None).fields()
    split = dataclasses.replace(BASE, access=("a,b",))
    assert split.partition != dataclasses.replace(BASE, access=("a", "b")).partition


def test_a_model_fingerprint_covers_its_parameters_and_the_chain() -> None:
    a = ScriptedChatModel(respond=lambda m: "x", name_of_model="a")
    b = ScriptedChatModel(respond=lambda m: "x", name_of_model="b")
    assert model_fingerprint(a) == model_fingerprint(a)
    assert model_fingerprint("given") == "given"
    assert model_fingerprint(lambda: a) == model_fingerprint(a)
    chain_ab = resilient_chat({"a": a, "b": b})
    chain_ba = resilient_chat({"b": b, "a": a})
    assert model_fingerprint(chain_ab) != model_fingerprint(chain_ba)
    with pytest.raises(TypeError):
        model_fingerprint(42)
