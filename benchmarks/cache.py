"""What the answer cache costs: an exact hit against the plain graph, the semantic tier at 100k.

    cd benchmarks && ../.venv/bin/python cache.py [--iterations N] [--rounds R] [--entries N]
        [--queries N] [--lookups N] [--reference-questions N] [--no-reference]

Prints three markdown tables, each section's wall time, and the machine's load
average at the start and the end: on a shared 2-core machine every figure moves
with it (the model's embeddings and Faiss' OpenMP threads most of all).

1. **An exact hit against the plain graph.** A plain 5-node graph of no-op nodes
   (no graphops) and the same graph through ``build_observed_graph`` with only
   the answer cache on (``Ops(cache=CachePolicy(...), telemetry=None)``), its
   question already cached, so every run ends at the head: per answer store
   (``MemoryAnswerStore``; ``SqlAnswerStore`` on a temporary SQLite file), then
   the same with telemetry on (spans to a batch processor with a no-op exporter,
   metrics on a private registry, as benchmarks/overhead.py has it). A plain
   graph of 1 no-op node shows LangGraph's floor for a run of one node. The
   graphs take turns on every invoke so drift hits all alike; the median over
   ``--iterations`` invokes per round, then the median over ``--rounds`` rounds,
   and the ratio to the plain 5-node graph of the same round (median, lowest and
   highest round). The target: a hit at most 1.0 of the plain 5-node invoke.

2. **The semantic tier at ``--entries`` (100,000) entries in one partition**, on
   the real local MiniLM embeddings (dimension 384). The 120 distinct cached
   questions of evals/paraphrase.jsonl are embedded and added with
   ``SemanticTier.add`` and their entries put in the answer store (the
   candidates); the rest are random unit vectors, which are nowhere near a real
   question. ``add`` commits one SQLite transaction per row (its rate is measured
   on a sample of 200 random rows and printed), far too slow for 100k, so the
   rest is filled **through the tier's internals, in this benchmark only**: the
   rows GPTCache's ``SQLStorage._insert`` would write (question with its
   embedding, answer, session), bulk-inserted into its tables with SQLAlchemy
   Core in chunks, the vectors given to the partition's Faiss store with
   ``mul_add`` in chunks, and the tier's row → key map filled as ``add`` fills
   it. The tier is made with ``flush_s`` of an hour, so no index file is
   written while filling or measuring. The memory answer store holds an entry
   for every row; the SQL one only the candidates' (a primary-key read costs the
   same either way). The bulk fill bypasses ``add``, so the partition is then
   re-built as inverted lists with ``tier.reindex`` (what ``add`` does once a
   partition is large; timed), and both indexes are measured on the same
   queries, the exact one kept aside. Per query (``--queries``, 200 by default,
   drawn from evals/paraphrase.jsonl's paraphrases and near misses): (b)
   ``tier.embed``, then (a) ``tier.search`` on each index (Faiss on one OpenMP
   thread, as the tier sets it; a row with two, Faiss' default here, for the
   exact index), how often the inverted lists find the exact index's nearest
   question (and among the queries whose nearest question is at least 0.7
   similar, the ones that could hit), and (c) the whole ``CachePolicy.lookup``
   on the first ``--lookups`` (60) of them, on each index (exact tier miss,
   embed, search, each candidate's entry and feedback read, the decision under
   MiniLM's calibrated error bound for δ = 0.02, or a fixed 0.85 when the
   shipped points allow no threshold, so that hits take the verifier and the
   entry's read) on the memory store and on the SQL store. Median and p95 in
   ms; the target is below 20 ms. The index's memory (``ntotal x dim x 2``
   bytes: both kinds hold half-precision vectors) and the fill times are
   printed too.

3. **A hit against a full run of the reference graph** (skip with
   ``--no-reference``): the reference RAG graph on the local SmolLM2 model,
   through ``build_observed_graph`` with ``reference_ops`` and
   ``reference_cache`` (SQL answer store and semantic tier in a temporary data
   directory, the corpus index copied from the project's .graphops/index when
   there is one; telemetry on, no exporter), ``ainvoke`` as LangGraph serves it.
   Low-confidence answers are stored too (``skip_if=()``, the default), so that
   every second run is a hit whatever the 135M model made of the passages. One
   warm-up question loads the model; then per question
   (``--reference-questions``, the first of evals/golden.jsonl) the first run
   (a miss: the whole graph) and the second (an exact hit), with
   ``await policy.drain()`` between them, untimed: in an event loop the store
   runs in the policy's background worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _graphs import five_nodes, line_of
from overhead import NullExporter, interleaved_ms
from prometheus_client import CollectorRegistry

from graphops.builder import build_observed_graph
from graphops.cache.answers import Lookup
from graphops.cache.keys import exact_key, history_digest
from graphops.cache.store import CacheEntry
from graphops.observe import Metrics, Telemetry
from graphops.policies import CachePolicy, Ops
from graphops.runtime import Identity, RunScope
from graphops.steps.channel import OPS_KEY, cache_hit

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How does the token quota settle after a run?"
ANSWER = {"answer": "It refunds what the run did not use.", "sources": ["docs/limits.md#quotas"]}
TARGET_MS = 20.0
CLOSE = 0.7  # a query whose nearest cached question is this similar could be a hit
STAND_IN = 0.85  # the semantic threshold used when MiniLM's shipped points allow none


def new_scope() -> RunScope:
    """A run's scope as the head opens one for a plain ``invoke`` (no identity in the config)."""
    return RunScope(run_id=uuid.uuid4().hex, graph="graph", identity=Identity())


