"""A worker process for the guard's cross-process tests: concurrent runs of a small graph.

``python -m tests.integration.guard_worker CONFIG_JSON`` builds the one-node
graph of the unit tests with the limits the JSON names, on the Redis it names,
fires ``runs`` invocations at once from threads, and prints one JSON line: how
many were allowed, refused and why. With ``"hold": SECONDS`` each run's node
sleeps that long (the process is killed while it holds bulkhead slots).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TypedDict

from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from graphops.builder import build_observed_graph
from graphops.limits import Bulkhead, RequestLimit, TokenQuota
from graphops.limits.redis import RedisLimitStore
from graphops.limits.slots_redis import RedisSlotStore
from graphops.models import ScriptedChatModel
from graphops.policies import GuardPolicy, Ops


class QA(TypedDict, total=False):
    question: str
    answer: str


def build(config: dict[str, Any]) -> Any:
    words = int(config.get("words", 9))
    hold = float(config.get("hold", 0))
    chat = ScriptedChatModel(respond=lambda messages: " ".join(["word"] * words))

    def answer(state: QA) -> QA:
        if hold:
            time.sleep(hold)
        return {"answer": chat.invoke([HumanMessage(state["question"])]).text}

    graph: StateGraph[QA] = StateGraph(QA)
    graph.add_node("answer", answer)
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    url, prefix = config["url"], config["prefix"]
    policy = GuardPolicy(
        requests=tuple(RequestLimit(**r) for r in config.get("requests", ())),
        quotas=tuple(TokenQuota(**q) for q in config.get("quotas", ())),
        token_estimate=int(config.get("token_estimate", 0)),
        bulkhead=Bulkhead(**config["bulkhead"]) if config.get("bulkhead") else None,
        store=RedisLimitStore.from_url(url, timeout=1.0),
        slot_store=RedisSlotStore.from_url(url, timeout=1.0, prefix=prefix),
        key_prefix=prefix,
    )
    return build_observed_graph(graph, ops=Ops(guard=policy, telemetry=None))


def main() -> None:
    config = json.loads(sys.argv[1])
    app = build(config)
    runs = int(config["runs"])
    barrier = threading.Barrier(runs)
    outcomes: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(60)
        out = app.invoke({"question": "q"}, {"metadata": config.get("who", {})})
        guard = out["graphops"]["guard"]
        with lock:
            outcomes.append(guard["reason"] or "allowed")

    threads = [threading.Thread(target=one) for _ in range(runs)]
    for thread in threads:
        thread.start()
    if config.get("hold"):
        print(json.dumps({"started": True}), flush=True)
    for thread in threads:
        thread.join()
    summary = {o: outcomes.count(o) for o in set(outcomes)}
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
