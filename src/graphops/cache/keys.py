"""What a cached answer is keyed by, so that two runs share an entry only when they must.

An answer may be served to another run only if everything that decided it is
the same: the question, who may see it (tenant, access scope, and the user when
answers are private), the graph, the version of every prompt the run uses, the
model chain with its generation parameters, and the corpus version. Leaving one
out serves a wrong answer: LangGraph's node cache once collided on inputs that
differed only in type (langgraph#8009) and shared entries between graphs whose
namespace collapsed to ``"__dynamic__"`` (#8753); LiteLLM's keys missed request
fields (#894, #16489). So every field has a fixed type, the fields are encoded
as canonical JSON in a fixed order, and the hash names its scheme.

The **partition** is the hash of everything but the question: the semantic tier
searches only within it (a hard partition, never text mixed into the embedded
question), and the exact key is the partition's hash with the question's.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CacheScope",
    "exact_key",
    "history_digest",
    "model_fingerprint",
    "normalise",
]

_SCHEME = "graphops-cache-v1"
_SPACE = re.compile(r"\s+")
_TRAILING = re.compile("[\\s?!.\u3002\uff1f\uff01]+$")  # and CJK . ? !


def normalise(question: str) -> str:
    """The question as the exact tier compares it.

    Unicode NFKC, case folded, runs of white space made one space, and trailing
    question marks, full stops and exclamation marks dropped: ``"What is X?"``
    and ``"what  is x"`` ask the same. Nothing inside the text changes.
    """
    text = _SPACE.sub(" ", unicodedata.normalize("NFKC", question).casefold()).strip()
    return _TRAILING.sub("", text)


def _digest(parts: Sequence[Any]) -> str:
    encoded = json.dumps([_SCHEME, *parts], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class CacheScope:
    """Everything but the question that decides a cached answer (see the module docstring).

    ``prompts`` holds ``(name, ref)`` pairs such as ``("answer", "answer@3")``,
    taken as one snapshot when the run is looked up; ``models`` is the model
    chain's fingerprint (:func:`model_fingerprint`); ``corpus`` the index's
    corpus version. ``user`` is set only when answers are private per user.
    """

    tenant: str | None
    access: tuple[str, ...]
    graph: str
    prompts: tuple[tuple[str, str], ...]
    models: str
    corpus: str | None
    user: str | None = None

    def fields(self) -> list[Any]:
        """The fields in their fixed order, as the hash encodes them."""
        return [
            ["tenant", self.tenant],
            ["access", list(self.access)],
            ["graph", self.graph],
            ["prompts", [list(p) for p in self.prompts]],
            ["models", self.models],
            ["corpus", self.corpus],
            ["user", self.user],
        ]

    @property
    def partition(self) -> str:
        """The semantic tier's partition: a hash of every field."""
        return _digest(["partition", *self.fields()])


def exact_key(question: str, scope: CacheScope, history: str = "") -> str:
    """The exact tier's key: the partition, the normalised question, the earlier turns' digest."""
    return _digest(["exact", scope.partition, normalise(question), history])


def history_digest(turns: Sequence[tuple[str, str]]) -> str:
    """A digest of a conversation's earlier turns (``(role, text)`` pairs); ``""`` for none.

    A follow-up question ("and for Redis?") means something else after each
    conversation, so its exact key holds the conversation; the semantic tier
    takes single-turn questions only.
    """
    return _digest(["history", [list(t) for t in turns]]) if turns else ""


def model_fingerprint(model: Any) -> str:
    """A stable name for a chat model and its generation parameters.

    LangChain's own cache key for the model (``_get_llm_string``: its class and
    every parameter that changes an answer) for each link of a failover chain,
    in order; a string is taken as given, a function is asked for the model.
    """
    if isinstance(model, str):
        return model
    links = getattr(model, "links", None)
    if isinstance(links, Sequence) and links:
        return _digest(["chain", [model_fingerprint(link.model) for link in links]])
    llm_string = getattr(model, "_get_llm_string", None)
    if callable(llm_string):
        return _digest(["model", str(llm_string())])
    if callable(model):  # a function giving the model, asked once (a lazily built one)
        return model_fingerprint(model())
    raise TypeError(f"no fingerprint for {type(model).__name__}: give a string")