def looked_up(policy: CachePolicy, question: str) -> Lookup:
    """What the policy's lookup keys ``question`` on in a run of the graph named ``graph``."""
    scope = new_scope()
    policy.lookup({"question": question}, scope)
    assert isinstance(scope.cache, Lookup)
    return scope.cache


def entry_for(found: Lookup, question: str, key: str, values: dict[str, Any]) -> CacheEntry:
    return CacheEntry(
        key=key,
        partition=found.scope.partition,
        tenant=found.scope.tenant,
        question=question,
        values=values,
        docs=tuple(sorted({s.split("#", 1)[0] for s in values.get("sources", ())})),
        created=time.time(),
        expires=None,
        tokens=500,
    )


def percentile(values: Sequence[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def print_rounds(title: str, rounds: list[dict[str, float]], base: str) -> None:
    """Markdown: the medians over the rounds, and each graph's ratio to ``base`` per round."""
    print(f"| {title} | median ms | ratio | rounds |")
    print("|---|---:|---:|---:|")
    for name in rounds[0]:
        value = statistics.median(r[name] for r in rounds)
        ratios = [r[name] / r[base] for r in rounds]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"| {name} | {value:.3f} | {statistics.median(ratios):.2f} | {spread} |")
    print()


# --------------------------------------------------------------- 1. exact hit vs plain graph
def exact_hit(folder: Path, iterations: int, rounds: int) -> None:
    from graphops.cache.store_sql import SqlAnswerStore
    from graphops.db import prepare_url

    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))

    def sql_store(name: str) -> SqlAnswerStore:
        return SqlAnswerStore(prepare_url(f"sqlite:///{folder / f'{name}.sqlite'}"))

    def cached(policy: CachePolicy, with_telemetry: bool) -> Any:
        found = looked_up(policy, QUESTION)
        policy.answer_store.put(entry_for(found, QUESTION, found.key, ANSWER))
        ops = Ops(cache=policy, telemetry=telemetry if with_telemetry else None)
        return build_observed_graph(five_nodes(), ops=ops)

    graphs = {
        "plain": five_nodes().compile(),
        "plain, 1 node": line_of(1).compile(),
        "exact hit, MemoryAnswerStore": cached(CachePolicy(), False),
        "exact hit, SqlAnswerStore (SQLite)": cached(CachePolicy(answers=sql_store("a")), False),
        "exact hit, MemoryAnswerStore, telemetry on": cached(CachePolicy(), True),
        "exact hit, SqlAnswerStore (SQLite), telemetry on": cached(
            CachePolicy(answers=sql_store("b")), True
        ),
    }
    state = {"x": 0, "question": QUESTION}
    for name, graph in graphs.items():
        out = graph.invoke(state)
        if name.startswith("exact hit") and (out.get("x") != 0 or not cache_hit(out)):
            raise SystemExit(f"{name}: the run was not answered from the cache: {out!r}")
    for graph in graphs.values():  # warm up
        for _ in range(300):
            graph.invoke(state)
    results = [interleaved_ms(graphs, lambda g: g.invoke(state), iterations) for _ in range(rounds)]
    print(
        f"### 1. Exact-tier hit against the plain graph ({iterations} invokes x {rounds} rounds)\n"
    )
    print_rounds("graph (invoke; 5 no-op nodes unless said)", results, "plain")
    telemetry.shutdown()


