"""The reference agentic RAG graph: the seed service's five nodes as plain LangGraph code.

This is the "existing RAG graph" graphops wraps. It uses nothing of graphops but
models, a retriever and prompt files, exactly as a team's own graph would:

```
START → generate_query_or_respond ─┬─ respond ─→ END
                                   └─ retrieve → grade_documents ─┬→ generate_answer → END
                                         ↑                        └→ rewrite_question ─┐
                                         └─────────────────────────────────────────────┘
```

* ``generate_query_or_respond`` routes with a JSON-constrained decision
  (``{"small_talk": bool}``), so even a 135M-parameter model can only ever say
  one of two things; small talk is answered directly, everything else retrieves,
  and an answer that cannot be parsed retrieves too, the safe choice for a
  documentation bot.
* ``grade_documents`` asks the model, one document at a time, whether it is relevant
  (again JSON-constrained; an unparseable verdict counts as "no").
* ``rewrite_question`` turns a question that found nothing relevant into a new
  search query, at most ``max_rewrites`` times; it goes straight back to
  ``retrieve`` (the seed went back through the router, which could then answer
  without documents).
* ``generate_answer`` answers from the relevant passages, numbered so the answer can
  cite them, and returns their chunk ids as ``sources``. When no passage was judged
  relevant after the last rewrite it answers from the best-scoring ones and says so
  with ``low_confidence``.

The graph takes ``{"question": "..."}`` or ``{"messages": [...]}`` (LangGraph
Studio's chat) and keeps the conversation in ``messages`` across turns of a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypedDict

import anyio.to_thread
from langchain_core.embeddings import Embeddings
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage
from langchain_core.retrievers import BaseRetriever
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from pydantic import BaseModel, ValidationError

from graphops.builder import build_observed_graph
from graphops.errors import InvalidInputError
from graphops.flags.resolver import Flags
from graphops.policies import BudgetPolicy, CachePolicy, DegradePolicy, GuardPolicy, NodeOps, Ops
from graphops.prompts import PromptSource, aprompt
from graphops.settings import Settings

__all__ = [
    "PROMPT_NAMES",
    "STAGE_LIMITS",
    "RagDeps",
    "RagState",
    "build_agentic_rag",
    "default_deps",
    "graph",
    "plain",
    "reference_cache",
    "reference_ops",
]

NO_STREAM = [
    "nostream"
]  # LangGraph's tag: keep routing/grading tokens out of stream_mode="messages"


class RetrievedDoc(TypedDict):
    """A retrieved chunk as kept in the state."""

    id: str
    title: str
    section: str
    text: str
    score: float
    relevant: bool | None


class RagState(TypedDict, total=False):
    """The graph's state; ``messages`` is the conversation, the rest is this turn."""

    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    query: str
    route: Literal["retrieve", "respond"]
    documents: list[RetrievedDoc]
    rewrites: int
    answer: str
    sources: list[str]
    low_confidence: bool


class RouteDecision(BaseModel):
    """What the router may say: nothing else parses.

    Asking "is this only small talk?" rather than "retrieve or respond?" is what a
    135M model gets right (15/15 documentation questions, 5/5 greetings measured,
    against 7/15 with the two-way choice).
    """

    small_talk: bool


class Grade(BaseModel):
    """The grader's verdict on one document."""

    relevant: Literal["yes", "no"]


@dataclass(frozen=True)
class RagDeps:
    """What the nodes need: a chat model, a retriever, the prompts and a few limits.

    ``prompts`` is a :class:`~graphops.prompts.PromptLibrary` (the files) or
    :class:`~graphops.prompts.RegistryPrompts` (the registry's labelled versions,
    the files as fallback): nodes fetch each prompt per run, so a moved label or a
    re-run's ``--prompt NAME=VERSION`` takes effect without rebuilding the graph.
    """

    chat: BaseChatModel
    retriever: BaseRetriever
    prompts: PromptSource
    top_k: int = 4
    max_rewrites: int = 1

    @classmethod
    def from_settings(
        cls, settings: Settings, progress: Callable[[int, int], None] | None = None
    ) -> RagDeps:
        """Models and retriever as configured; indexes ``settings.corpus`` if there is no index."""
        from graphops.corpus import CorpusRetriever
        from graphops.corpus.ensure import ensure_index
        from graphops.db import prepare
        from graphops.models import make_chat_model, make_embeddings
        from graphops.prompts import PromptLibrary, PromptRegistry, RegistryPrompts

        registry = PromptRegistry(prepare(settings))
        embeddings = make_embeddings(settings)
        ensure_index(settings, embeddings, progress)
        return cls(
            chat=make_chat_model(settings),
            retriever=CorpusRetriever(
                index_dir=settings.index_dir, embeddings=embeddings, k=settings.top_k
            ),
            prompts=RegistryPrompts(
                PromptLibrary(settings.prompts_dir), registry, label=settings.prompt_label
            ),
            top_k=settings.top_k,
            max_rewrites=settings.max_rewrites,
        )


