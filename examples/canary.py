"""Runs for a canary rollout to look at: a small graph, its runs in graphops' database.

    .venv/bin/python examples/canary.py [--runs N] [--flag answer] [--broken SHARE]

Each run is a new user asking a one-node graph built with ``build_observed_graph``,
with the flags of ``GRAPHOPS_DATA_DIR`` (or ``GRAPHOPS_DATABASE_URL``) resolved as
the run starts and every span stored in that database's span store, as the
``graphops`` command stores its own. The node fails for ``--broken`` of the runs
that got the flag's canary (the variant that is not the flag's default), so a
rollout of it has a regression to find. docs/rollout.md walks through it.
"""

from __future__ import annotations

import argparse
import random
import uuid
from typing import Any, TypedDict

from langchain_core.runnables import RunnableConfig
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from graphops.builder import build_observed_graph
from graphops.checkpoint.span_export import SqlSpanExporter
from graphops.checkpoint.span_store import SqlSpanStore
from graphops.db import prepare
from graphops.flags.resolver import Flags
from graphops.flags.store_sql import SqlFlagStore
from graphops.observe import Telemetry
from graphops.policies import Ops
from graphops.runtime import run_scope
from graphops.settings import load_settings


class State(TypedDict, total=False):
    question: str
    answer: str
    variant: str


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--flag", default="answer")
    parser.add_argument("--broken", type=float, default=0.0, help="share of canary runs failing")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    url = prepare(load_settings())
    flags = SqlFlagStore(url)
    chance = random.Random(args.seed)

    def answer(state: State, config: RunnableConfig) -> State:
        scope = run_scope(config)
        got = scope.variants.get(args.flag) if scope is not None else None
        flag = flags.get(args.flag)
        canary = got is not None and flag is not None and got.variant != flag.default
        if canary and chance.random() < args.broken:
            raise RuntimeError(f"variant {got.variant} broke the answer")  # type: ignore[union-attr]
        return {"answer": "ok", "variant": got.variant if got is not None else "-"}

    telemetry = Telemetry(exporters=[SimpleSpanProcessor(SqlSpanExporter(SqlSpanStore(url)))])
    app = build_observed_graph(
        {"answer": answer},
        state_schema=State,
        ops=Ops(telemetry=telemetry, flags=Flags(flags, refresh_s=1.0)),
        name="canary_demo",
    )
    counts: dict[str, list[int]] = {}
    for _ in range(args.runs):
        user = f"user-{uuid.uuid4().hex[:8]}"
        config: Any = {"metadata": {"user": user}}
        try:
            out = app.invoke({"question": "What does the guard do?"}, config)
            variant = str(out.get("variant", "-"))
            failed = 0
        except RuntimeError as exc:
            variant = str(exc).split()[1]
            failed = 1
        runs = counts.setdefault(variant, [0, 0])
        runs[0] += 1
        runs[1] += failed
    telemetry.shutdown()
    for variant, (runs, failed) in sorted(counts.items()):
        print(f"{variant}: {runs} runs, {failed} failed")


if __name__ == "__main__":
    main()