# --------------------------------------------------------------- 2. semantic tier at 100k
def _pairs() -> list[dict[str, Any]]:
    path = ROOT / "evals" / "paraphrase.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _bulk_fill(
    tier: Any, partition: str, questions: list[str], vectors: np.ndarray, keys: list[str]
) -> float:
    """Rows and vectors as ``SemanticTier.add`` makes them, in bulk (see the module docstring).

    Returns the seconds the scalar store's inserts took (the vectors' are the rest).
    """
    from gptcache.manager.vector_data.base import VectorData
    from sqlalchemy import func, insert, select

    storage = tier._scalar_store()  # GPTCache's SQLStorage
    manager = tier._manager(partition, create=True)
    question_table, answers, sessions = (
        storage._ques.__table__,
        storage._answer.__table__,
        storage._session.__table__,
    )
    with storage._engine.begin() as connection:
        first = int(
            connection.execute(select(func.coalesce(func.max(question_table.c.id), 0))).one()[0]
        )
    ids = np.arange(first + 1, first + 1 + len(keys), dtype=np.int64)
    started = time.perf_counter()
    chunk = 10_000
    for at in range(0, len(keys), chunk):
        part = range(at, min(at + chunk, len(keys)))
        with storage._engine.begin() as connection:
            connection.execute(
                insert(question_table),
                [
                    {
                        "id": int(ids[i]),
                        "question": questions[i],
                        "embedding_data": vectors[i].tobytes(),
                    }
                    for i in part
                ],
            )
            connection.execute(
                insert(answers),
                [{"question_id": int(ids[i]), "answer": keys[i], "answer_type": 0} for i in part],
            )
            connection.execute(
                insert(sessions),
                [
                    {
                        "question_id": int(ids[i]),
                        "session_id": partition,
                        "session_question": questions[i],
                    }
                    for i in part
                ],
            )
    scalar_s = time.perf_counter() - started
    for at in range(0, len(keys), chunk):
        end = min(at + chunk, len(keys))
        manager.v.mul_add([VectorData(id=int(ids[i]), data=vectors[i]) for i in range(at, end)])
    for row, key in zip(ids.tolist(), keys, strict=True):
        tier._keys[(partition, row)] = key
    tier._empty.discard(partition)
    tier._dirty.setdefault(partition, time.monotonic())
    return scalar_s


