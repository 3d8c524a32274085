"""Chat models and embeddings: the local default, remote providers, and test fakes.

Heavy modules (llama.cpp, provider SDKs) are imported only when a model is built.
"""

from __future__ import annotations

from graphops.models.factory import make_chat_model, make_embeddings
from graphops.models.hashing import HashEmbeddings
from graphops.models.scripted import ScriptedChatModel

__all__ = ["HashEmbeddings", "ScriptedChatModel", "make_chat_model", "make_embeddings"]
