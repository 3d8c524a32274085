"""The answer cache through build_observed_graph: hits restore the answer, misses store it.

The graph is one node over a scripted chat model, so every model call is counted.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, TypedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

from graphops import build_observed_graph
from graphops.cache.store import CacheEntry
from graphops.cache.store_memory import MemoryAnswerStore
from graphops.models.scripted import ScriptedChatModel
from graphops.policies import CachePolicy, Ops
from graphops.prompts import PromptLibrary

pytestmark = pytest.mark.anyio


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    answer: str
    sources: list[str]
    low_confidence: bool


def echo(messages: list[BaseMessage]) -> str:
    return "answer to " + messages[-1].text


def graph_on(chat: ScriptedChatModel, policy: CachePolicy, **extra: Any) -> Any:
    def generate(state: State) -> dict[str, Any]:
        question = state.get("question") or state["messages"][-1].text
        reply = chat.invoke([HumanMessage(question)])
        sources = extra.get("sources", ["docs/limits.md#quotas", "docs/limits.md#windows"])
        return {"answer": reply.text, "sources": sources, "messages": [reply]}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_edge(START, "generate")
    builder.add_edge("generate", END)
    return build_observed_graph(builder, ops=Ops(cache=policy, telemetry=None), name="one")


def tenant(name: str | None) -> dict[str, Any]:
    return {"metadata": {"tenant": name}} if name else {}


def test_thirty_questions_asked_ten_times_make_thirty_model_calls() -> None:
    chat = ScriptedChatModel(respond=echo)
    app = graph_on(chat, CachePolicy(model=chat))
    questions = [f"What is the limit number {i}?" for i in range(30)]
    for _ in range(10):
        for question in questions:
            out = app.invoke({"question": question})
            assert out["answer"] == "answer to " + question
    assert len(chat.calls) == 30


def test_without_the_cache_the_same_questions_make_three_hundred() -> None:
    chat = ScriptedChatModel(respond=echo)

    def generate(state: State) -> dict[str, Any]:
        return {"answer": chat.invoke([HumanMessage(state["question"])]).text}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_edge(START, "generate")
    app = build_observed_graph(builder, ops=Ops(telemetry=None))
    for _ in range(10):
        for i in range(30):
            app.invoke({"question": f"q{i}"})
    assert len(chat.calls) == 300


def test_a_hit_restores_the_answer_sources_and_a_fresh_ai_message() -> None:
    chat = ScriptedChatModel(respond=echo)
    app = graph_on(chat, CachePolicy(model=chat))
    first = app.invoke({"question": "How do quotas settle?"})
    second = app.invoke({"question": "how do quotas settle"})
    assert len(chat.calls) == 1
    assert second["answer"] == first["answer"]
    assert second["sources"] == first["sources"]
    assert second["question"] == "how do quotas settle"
    human, ai = second["messages"]
    assert isinstance(human, HumanMessage) and human.text == "how do quotas settle"
    assert isinstance(ai, AIMessage) and ai.text == first["answer"]
    assert ai.id != first["messages"][-1].id
    marker = ai.response_metadata["graphops_cache"]
    assert marker["tier"] == "exact" and marker["similarity"] == 1.0
    cached = second["graphops"]["cache"]
    assert cached["hit"] is True and cached["tier"] == "exact"
    assert cached["similarity"] == 1.0 and cached["age_s"] >= 0
    assert first["graphops"]["cache"] == {"hit": False, "tier": None}


def test_a_question_asked_as_a_message_gets_only_the_ai_message() -> None:
    chat = ScriptedChatModel(respond=echo)
    app = graph_on(chat, CachePolicy(model=chat))
    app.invoke({"question": "What is a bulkhead?"})
    out = app.invoke({"messages": [HumanMessage("What is a bulkhead?")]})
    assert [m.type for m in out["messages"]] == ["human", "ai"]
    assert len(chat.calls) == 1


def test_a_follow_up_in_a_conversation_is_keyed_with_its_conversation() -> None:
    chat = ScriptedChatModel(respond=echo)
    app = graph_on(chat, CachePolicy(model=chat))
    earlier = [HumanMessage("Tell me about Redis"), AIMessage("Redis is…")]
    app.invoke({"messages": [*earlier, HumanMessage("and its URL?")]})
    app.invoke(
        {
            "messages": [
                HumanMessage("Tell me about Postgres"),
                AIMessage("…"),
                HumanMessage("and its URL?"),
            ]
        }
    )
    assert len(chat.calls) == 2  # the same words after another conversation: not a hit
    app.invoke({"messages": [*earlier, HumanMessage("and its URL?")]})
    assert len(chat.calls) == 2


def test_a_new_corpus_version_never_serves_old_entries() -> None:
    chat = ScriptedChatModel(respond=echo)
    version = ["v1"]
    app = graph_on(chat, CachePolicy(model=chat, corpus_version=lambda: version[0]))
    app.invoke({"question": "q"})
    app.invoke({"question": "q"})
    version[0] = "v2"
    app.invoke({"question": "q"})
    assert len(chat.calls) == 2


def test_entries_expire_after_their_ttl() -> None:
    chat = ScriptedChatModel(respond=echo)
    now = [1000.0]
    app = graph_on(chat, CachePolicy(model=chat, ttl_s=60, clock=lambda: now[0]))
    app.invoke({"question": "q"})
    now[0] += 59
    app.invoke({"question": "q"})
    now[0] += 2
    app.invoke({"question": "q"})
    assert len(chat.calls) == 2


def test_answers_a_skip_if_key_marks_are_not_stored() -> None:
    chat = ScriptedChatModel(respond=echo)

    def generate(state: State) -> dict[str, Any]:
        return {"answer": chat.invoke(state["question"]).text, "low_confidence": True}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_edge(START, "generate")
    skipping = CachePolicy(model=chat, skip_if=("low_confidence",))
    app = build_observed_graph(builder, ops=Ops(cache=skipping, telemetry=None))
    app.invoke({"question": "q"})
    app.invoke({"question": "q"})
    assert len(chat.calls) == 2


def test_the_run_uses_the_prompt_versions_it_was_keyed_on(tmp_path: Any) -> None:
    (tmp_path / "answer.md").write_text("---\nvariables: [question]\n---\n[user]\n{question}\n")
    library = PromptLibrary(tmp_path)
    seen: list[int | None] = []
    from graphops.prompts.source import pinned_version

    class Versioned:
        version: ClassVar[list[int]] = [1]

        def resolve(self, name: str, ref: int | str | None = None) -> Any:
            import dataclasses

            number = ref if isinstance(ref, int) else self.version[0]
            return dataclasses.replace(library.get(name), version=number)

    source = Versioned()
    chat = ScriptedChatModel(respond=echo)

    def generate(state: State) -> dict[str, Any]:
        seen.append(pinned_version("answer"))
        return {"answer": chat.invoke(state["question"]).text}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_edge(START, "generate")
    policy = CachePolicy(model=chat, prompts=source, prompt_names=("answer",))
    app = build_observed_graph(builder, ops=Ops(cache=policy, telemetry=None))
    app.invoke({"question": "q"})
    source.version[0] = 2  # a label moved: a new key, and the run pinned to version 2
    app.invoke({"question": "q"})
    app.invoke({"question": "q"})
    assert seen == [1, 2]
    assert len(chat.calls) == 2


def test_a_store_that_fails_never_fails_the_run() -> None:
    from graphops.errors import StorageError

    class Broken(MemoryAnswerStore):
        def get(self, key: str, now: float) -> CacheEntry | None:
            raise StorageError("database unreachable")

        def put(self, entry: CacheEntry) -> None:
            raise StorageError("database unreachable")

    chat = ScriptedChatModel(respond=echo)
    app = graph_on(chat, CachePolicy(answers=Broken(), model=chat))
    assert app.invoke({"question": "q"})["answer"] == "answer to q"
    assert app.invoke({"question": "q"})["answer"] == "answer to q"
    assert len(chat.calls) == 2


def test_feedback_is_recorded_on_the_entry() -> None:
    chat = ScriptedChatModel(respond=echo)
    policy = CachePolicy(model=chat)
    app = graph_on(chat, policy)
    app.invoke({"question": "q"})
    hit = app.invoke({"question": "q"})["graphops"]["cache"]
    assert policy.feedback(hit, correct=False)
    assert policy.answers.observations(hit["key"])[0].correct is False
    assert not policy.feedback({"hit": False}, correct=True)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"ttl_s": 0}, "ttl_s"),
        ({"share": "everyone"}, "share"),
        ({"answers": object()}, "AnswerStore"),
        ({"restore": ("sources",)}, "answer_key"),
        ({"prompt_names": ("answer",)}, "prompts="),
        ({"error_bound": 0.02}, "ErrorBound"),
    ],
)
def test_bad_policies_say_what_to_fix(bad: dict[str, Any], message: str) -> None:
    from graphops.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=message):
        CachePolicy(**bad)


questions = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(lambda q: q.strip())
words = st.lists(
    st.sampled_from(["cache", "redis", "limit", "quota", "tenant", "key"]), min_size=1, max_size=5
).map(" ".join)


def tenant_graph(policy: CachePolicy) -> Any:
    """A graph whose answer names the tenant it was made for."""

    def generate(state: State, config: RunnableConfig) -> dict[str, Any]:
        who = (config.get("metadata") or {}).get("tenant")
        return {"answer": f"{who}:{state['question']}", "sources": []}

    builder = StateGraph(State)
    builder.add_node("generate", generate)
    builder.add_edge(START, "generate")
    return build_observed_graph(builder, ops=Ops(cache=policy, telemetry=None), name="t")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.one_of(questions, words)),
        min_size=1,
        max_size=8,
    )
)
def test_tenant_b_never_receives_tenant_a_s_answer(
    runs: list[tuple[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    from graphops.cache.decide import ErrorBound
    from graphops.cache.semantic import SemanticTier
    from graphops.models.hashing import HashEmbeddings

    # a semantic tier that serves almost anything similar: isolation must not rest on δ
    loose = ErrorBound(points=tuple((0.0, True) for _ in range(100)), floor=0.01)
    semantic = SemanticTier(HashEmbeddings(), tmp_path_factory.mktemp("semantic"))
    app = tenant_graph(CachePolicy(semantic=semantic, error_bound=loose))
    hits = 0
    for who, question in [*runs, *[("b" if w == "a" else "a", q) for w, q in runs]]:
        out = app.invoke({"question": question}, tenant(who))
        assert out["answer"].startswith(f"{who}:")
        hits += out["graphops"]["cache"]["hit"]
    semantic.close()
    assert hits >= len(runs) - len({(w, q.strip().casefold()) for w, q in runs})
