"""A second process for the chaos tests: the resilient model, its breakers on the shared Redis.

``python -m tests.integration.chaos_worker SPEC_JSON`` builds ``resilient_chat`` over
two OpenAI clients (``dead`` and ``healthy``, the base URLs of the test's fault
servers) with the breaker ``policy`` on a
:class:`~graphops.resilience.breaker_redis.RedisBreakerStore` (``url``, ``prefix``),
makes ``calls`` calls, one at a time, and prints one JSON line: who answered each
(``answered_by``) and the dead provider's breaker state after them (``state``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from langchain_openai import ChatOpenAI

from graphops.models.resilient import PROVIDER_KEY, resilient_chat
from graphops.resilience.breaker import BreakerPolicy
from graphops.resilience.breaker_redis import RedisBreakerStore
from graphops.resilience.retry import RetryPolicy


def client(base_url: str) -> ChatOpenAI:
    return ChatOpenAI(
        model="a",
        api_key="x",  # type: ignore[arg-type]
        base_url=base_url,
        max_retries=0,
        timeout=5.0,
    )


def main(spec: dict[str, Any]) -> None:
    store = RedisBreakerStore.from_url(spec["url"], timeout=2.0, prefix=spec["prefix"])
    model = resilient_chat(
        {"dead": client(spec["dead"]), "healthy": client(spec["healthy"])},
        retry=RetryPolicy(attempts=1),
        breaker=BreakerPolicy(**spec["policy"]),
        breaker_store=store,
    )
    answered_by = [model.invoke("hi").response_metadata[PROVIDER_KEY] for _ in range(spec["calls"])]
    state = model.links[0].breaker.state()
    print(json.dumps({"answered_by": answered_by, "state": state}), flush=True)
    store.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
