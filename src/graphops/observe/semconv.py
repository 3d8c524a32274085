"""Attribute and span names: OpenTelemetry GenAI conventions where they exist, ``graphops.*`` else.

Kept in one place so spans, metrics and logs spell every name the same way.
See https://opentelemetry.io/docs/specs/semconv/gen-ai/ for the ``gen_ai.*`` ones.
"""

from __future__ import annotations

# GenAI semantic conventions
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TOP_K = "gen_ai.request.top_k"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
CONVERSATION_ID = "gen_ai.conversation.id"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
DATA_SOURCE_ID = "gen_ai.data_source.id"
ERROR_TYPE = "error.type"

OP_CHAT = "chat"
OP_EMBEDDINGS = "embeddings"
OP_RETRIEVAL = "retrieval"
OP_TOOL = "execute_tool"
OP_AGENT = "invoke_agent"

# graphops attributes
RUN_ID = "graphops.run_id"
THREAD_ID = "graphops.thread_id"
USER = "graphops.user"
TENANT = "graphops.tenant"
SESSION = "graphops.session"
REPLAY_OF = "graphops.replay_of"  # a re-run's root: the trace id of the run it replays
NODE = "graphops.node"
NODE_KIND = "graphops.node.kind"  # "node" (user code) or "step" (inserted by graphops)
STEP = "graphops.langgraph_step"
COST_USD = "graphops.cost_usd"
RUN_TOKENS = "graphops.run.tokens"  # on the root span: every LLM call's tokens
RUN_COST_USD = "graphops.run.cost_usd"
RETRIEVAL_QUERY = "graphops.retrieval.query"
RETRIEVAL_IDS = "graphops.retrieval.document_ids"
RETRIEVAL_SCORES = "graphops.retrieval.scores"
ROUTE_EVENT = "graphops.route"
ROUTE_FROM = "graphops.route.from"
ROUTE_TO = "graphops.route.to"
ROUTE_BY = "graphops.route.by"
RETRY_EVENT = "graphops.retry"
ATTEMPT = "graphops.attempt"
GUARD_OUTCOME = "graphops.guard.outcome"
GUARD_REASON = "graphops.guard.reason"  # why it refused (invalid_input, rate_limited, …)
GUARD_RETRY_AFTER = "graphops.guard.retry_after_s"
GUARD_LIMIT = "graphops.guard.limit"  # the limit that refused: "requests:user", "tokens:tenant"
GUARD_UNCHECKED = "graphops.guard.unchecked"  # the limit store did not answer; failed open
GUARD_REFUSED_EVENT = "graphops.guard.refused"
QUOTA_RESERVED = "graphops.quota.reserved"  # tokens reserved at admission, per quota
QUOTA_SETTLED = "graphops.quota.settled"  # on settle: the charge (+) or refund (-) applied
CACHE_HIT = "graphops.cache.hit"
CACHE_STORED = "graphops.cache.stored"  # on cache_store: whether the answer was stored
CACHE_STORE_SKIPPED = "graphops.cache.store_skipped"  # … and why not (cache_hit, refused, …)
CACHE_TIER = "graphops.cache.tier"  # on cache_lookup: the tier that answered (exact, semantic)
CACHE_LOOKUP = "graphops.cache.lookup"  # … its outcome: hit, miss, rejected, no_question, error
CACHE_SIMILARITY = "graphops.cache.similarity"  # … the best candidate's cosine similarity
CACHE_THRESHOLD = "graphops.cache.threshold"  # … the threshold the answering entry was held to
CACHE_AGE = "graphops.cache.age_s"  # … the answering entry's age
CACHE_REJECTED_EVENT = "graphops.cache.rejected"  # a candidate the verifier vetoed, and why
SETTLED_LLM_CALLS = "graphops.settled.llm_calls"  # on settle: the run's usage, as settled
SETTLED_INPUT_TOKENS = "graphops.settled.input_tokens"
SETTLED_OUTPUT_TOKENS = "graphops.settled.output_tokens"
BUDGET_LEFT = "graphops.budget.left_s"  # on a node span: the run's time left as it started
BUDGET_LIMIT = "graphops.budget.limit_s"  # … and the time its attempt was given
BUDGET_EXHAUSTED_EVENT = "graphops.budget.exhausted"
BREAKER_STATE = "graphops.breaker.state"
BREAKER_EVENT = "graphops.breaker.transition"
ANSWERED_BY = "graphops.llm.provider"  # on an LLM span of a resilient model: who answered
FALLBACK_EVENT = "graphops.llm.fallback"
RETRY_LLM_EVENT = "graphops.llm.retry"
PROMPT_NAME = "graphops.prompt.name"  # on an LLM span: the prompt it was sent
PROMPT_VERSION = "graphops.prompt.version"  # its registry number, or file:<hash>
NODE_PROMPTS = "graphops.prompts"  # on a node span: every name@version it used
RUN_PROMPTS = "graphops.run.prompts"  # on the root span: every name@version of the run
PROMPT_METADATA = "graphops_prompt"  # run metadata a prompt template carries its ref in
VARIANT = "graphops.variant"  # on every span of a run: its flags' "flag=variant", sorted
DEGRADED = "graphops.degraded"  # on the node span that degraded: the level
DEGRADED_REASON = "graphops.degraded.reason"
DEGRADED_EVENT = "graphops.degraded"

# how LangChain's ls_provider values map to gen_ai.provider.name
PROVIDERS = {
    "openai": "openai",
    "azure": "azure.ai.openai",
    "google_genai": "gcp.gemini",
    "google_vertexai": "gcp.vertex_ai",
    "anthropic": "anthropic",
    "ollama": "ollama",
    "llama_cpp": "llama_cpp",
    "scripted": "scripted",
}