class _Lazy:
    """Dependencies built on first use, once, so importing the graph loads no model.

    Building them reads settings, files and maybe the whole corpus, so the async
    path builds them in a worker thread: a node must never block the event loop
    (``langgraph dev`` refuses runs that do).
    """

    def __init__(self, source: RagDeps | Callable[[], RagDeps]) -> None:
        self._factory = source if callable(source) else None
        self._value = None if callable(source) else source
        self._lock = threading.Lock()

    def get(self) -> RagDeps:
        with self._lock:
            if self._value is None:
                assert self._factory is not None
                self._value = self._factory()
            return self._value

    async def aget(self) -> RagDeps:
        value = self._value
        return value if value is not None else await anyio.to_thread.run_sync(self.get)


def default_deps() -> RagDeps:
    """Dependencies from the ``GRAPHOPS_*`` environment."""
    from graphops.settings import load_settings

    return RagDeps.from_settings(load_settings())


def _question(state: RagState) -> tuple[str, list[AnyMessage]]:
    """This turn's question, and the message to add to the conversation if it is new.

    What a question may be (its length, its characters) is the guard's to check
    (``GuardPolicy``); here only that there is one.
    """
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    if isinstance(last, HumanMessage) and last.text.strip():
        return last.text.strip(), []
    if isinstance(state.get("question"), str) and state["question"].strip():
        question = state["question"].strip()
        return question, [HumanMessage(question)]
    raise InvalidInputError(
        "no question: pass {'question': ...} or end 'messages' with a user message"
    )


def token_ceiling(settings: Settings) -> int:
    """Tokens one run may use at most: its most LLM calls, each within the context size.

    The route, a grade per document of each retrieval, the rewrites and the
    answer: what a token quota reserves per run so that concurrent runs never
    take it past its limit (``token_estimate`` in a limits file overrides it).
    """
    calls = 1 + (settings.max_rewrites + 1) * settings.top_k + settings.max_rewrites + 1
    return calls * settings.n_ctx


def _context(docs: list[RetrievedDoc]) -> str:
    return "\n\n".join(
        f"[{i}] ({d['title']}{' > ' + d['section'] if d['section'] else ''})\n{d['text']}"
        for i, d in enumerate(docs, 1)
    )


