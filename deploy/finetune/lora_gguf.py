"""Writes (and reads back) LoRA adapters in llama.cpp's GGUF adapter format.

`train.py` trains a PEFT LoRA on a model that transformers loaded from a GGUF file; this
module turns the trained A/B matrices into the file llama.cpp loads with
`llama_adapter_lora_init`, the same layout llama.cpp's own `convert_lora_to_gguf.py`
produces:

* metadata `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`
  (float32) and `general.architecture` equal to the base model's (llama.cpp refuses an
  adapter whose architecture differs from the model's);
* for every adapted linear layer, `blk.N.<tensor>.weight.lora_a` with ggml shape
  ne = [in, r] (numpy shape (r, in), PEFT's `lora_A.weight` as is) and
  `blk.N.<tensor>.weight.lora_b` with ne = [r, out] (numpy shape (out, r), PEFT's
  `lora_B.weight`). llama.cpp checks ne[0] of lora_a and ne[1] of lora_b against the base
  tensor, and scales the product by alpha / r, as PEFT does (no rsLoRA).

Row order of q and k. For llama-architecture models, llama.cpp's converter
(`LlamaModel.permute` in convert_hf_to_gguf.py) reorders the output rows of the q and k
projections (per head, from the interleaved rotary layout of Hugging Face checkpoints to
llama.cpp's), and transformers' GGUF loader undoes that on loading
(`LlamaTensorProcessor`), so a PEFT adapter trained on the loaded model has its `lora_B`
rows in Hugging Face order. llama.cpp adds B·A to the *permuted* base weight, so B's rows
must be permuted the same way (with the number of query heads for q and of key/value
heads for k), exactly what convert_lora_to_gguf.py does through its `LoraTorchTensor`.
Architectures whose converter does not permute (qwen2, qwen3) are written as trained.

Only numpy and the `gguf` package are needed to import this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gguf

# Hugging Face linear-layer names (the PEFT `target_modules`) and llama.cpp's tensor names.
HF_TO_GGUF = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}
GGUF_TO_HF = {v: k for k, v in HF_TO_GGUF.items()}

# Base architectures (GGUF `general.architecture`) this writer knows, and whether llama.cpp's
# converter permutes the rows of their q and k projections.
PERMUTES_QK = {"llama": True, "qwen2": False, "qwen3": False}

_HF_MODULE = re.compile(r"(?:^|\.)layers\.(\d+)\.(?:self_attn|mlp)\.(" + "|".join(HF_TO_GGUF) + r")$")
_GGUF_TENSOR = re.compile(r"^blk\.(\d+)\.(" + "|".join(GGUF_TO_HF) + r")\.weight\.lora_([ab])$")


class AdapterError(Exception):
    """An adapter that cannot be written for (or read against) the given base model."""


@dataclass
class BaseInfo:
    """What the writer needs to know about the base model, read from its GGUF file."""

    architecture: str
    n_head: int
    n_head_kv: int
    # ggml shapes (ne order: [in, out]) of the base weights, by GGUF tensor name
    shapes: dict[str, tuple[int, ...]]


def read_base(path: str | Path) -> BaseInfo:
    """Reads the architecture, head counts and tensor shapes of a base GGUF model."""
    reader = gguf.GGUFReader(str(path), "r")

    def field(key: str):
        f = reader.get_field(key)
        return None if f is None else f.contents()

    arch = field("general.architecture")
    if not isinstance(arch, str):
        raise AdapterError(f"{path}: no general.architecture (not a GGUF model?)")
    n_head = field(f"{arch}.attention.head_count")
    n_head_kv = field(f"{arch}.attention.head_count_kv") or n_head
    if not isinstance(n_head, int):
        raise AdapterError(f"{path}: no {arch}.attention.head_count (per-layer head counts are not supported)")
    shapes = {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}
    return BaseInfo(architecture=arch, n_head=n_head, n_head_kv=int(n_head_kv), shapes=shapes)


def permute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row permutation (convert_hf_to_gguf.py `LlamaModel.permute`), applied
    to the rows (output features) of `rows`; the columns are left alone."""
    out = rows.shape[0]
    return rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def unpermute_rows(rows: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of `permute_rows` (what transformers applies when loading a GGUF)."""
    out = rows.shape[0]
    return rows.reshape(n_head, out // n_head // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def gguf_name(hf_module: str) -> str:
    """`model.layers.3.self_attn.q_proj` (any prefix) -> `blk.3.attn_q.weight`."""
    m = _HF_MODULE.search(hf_module)
    if not m:
        raise AdapterError(f"cannot map module {hf_module!r} to a llama.cpp tensor (supported: {', '.join(HF_TO_GGUF)})")
    return f"blk.{m.group(1)}.{HF_TO_GGUF[m.group(2)]}.weight"


def _qk_heads(base: BaseInfo, tensor: str) -> int | None:
    """Heads to permute a tensor's rows by, or None when it is not permuted."""
    if not PERMUTES_QK[base.architecture]:
        return None
    if ".attn_q." in tensor:
        return base.n_head
    if ".attn_k." in tensor:
        return base.n_head_kv
    return None


def to_gguf_tensors(base: BaseInfo, lora: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Maps PEFT matrices {hf module name: (A (r, in), B (out, r))} to the adapter's tensors,
    checking each pair against the base the way llama.cpp does on loading."""
    if base.architecture not in PERMUTES_QK:
        raise AdapterError(f"base architecture {base.architecture!r} is not supported (supported: {', '.join(PERMUTES_QK)})")
    tensors: dict[str, np.ndarray] = {}
    for module, (a, b) in sorted(lora.items()):
        name = gguf_name(module)
        if name not in base.shapes:
            raise AdapterError(f"{module}: the base model has no tensor {name}")
        n_in, n_out = base.shapes[name][:2]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise AdapterError(f"{module}: lora_A {a.shape} and lora_B {b.shape} do not form a rank-r pair")
        if a.shape[1] != n_in or b.shape[0] != n_out:
            raise AdapterError(f"{module}: lora_A {a.shape} / lora_B {b.shape} do not fit the base tensor {name} (in {n_in}, out {n_out})")
        heads = _qk_heads(base, name)
        if heads is not None:
            b = permute_rows(b, heads)
        tensors[name + ".lora_a"] = np.ascontiguousarray(a, dtype=np.float32)
        tensors[name + ".lora_b"] = np.ascontiguousarray(b, dtype=np.float32)
    if not tensors:
        raise AdapterError("the adapter has no LoRA matrices")
    return tensors


def write_adapter(
    out: str | Path,
    base_path: str | Path,
    alpha: float,
    lora: dict[str, tuple[np.ndarray, np.ndarray]],
    name: str | None = None,
) -> dict[str, tuple[int, ...]]:
    """Writes the llama.cpp LoRA adapter for `lora` (see `to_gguf_tensors`) trained on the
    GGUF model at `base_path` to `out` (through a temporary file, renamed when complete).
    Returns the written tensors' numpy shapes by name."""
    base = read_base(base_path)
    tensors = to_gguf_tensors(base, lora)
    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), base.architecture)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    if name:
        writer.add_name(name)
    for tname, data in tensors.items():
        writer.add_tensor(tname, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return {k: v.shape for k, v in tensors.items()}


def read_adapter(path: str | Path, base_path: str | Path) -> tuple[float, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Reads an adapter written by `write_adapter` back into PEFT layout: returns alpha and
    {`model.layers.N.<self_attn|mlp>.<proj>`: (A (r, in), B (out, r))}, with q/k rows put
    back in Hugging Face order."""
    base = read_base(base_path)
    reader = gguf.GGUFReader(str(path), "r")

    def field(key: str):
        f = reader.get_field(key)
        return None if f is None else f.contents()

    if field("general.type") != "adapter" or field(gguf.Keys.Adapter.TYPE) != "lora":
        raise AdapterError(f"{path}: not a LoRA adapter (general.type, adapter.type)")
    if field("general.architecture") != base.architecture:
        raise AdapterError(f"{path}: adapter architecture {field('general.architecture')!r} differs from the base's {base.architecture!r}")
    alpha = field(gguf.Keys.Adapter.LORA_ALPHA)
    if alpha is None:
        raise AdapterError(f"{path}: no {gguf.Keys.Adapter.LORA_ALPHA}")
    pairs: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for t in reader.tensors:
        m = _GGUF_TENSOR.match(t.name)
        if not m:
            raise AdapterError(f"{path}: unexpected tensor {t.name}")
        layer, tensor, part = m.groups()
        # GGUFReader gives the data in numpy order (ggml ne reversed)
        pairs.setdefault((layer, tensor), {})[part] = np.array(t.data, dtype=np.float32)
    lora = {}
    for (layer, tensor), ab in pairs.items():
        if set(ab) != {"a", "b"}:
            raise AdapterError(f"{path}: blk.{layer}.{tensor} lacks lora_a or lora_b")
        hf = GGUF_TO_HF[tensor]
        block = "self_attn" if hf in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
        b = ab["b"]
        heads = _qk_heads(base, f"blk.{layer}.{tensor}.weight")
        if heads is not None:
            b = unpermute_rows(b, heads)
        lora[f"model.layers.{layer}.{block}.{hf}"] = (ab["a"], b)
    return float(alpha), lora