def semantic(folder: Path, entries: int, queries: int, lookups: int) -> None:
    import faiss

    from graphops.cache.calibrate import minilm_bound
    from graphops.cache.decide import ErrorBound
    from graphops.cache.semantic import SemanticTier
    from graphops.cache.store_memory import MemoryAnswerStore
    from graphops.cache.store_sql import SqlAnswerStore
    from graphops.db import prepare_url
    from graphops.models import make_embeddings
    from graphops.settings import load_settings

    timings: dict[str, float] = {}
    started = time.perf_counter()
    embeddings = make_embeddings(load_settings(data_dir=folder / "data"))
    tier = SemanticTier(embeddings, folder / "semantic", flush_s=3600.0)
    dimension = int(tier.embed("load the model").shape[0])
    timings["load the embeddings model"] = time.perf_counter() - started
    bound, stand_in = minilm_bound(0.02), ""
    if not math.isfinite(bound.threshold):  # the shipped points allow no threshold at this δ
        bound = ErrorBound(points=((STAND_IN, True),) * 100)
        stand_in = (
            f" The shipped MiniLM points allow no threshold at δ = 0.02 (the tier would serve "
            f"nothing and never reach the verifier): a threshold of {STAND_IN} stands in, so a "
            "hit takes the whole path."
        )
    memory = CachePolicy(
        answers=MemoryAnswerStore(max_entries=entries + 1000), semantic=tier, error_bound=bound
    )
    sql = CachePolicy(
        answers=SqlAnswerStore(prepare_url(f"sqlite:///{folder / 'answers.sqlite'}")),
        semantic=tier,
        error_bound=bound,
    )
    probe = looked_up(memory, "which partition")  # an empty partition: a miss
    partition = probe.scope.partition

    pairs = _pairs()
    cached = list(dict.fromkeys(p["cached"] for p in pairs))
    started = time.perf_counter()
    for question in cached:  # the candidates: the real path, embed then add
        key = exact_key(question, probe.scope, history_digest([]))
        tier.add(partition, question, key, tier.embed(question))
        values = {"answer": f"cached answer to {question}", "sources": ["docs/index.md#x"]}
        for policy in (memory, sql):
            policy.answer_store.put(entry_for(probe, question, key, values))
    timings[f"{len(cached)} candidates: embed + add + 2 puts each"] = time.perf_counter() - started

    rng = np.random.default_rng(7)
    fill = max(entries - len(cached), 0)
    vectors = rng.standard_normal((fill, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    keys = [f"random-{i:06d}" for i in range(fill)]
    texts = [f"random question {i}" for i in range(fill)]
    sample = min(200, fill)
    started = time.perf_counter()
    for i in range(sample):
        tier.add(partition, texts[i], keys[i], vectors[i])
    add_s = time.perf_counter() - started
    timings[f"{sample} rows by SemanticTier.add"] = add_s
    started = time.perf_counter()
    scalar_s = _bulk_fill(tier, partition, texts[sample:], vectors[sample:], keys[sample:])
    total_s = time.perf_counter() - started
    timings[f"{fill - sample} rows in bulk: GPTCache's SQL tables"] = scalar_s
    timings[f"{fill - sample} rows in bulk: Faiss mul_add, row → key map"] = total_s - scalar_s
    started = time.perf_counter()
    for i, key in enumerate(keys):
        memory.answer_store.put(entry_for(probe, texts[i], key, {"answer": "a", "sources": []}))
    timings[f"{fill} entries put in the MemoryAnswerStore"] = time.perf_counter() - started
    ntotal = tier.count(partition)
    manager = tier._manager(partition, create=False)
    exact = manager.v._index
    started = time.perf_counter()
    tier.reindex(partition)  # what SemanticTier.add does once the partition is large
    timings[f"re-build as inverted lists ({ntotal:,} vectors, one thread)"] = (
        time.perf_counter() - started
    )
    kinds = {"exact": exact, "inverted lists": manager.v._index}

    asked = [p for p in pairs if p["label"] == "hit"]
    near = [p for p in pairs if p["label"] != "hit"]
    chooser = random.Random(7)
    picked = chooser.sample(asked, min(len(asked), queries * 2 // 3))
    picked += chooser.sample(near, min(len(near), queries - len(picked)))
    while len(picked) < queries:
        picked.append(chooser.choice(pairs))
    chooser.shuffle(picked)
    samples: dict[str, list[float]] = {"(b) tier.embed": []}
    for kind in kinds:
        samples[f"(a) tier.search, {kind}"] = []
    samples["(a) tier.search, exact, Faiss on 2 OpenMP threads"] = []
    for kind in kinds:
        samples[f"(b) embed + search, {kind}"] = []
    for kind in kinds:
        for label in ("MemoryAnswerStore", "SqlAnswerStore (SQLite)"):
            samples[f"(c) CachePolicy.lookup, {kind}, {label}"] = []
    hits = {(kind, name): 0 for kind in kinds for name in ("memory", "sql")}
    same_best = close = same_close = 0
    threads = faiss.omp_get_max_threads()  # what the tier set: one thread
    for _ in range(20):  # warm up
        tier.search(partition, vectors[0])
    for index, pair in enumerate(picked):
        question = pair["query"]
        began = time.perf_counter()
        vector = tier.embed(question)
        embed_s = time.perf_counter() - began
        samples["(b) tier.embed"].append(embed_s)
        best, best_similarity = [], []
        for kind, faiss_index in kinds.items():
            manager.v._index = faiss_index
            began = time.perf_counter()
            found = tier.search(partition, vector)
            search_s = time.perf_counter() - began
            samples[f"(a) tier.search, {kind}"].append(search_s)
            samples[f"(b) embed + search, {kind}"].append(embed_s + search_s)
            best.append(found[0][1] if found else None)
            best_similarity.append(found[0][0] if found else 0.0)
        same_best += best[0] == best[1]
        if best_similarity[0] >= CLOSE:
            close += 1
            same_close += best[0] == best[1]
        manager.v._index = exact
        faiss.omp_set_num_threads(2)
        began = time.perf_counter()
        tier.search(partition, vector)
        samples["(a) tier.search, exact, Faiss on 2 OpenMP threads"].append(
            time.perf_counter() - began
        )
        faiss.omp_set_num_threads(threads)
        if index >= lookups:
            continue
        for kind, faiss_index in kinds.items():
            manager.v._index = faiss_index
            for name, policy in (("memory", memory), ("sql", sql)):
                scope = new_scope()
                began = time.perf_counter()
                answer = policy.lookup({"question": question}, scope)
                took = time.perf_counter() - began
                label = "MemoryAnswerStore" if name == "memory" else "SqlAnswerStore (SQLite)"
                samples[f"(c) CachePolicy.lookup, {kind}, {label}"].append(took)
                hits[(kind, name)] += answer is not None and answer.tier == "semantic"

    print(
        f"### 2. Semantic tier: one partition of {ntotal:,} entries, "
        f"{len(picked)} queries, the lookups on the first {min(lookups, len(picked))} "
        f"(target < {TARGET_MS:.0f} ms)\n"
    )
    print(f"| step (Faiss on {threads} OpenMP threads unless said) | median ms | p95 ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, values in samples.items():
        ms = [v * 1000 for v in values]
        print(
            f"| {name} | {statistics.median(ms):.2f} | {percentile(ms, 95):.2f} | {max(ms):.2f} |"
        )
    print()
    looked = picked[:lookups]
    paraphrases = sum(p["label"] == "hit" for p in looked)
    counted = ", ".join(
        f"{kind} {hits[(kind, 'memory')]} (memory) and {hits[(kind, 'sql')]} (SQL)"
        for kind in kinds
    )
    print(
        f"Semantic hits among the {len(looked)} lookups ({paraphrases} "
        f"labelled paraphrases, threshold {bound.threshold:.3f}): {counted}.{stand_in} "
        f"The inverted lists found the exact index's nearest question for "
        f"{same_best} of the {len(picked)} queries, and for {same_close} of the {close} "
        f"whose nearest question is at least {CLOSE} similar.\n"
    )
    memory_mb = ntotal * dimension * 2 / 2**20
    print(f"| fill (dimension {dimension}) | s |")
    print("|---|---:|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.2f} |")
    per_row_ms = add_s / sample * 1000 if sample else float("nan")
    print(
        f"| (SemanticTier.add: {per_row_ms:.2f} ms a row, so {entries:,} rows ≈ "
        f"{per_row_ms * entries / 1000:.0f} s) | |"
    )
    print()
    print(
        f"Faiss index memory: {ntotal:,} x {dimension} x 2 bytes = "
        f"{ntotal * dimension * 2:,} bytes ({memory_mb:.1f} MiB).\n"
    )
    tier.close()


# --------------------------------------------------------------- 3. reference graph
def reference(folder: Path, questions: int) -> None:
    from graphops.errors import CorpusIndexError
    from graphops.settings import load_settings
    from graphs.agentic_rag import RagDeps, build_agentic_rag, reference_cache, reference_ops

    golden = ROOT / "evals" / "golden.jsonl"
    items = [json.loads(line)["question"] for line in golden.read_text().splitlines()]
    telemetry = Telemetry(exporters=[NullExporter()], metrics=Metrics(CollectorRegistry()))
    rows: list[tuple[str, float, float, str, bool]] = []
    with contextlib.chdir(ROOT):  # the corpus ("docs") and prompts are named from the root
        started = time.perf_counter()
        settings = load_settings(data_dir=folder / "reference", n_threads=2)
        built = ROOT / ".graphops" / "index"
        if built.is_dir():  # the project's own index: embedding the corpus takes a minute
            shutil.copytree(built, settings.index_dir)
        try:
            deps = RagDeps.from_settings(settings)
        except CorpusIndexError:  # built with other embeddings or chunking: build a fresh one
            shutil.rmtree(settings.index_dir)
            deps = RagDeps.from_settings(settings)
        embeddings = deps.retriever.embeddings  # type: ignore[attr-defined]
        # low-confidence answers stored too, so that every second run is a hit
        policy = replace(reference_cache(deps, settings, embeddings), skip_if=())
        graph = build_observed_graph(
            build_agentic_rag(deps),
            ops=reference_ops(
                settings=settings, embeddings=embeddings, telemetry=telemetry, cache=policy
            ),
        )
        setup_s = time.perf_counter() - started

        async def timed(question: str) -> tuple[float, Any]:
            began = time.perf_counter()
            out = await graph.ainvoke({"question": question})
            return time.perf_counter() - began, out

        async def run() -> float:
            began = time.perf_counter()
            await graph.ainvoke({"question": "warm up: what is graphops?"})
            await policy.drain()
            warm = time.perf_counter() - began
            for question in items[:questions]:
                miss_s, miss = await timed(question)
                await policy.drain()  # the store ran in the background worker: untimed
                hit_s, hit = await timed(question)
                outcome = (hit.get(OPS_KEY) or {}).get("cache") or {}
                answered = str(outcome.get("tier")) if outcome.get("hit") else "miss: a full run"
                rows.append((question, miss_s, hit_s, answered, bool(miss.get("low_confidence"))))
            await policy.drain()
            return warm

        warm_s = asyncio.run(run())
    print(
        f"### 3. Reference graph (local SmolLM2, ainvoke, telemetry on): a full run against "
        f"a hit, {questions} questions\n"
    )
    print("| question | first run (miss) s | second run ms | second run | low confidence | ratio |")
    print("|---|---:|---:|---|---|---:|")
    ratios = []
    for question, miss_s, hit_s, answered, low in rows:
        ratio = hit_s / miss_s
        if not answered.startswith("miss"):
            ratios.append(ratio)
        print(
            f"| {question} | {miss_s:.2f} | {hit_s * 1000:.1f} | {answered} | "
            f"{'yes' if low else 'no'} | {ratio:.5f} |"
        )
    print()
    if ratios:
        print(
            f"Median ratio (hit / full run) over the {len(ratios)} hits: "
            f"{statistics.median(ratios):.5f}."
        )
    print(f"Set-up (models, corpus index): {setup_s:.1f} s; warm-up run: {warm_s:.1f} s.\n")
    telemetry.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lookups", type=int, default=60)
    parser.add_argument("--reference-questions", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average at start: {load} ({os.cpu_count()} CPUs)\n")
    sections: list[Callable[[Path], None]] = [
        lambda folder: exact_hit(folder, args.iterations, args.rounds),
        lambda folder: semantic(folder, args.entries, args.queries, args.lookups),
    ]
    if not args.no_reference:
        sections.append(lambda folder: reference(folder, args.reference_questions))
    for section in sections:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            section(Path(folder))
        print(f"(section took {time.perf_counter() - started:.0f} s)\n")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"Load average at the end: {load}")


if __name__ == "__main__":
    main()