def build_agentic_rag(deps: RagDeps | Callable[[], RagDeps]) -> StateGraph[RagState]:
    """The five-node graph over ``deps`` (or a function building them on first use)."""
    lazy = _Lazy(deps)

    async def prompt(d: RagDeps, name: str) -> Any:
        # this run's version of the prompt (files and registry are read off the event loop)
        return await aprompt(d.prompts, name)

    async def generate_query_or_respond(state: RagState) -> dict[str, Any]:
        d = await lazy.aget()
        question, new_messages = _question(state)
        turn: dict[str, Any] = {
            "question": question,
            "query": question,
            "documents": [],
            "rewrites": 0,
            "answer": "",
            "sources": [],
            "low_confidence": False,
        }
        router = await prompt(d, "route") | d.chat.with_structured_output(RouteDecision)
        try:
            decision = await router.ainvoke({"question": question}, {"tags": NO_STREAM})
            small_talk = decision.small_talk
        except (OutputParserException, ValidationError):
            small_talk = False
        if not small_talk:
            return {**turn, "route": "retrieve", "messages": new_messages}
        reply = await (await prompt(d, "respond") | d.chat).ainvoke({"question": question})
        return {
            **turn,
            "route": "respond",
            "answer": reply.text,
            "messages": [*new_messages, reply],
        }

    async def retrieve(state: RagState) -> dict[str, Any]:
        d = await lazy.aget()
        found = await d.retriever.ainvoke(state["query"], k=d.top_k)
        docs = {doc["id"]: doc for doc in state.get("documents") or []}
        for hit in found:
            chunk_id = str(hit.metadata.get("id") or hit.id)
            score = float(hit.metadata.get("score", 0.0))
            if chunk_id not in docs:
                docs[chunk_id] = RetrievedDoc(
                    id=chunk_id,
                    title=str(hit.metadata.get("title", "")),
                    section=str(hit.metadata.get("section", "")),
                    text=hit.page_content,
                    score=score,
                    relevant=None,
                )
            elif score > docs[chunk_id]["score"]:
                docs[chunk_id] = {**docs[chunk_id], "score": score}
        return {"documents": sorted(docs.values(), key=lambda doc: -doc["score"])}

    async def grade_documents(state: RagState) -> dict[str, Any]:
        d = await lazy.aget()
        docs = list(state.get("documents") or [])
        pending = [i for i, doc in enumerate(docs) if doc["relevant"] is None]
        grader = (await prompt(d, "grade") | d.chat.with_structured_output(Grade)).with_config(
            tags=NO_STREAM
        )
        verdicts = await grader.abatch(
            [{"question": state["question"], "document": docs[i]["text"]} for i in pending],
            return_exceptions=True,
        )
        for i, verdict in zip(pending, verdicts, strict=True):
            if isinstance(verdict, BaseException) and not isinstance(
                verdict, OutputParserException | ValidationError
            ):
                raise verdict
            docs[i] = {
                **docs[i],
                "relevant": isinstance(verdict, Grade) and verdict.relevant == "yes",
            }
        return {"documents": docs}

    def after_grading(state: RagState) -> Literal["generate_answer", "rewrite_question"]:
        if any(doc["relevant"] for doc in state.get("documents") or []):
            return "generate_answer"
        if state.get("rewrites", 0) < lazy.get().max_rewrites:
            return "rewrite_question"
        return "generate_answer"

    async def rewrite_question(state: RagState) -> dict[str, Any]:
        d = await lazy.aget()
        # one line is all a query needs; every provider honours stop sequences
        reply = await (await prompt(d, "rewrite") | d.chat.bind(stop=["\n"])).ainvoke(
            {"question": state["question"]}, {"tags": NO_STREAM}
        )
        lines = [line.strip(" \"'`") for line in reply.text.strip().splitlines() if line.strip()]
        query = lines[0][:300] if lines else ""
        return {"query": query or state["question"], "rewrites": state.get("rewrites", 0) + 1}

    async def generate_answer(state: RagState) -> dict[str, Any]:
        d = await lazy.aget()
        docs = state.get("documents") or []
        chosen = [doc for doc in docs if doc["relevant"]][: d.top_k]
        low_confidence = not chosen
        if low_confidence:
            chosen = docs[: d.top_k]
        reply = await (await prompt(d, "answer") | d.chat).ainvoke(
            {"context": _context(chosen), "question": state["question"]}
        )
        return {
            "answer": reply.text,
            "sources": [doc["id"] for doc in chosen],
            "low_confidence": low_confidence,
            "messages": [reply],
        }

    builder = StateGraph(RagState)
    builder.add_node(generate_query_or_respond)
    builder.add_node(retrieve)
    builder.add_node(grade_documents)
    builder.add_node(rewrite_question)
    builder.add_node(generate_answer)
    builder.add_edge(START, "generate_query_or_respond")
    builder.add_conditional_edges(
        "generate_query_or_respond",
        lambda state: state["route"],
        {"retrieve": "retrieve", "respond": END},
    )
    builder.add_edge("retrieve", "grade_documents")
    builder.add_conditional_edges("grade_documents", after_grading)
    builder.add_edge("rewrite_question", "retrieve")
    builder.add_edge("generate_answer", END)
    return builder


STAGE_LIMITS: dict[str, float] = {
    "generate_query_or_respond": 5.0,
    "retrieve": 10.0,
    "grade_documents": 15.0,
    "rewrite_question": 10.0,
    "generate_answer": 30.0,
}
"""Seconds each node's attempt may take (the seed service's stages), inside the run's budget."""


PROMPT_NAMES = ("route", "respond", "grade", "rewrite", "answer")
"""Every prompt the graph's nodes use: the cache keys on all their versions."""


class _DepsPrompts:
    """The prompt source of lazily built deps (a :class:`~graphops.prompts.PromptSource`)."""

    def __init__(self, deps: _Lazy) -> None:
        self._deps = deps

    def resolve(self, name: str, ref: int | str | None = None) -> Any:
        return self._deps.get().prompts.resolve(name, ref)


