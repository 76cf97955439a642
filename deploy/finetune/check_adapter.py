#!/usr/bin/env python3
"""Reference logits for a GGUF LoRA adapter, to check what llama.cpp computes with it.

Loads the base GGUF model with transformers, applies the adapter read back from its GGUF
file (lora_gguf.read_adapter, which puts q/k rows back in Hugging Face order), renders a
fixed prompt with the model's chat template and writes, as JSON, the prompt text and its
token ids, and the top-k next-token logits of the base and of the adapted model. The
appliance's test feeds the same token ids to llama.cpp with and without the adapter and
compares (llama.cpp runs the quantized weights, so expect agreement on the top tokens and
logits within a small tolerance, not bit equality).

Optional checks, each reported in the JSON:
  --checkpoint train.py's checkpoint.pt: the adapter file's matrices must equal the
               trained PEFT ones (the writer's mapping round-trips);
  --merged     an independent check of the tensor layout: the adapter is merged into the
               base weights the way llama.cpp applies it (W_gguf + alpha/r · B_gguf·A, in
               the GGUF file's own row order), the result written as a GGUF file and
               loaded through transformers' GGUF loader; its logits must match the PEFT
               model's. A lora_b in the wrong row order (e.g. q/k not permuted for a llama
               base) makes them differ.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

# no progress bar from transformers' GGUF loader (tqdm reads this when imported)
os.environ.setdefault("TQDM_DISABLE", "1")

# the sibling modules are imported from the (possibly read-only) install: no __pycache__
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lora_gguf  # noqa: E402
import train  # noqa: E402

# A prompt shaped like the appliance's (system instructions, numbered passages, question).
DEFAULT_CHAT = [
    {"role": "system", "content": "You are a careful assistant. You answer questions from the numbered passages the user provides, and you cite the passage numbers."},
    {"role": "user", "content": (
        "Passages:\n\n[1] Vitamin D and bone density\nDaily vitamin D supplements increased bone mineral density in older adults.\n\n"
        "[2] Coffee and sleep\nEvening coffee consumption shortened total sleep time in healthy volunteers.\n\n"
        "Question: Is this claim supported by the passages? Claim: Evening coffee shortens sleep.\n"
        "Begin with one of SUPPORTED, CONTRADICTED or NOT ENOUGH INFORMATION, then give the reason with citations.\n\n"
        "Answer the question using the passages. Put the number of the passage you used in square brackets after each sentence, like [1]."
    )},
]


def apply_lora(model, alpha: float, lora: dict, torch):
    """Wraps `model` in a PEFT LoRA holding exactly `lora` ({hf module: (A, B)})."""
    import peft
    from peft.tuners.lora import LoraLayer

    ranks = {a.shape[0] for a, _ in lora.values()}
    if len(ranks) != 1:
        raise lora_gguf.AdapterError(f"mixed LoRA ranks {sorted(ranks)}")
    targets = sorted({name.rsplit(".", 1)[1] for name in lora})
    config = peft.LoraConfig(r=ranks.pop(), lora_alpha=alpha, lora_dropout=0.0, target_modules=targets, bias="none", task_type="CAUSAL_LM")
    wrapped = peft.get_peft_model(model, config)
    seen = set()
    for name, module in wrapped.named_modules():
        if isinstance(module, LoraLayer):
            key = name.removeprefix("base_model.model.")
            if key not in lora:
                raise lora_gguf.AdapterError(f"the adapter has no matrices for {key}")
            a, b = lora[key]
            with torch.no_grad():
                module.lora_A["default"].weight.copy_(torch.from_numpy(a))
                module.lora_B["default"].weight.copy_(torch.from_numpy(b))
            seen.add(key)
    if seen != set(lora):
        raise lora_gguf.AdapterError(f"adapter matrices for modules the model lacks: {sorted(set(lora) - seen)[:3]}")
    wrapped.eval()
    return wrapped


def last_logits(model, ids: list[int], torch) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0, -1].float().numpy()


def top(logits: np.ndarray, k: int, tokenizer) -> list[dict]:
    order = np.argsort(-logits, kind="stable")[:k]
    return [{"id": int(i), "token": tokenizer.convert_ids_to_tokens(int(i)), "logit": round(float(logits[i]), 4)} for i in order]


def compare_checkpoint(path: Path, lora: dict, torch) -> float:
    """Largest |difference| between the adapter file's matrices and the checkpoint's."""
    state = torch.load(path, map_location="cpu", weights_only=True)["lora"]
    worst = 0.0
    for module, (a, b) in lora.items():
        prefix = f"base_model.model.{module}"
        ta = state[f"{prefix}.lora_A.weight"].numpy()
        tb = state[f"{prefix}.lora_B.weight"].numpy()
        worst = max(worst, float(np.abs(ta - a).max()), float(np.abs(tb - b).max()))
    if len(state) != 2 * len(lora):
        raise lora_gguf.AdapterError(f"checkpoint {path} has {len(state) // 2} adapted modules, the adapter {len(lora)}")
    return worst


def write_merged(base: Path, adapter: Path, out: Path) -> None:
    """The base with the adapter merged in as llama.cpp applies it, in GGUF row order:
    adapted weights become F32, every other tensor and all metadata are copied as is."""
    import gguf

    reader = gguf.GGUFReader(str(base), "r")
    adapter_reader = gguf.GGUFReader(str(adapter), "r")
    alpha = float(adapter_reader.get_field(gguf.Keys.Adapter.LORA_ALPHA).contents())
    ab = {t.name: np.array(t.data, dtype=np.float32) for t in adapter_reader.tensors}
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(str(out), arch)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        sub = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub)
    for t in reader.tensors:
        if t.name + ".lora_a" in ab:
            a, b = ab[t.name + ".lora_a"], ab[t.name + ".lora_b"]
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            writer.add_tensor(t.name, w + (alpha / a.shape[0]) * (b @ a))
        else:
            writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the base model (GGUF)")
    p.add_argument("--adapter", type=Path, required=True, help="the LoRA adapter (GGUF, from train.py)")
    p.add_argument("--chat", type=Path, help="JSONL chats: the first one's turns before its last assistant turn are the prompt")
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    p.add_argument("--npy", type=Path, help="also write the last position's logits, shape (2, vocab): base, adapted")
    p.add_argument("--checkpoint", type=Path, help="train.py's checkpoint.pt to compare the adapter's matrices with")
    p.add_argument("--merged", action="store_true", help="also run the merged-weights layout check (see above)")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train.resolve_base(args.base)
        if not args.adapter.is_file():
            raise train.InputError(f"adapter {args.adapter}: no such file")
        messages = DEFAULT_CHAT
        if args.chat:
            messages = train.read_chats(args.chat, "chat")[0][1][:-1]
        alpha, lora = lora_gguf.read_adapter(args.adapter, args.base)
        tokenizer, model = train.load_base(args.base)
        text, ids = train.render_prompt(tokenizer, messages)
        base_logits = last_logits(model, ids, torch)
        adapted = apply_lora(model, alpha, lora, torch)
        adapted_logits = last_logits(adapted, ids, torch)
        report = {
            "base": str(args.base),
            "adapter": str(args.adapter),
            "alpha": alpha,
            "rank": next(iter(lora.values()))[0].shape[0],
            "modules": len(lora),
            "prompt_text": text,
            "prompt_tokens": ids,
            "base_top": top(base_logits, args.top_k, tokenizer),
            "adapted_top": top(adapted_logits, args.top_k, tokenizer),
            "adapter_effect_max_abs": round(float(np.abs(adapted_logits - base_logits).max()), 5),
        }
        if args.checkpoint:
            report["checkpoint_max_abs_diff"] = compare_checkpoint(args.checkpoint, lora, torch)
        if args.merged:
            with tempfile.TemporaryDirectory() as tmp:
                merged_path = Path(tmp) / "merged.gguf"
                write_merged(args.base, args.adapter, merged_path)
                _, merged = train.load_base(merged_path)
                merged_logits = last_logits(merged, ids, torch)
            diff = np.abs(merged_logits - adapted_logits)
            report["merged"] = {
                "max_abs_diff": round(float(diff.max()), 6),
                "top_agree": [t["id"] for t in top(merged_logits, args.top_k, tokenizer)] == [t["id"] for t in report["adapted_top"]],
            }
        if args.npy:
            np.save(args.npy, np.stack([base_logits, adapted_logits]))
    except (train.InputError, lora_gguf.AdapterError) as e:
        print(f"check_adapter: error: {e}", file=sys.stderr)
        return 2
    output = json.dumps(report, indent=2)
    if args.out:
        args.out.write_text(output + "\n")
    else:
        print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
