"""Hashed bag-of-words embeddings: a deterministic fake that still retrieves.

LangChain's ``DeterministicFakeEmbedding`` gives every text a random vector, so
nothing it retrieves is relevant. Unit tests of retrieval need texts sharing words
to land close together; hashing words into a fixed number of buckets does that
with no model, in microseconds.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict

__all__ = ["HashEmbeddings"]

_WORD = re.compile(r"[a-z0-9]+")


class HashEmbeddings(BaseModel, Embeddings):
    """Each lower-cased word adds 1 to one of ``dimensions`` buckets; vectors are normalised."""

    model_config = ConfigDict(frozen=True)

    dimensions: int = 256

    @property
    def model_name(self) -> str:
        """The name recorded in the index manifest."""
        return f"hash-{self.dimensions}"

    def _vector(self, text: str) -> list[float]:
        vector = np.zeros(self.dimensions, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            bucket = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
            vector[bucket % self.dimensions] += 1.0
        norm = float(np.linalg.norm(vector))
        result: list[float] = (vector / norm if norm else vector).tolist()
        return result

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self._vector(text)