def reference_cache(
    deps: RagDeps | Callable[[], RagDeps] | _Lazy,
    settings: Settings | None = None,
    embeddings: Embeddings | None = None,
) -> CachePolicy:
    """The answer cache of the reference graph, keyed on everything its answer depends on.

    Its prompts (all of :data:`PROMPT_NAMES`), its chat model chain and the
    retriever's corpus version. A hit restores the answer, its sources, the passages
    they came from, the route and whether the answer was low-confidence. With
    ``settings``, answers are kept in the database (``settings.database``) and,
    unless ``GRAPHOPS_CACHE=exact``, similar questions are answered by the
    semantic tier on ``embeddings`` (the retriever's), under the error bound of
    ``GRAPHOPS_CACHE_DELTA`` with the thresholds measured for MiniLM
    (``GRAPHOPS_CACHE=off``: the command line passes no cache). Without settings
    (the module's ``graph``): in memory, exact tier only.
    """
    lazy = deps if isinstance(deps, _Lazy) else _Lazy(deps)
    answers: Any = None
    semantic: Any = None
    bound: Any = None
    ttl: float | None = 86_400.0
    if settings is not None:
        from graphops.cache.calibrate import minilm_bound
        from graphops.cache.factory import answer_store, semantic_tier

        answers = answer_store(settings)
        ttl = settings.cache_ttl
        bound = minilm_bound(settings.cache_delta)
        if settings.cache == "on" and embeddings is not None:
            semantic = semantic_tier(settings, embeddings)
    return CachePolicy(
        answers=answers,
        semantic=semantic,
        error_bound=bound,
        ttl_s=ttl,
        semantic_ttl_s=ttl,
        prompts=_DepsPrompts(lazy),
        prompt_names=PROMPT_NAMES,
        restore=("answer", "sources", "low_confidence", "route", "documents"),
        model=lambda: lazy.get().chat,
        corpus_version=lambda: lazy.get().retriever.corpus_version,  # type: ignore[attr-defined]
    )


def reference_ops(
    *,
    guard: GuardPolicy | None = None,
    embeddings: Embeddings | None = None,
    settings: Settings | None = None,
    telemetry: Any = "default",
    cache: CachePolicy | None = None,
    flags: Flags | None = None,
) -> Ops:
    """The ops the reference graph runs with: guard, cache, a budget with stage limits, the ladder.

    ``cache`` is the answer cache (:func:`reference_cache`; none given: no cache);
    ``flags`` resolves each run's flags, and a flag named like one of the graph's
    prompts picks its version (none given: the labels decide).
    The budget is ``settings.run_timeout`` (60 s by default); the ladder answers from
    the retrieved passages with ``embeddings`` (the retriever's), else refuses politely.
    The stage limits apply to a remote chat model only: a local model's call times
    are the machine's, not a provider's health, and cutting one off frees no CPU (the
    llama.cpp call runs on in its thread). Without ``settings`` (the module's
    ``graph``, built before any setting is read) there are none either.
    """
    remote = settings is not None and settings.chat_model != "local"
    return Ops(
        guard=guard or GuardPolicy(),
        cache=cache,
        budget=BudgetPolicy(total_s=settings.run_timeout if settings is not None else 60.0),
        degrade=DegradePolicy(embeddings=embeddings),
        nodes={n: NodeOps(timeout=s) for n, s in STAGE_LIMITS.items()} if remote else {},
        telemetry=telemetry,
        flags=flags,
    )


class _DepsEmbeddings(Embeddings):
    """The retriever's embeddings of lazily built deps: the ladder's, loaded when it first ranks."""

    def __init__(self, deps: _Lazy) -> None:
        self._deps = deps

    def _inner(self) -> Embeddings:
        return self._deps.get().retriever.embeddings  # type: ignore[attr-defined, no-any-return]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._inner().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._inner().embed_query(text)


_deps = _Lazy(default_deps)

plain: StateGraph[RagState] = build_agentic_rag(_deps.get)
"""The reference graph, uncompiled, on the configured models (loaded on first use)."""

graph: CompiledStateGraph[Any, Any, Any, Any] = build_observed_graph(
    plain,
    ops=reference_ops(embeddings=_DepsEmbeddings(_deps), cache=reference_cache(_deps)),
    name="agentic_rag",
)
"""The same graph through graphops: what ``langgraph.json`` serves."""
