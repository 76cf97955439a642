#!/usr/bin/env python3
"""Trains a LoRA answer adapter for a GGUF base model; `sanctum finetune train` runs it.

The base model is loaded with transformers straight from its GGUF file (dequantized to
float32), a PEFT LoRA is put on the chosen linear layers, and it is trained on chats in the
`messages` format that `sanctum finetune export` writes (system, user, assistant), with the
loss on the final assistant turn only. The prompt is rendered with the model's own chat
template (the one llama.cpp applies at inference) and tokenized alone, as at inference, so
the adapter learns exactly the continuation the appliance asks for.

An answer may open with a short decision, its text up to the first full stop ("SUPPORTED.",
"NOT ENOUGH INFORMATION."): its *label*. The label's tokens can be weighted in the loss
(--label-weight) and balanced across labels (--balance: each label's tokens count inversely
to how often it occurs), so a frequent short answer cannot win by sheer numbers; the loss
of an example is its weighted token sum over a constant (the mean answer length), so a
short answer does not weigh more a token than a long one. With validation data the labels
are scored too (the label whose first token the model rates highest at the answer's first
position, and whether greedy decoding starts it), before training and after every epoch;
with more than one epoch the adapter of the epoch with the best validation macro-F1 over the
labels is the one written.

Output: the adapter in llama.cpp's GGUF LoRA format (see lora_gguf.py) and a JSON report
(input hashes, hyperparameters, loss curve, validation loss and label scores before, after
every epoch and of the adapter kept, timing).
Progress goes to stdout as one JSON object a line (`{"step", "loss", "eta_s", ...}`;
other events carry an `"event"` key); diagnostics go to stderr. Resumable: with
--checkpoint-dir, the adapter weights, optimizer, schedule, random state and step are
saved every --checkpoint-every steps and on SIGTERM/SIGINT, and a later run with the same
inputs and hyperparameters continues from there.

Exit status: 0 done, 2 bad input (the message names the input and the cause),
143 stopped by a signal after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

# transformers' GGUF loader draws a progress bar on stderr; tqdm reads this when imported
os.environ.setdefault("TQDM_DISABLE", "1")

# the sibling modules are imported from the (possibly read-only) install: no __pycache__
sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
import lora_gguf  # noqa: E402  (the sibling module; numpy + gguf only)

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2
ROLES = ("system", "user", "assistant")


class InputError(Exception):
    """A problem with an input the caller gave (exit status 2)."""


@dataclass
class Example:
    line: int
    input_ids: list[int]
    # position i holds the token the model must predict after input_ids[i], or -100
    targets: list[int]
    # the answer's label (its opening decision, see the module text), if it has one
    label: str | None = None
    # per answer token (in target order): how much its loss counts
    weights: list[float] | None = None


# the longest text taken as an answer's label
LABEL_CHARS = 48


def answer_label(answer: str) -> str | None:
    """The decision an answer opens with: its text up to the first full stop, when short."""
    head, dot, _ = answer.strip().partition(".")
    if dot and 0 < len(head) <= LABEL_CHARS and "\n" not in head:
        return head.strip()
    return None


def emit(obj: dict) -> None:
    """One progress/event line on stdout."""
    print(json.dumps(obj), flush=True)


def log(msg: str) -> None:
    print(f"train: {msg}", file=sys.stderr, flush=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------
# inputs


def read_chats(path: Path, what: str) -> list[tuple[int, list[dict]]]:
    """The chats of a JSONL file as (line number, messages), validated."""
    if not path.is_file():
        raise InputError(f"{what} {path}: no such file")
    chats = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.strip())
            except json.JSONDecodeError as e:
                raise InputError(f"{what} {path} line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
            msgs = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(msgs, list) or not msgs:
                raise InputError(f'{what} {path} line {n}: expected an object {{"messages": [...]}} with at least one message')
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    raise InputError(
                        f"{what} {path} line {n}: message {i + 1} is not "
                        f'{{"role": "system"|"user"|"assistant", "content": "..."}}'
                    )
            if not any(m["role"] == "assistant" for m in msgs):
                raise InputError(f"{what} {path} line {n}: the chat has no assistant turn to learn")
            if msgs[-1]["role"] != "assistant":
                raise InputError(f"{what} {path} line {n}: the chat must end with the assistant turn to learn")
            if not msgs[-1]["content"].strip():
                raise InputError(f"{what} {path} line {n}: the assistant turn is empty")
            chats.append((n, msgs))
    if not chats:
        raise InputError(f"{what} {path}: no examples (the file is empty)")
    return chats


def render_prompt(tokenizer, messages: list[dict]) -> tuple[str, list[int]]:
    """The prompt text for `messages` with the assistant's turn opened, and its tokens as
    llama.cpp makes them at inference (special tokens parsed, BOS as the model says)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text, tokenizer(text, add_special_tokens=True)["input_ids"]


def encode(tokenizer, path: Path, what: str, chats, max_tokens: int) -> tuple[list[Example], int]:
    """Tokenizes chats: the prompt (every turn but the last, with the generation prompt) as
    llama.cpp tokenizes it at inference, then the answer and the template's end-of-turn
    marker, which is all the loss is computed on. Returns the examples and how many were
    left out for exceeding `max_tokens`."""
    out, too_long = [], 0
    for n, msgs in chats:
        prompt, prompt_ids = render_prompt(tokenizer, msgs[:-1])
        full = tokenizer.apply_chat_template(msgs, tokenize=False)
        if not full.startswith(prompt):
            raise InputError(f"{what} {path} line {n}: the chat template does not render the prompt as a prefix of the chat")
        # the answer and the end-of-turn marker, without the template's trailing newline
        answer = full[len(prompt):].rstrip()
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = prompt_ids + answer_ids
        if len(ids) > max_tokens:
            too_long += 1
            continue
        targets = [-100] * (len(prompt_ids) - 1) + answer_ids + [-100]
        label = answer_label(msgs[-1]["content"])
        out.append(Example(line=n, input_ids=ids, targets=targets, label=label))
    return out, too_long


def label_tokens(tokenizer, label: str) -> int:
    """How many of an answer's first tokens spell its label (and the full stop after it)."""
    return len(tokenizer(label + ".", add_special_tokens=False)["input_ids"])


def weigh(tokenizer, examples: list[Example], label_weight: float, balance: bool) -> dict:
    """Sets each example's token weights: 1 for every answer token, and for the tokens of
    its label `label_weight`, times (with `balance`) examples / (labels x examples with that
    label). Returns the weight of each label."""
    counts: dict[str, int] = {}
    for e in examples:
        if e.label is not None:
            counts[e.label] = counts.get(e.label, 0) + 1
    labelled = sum(counts.values())
    per_label = {
        label: label_weight * (labelled / (len(counts) * n) if balance else 1.0) for label, n in sorted(counts.items())
    }
    for e in examples:
        n_answer = sum(t != -100 for t in e.targets)
        w = [1.0] * n_answer
        if e.label is not None:
            for i in range(min(label_tokens(tokenizer, e.label), n_answer)):
                w[i] = per_label[e.label]
        e.weights = w
    return per_label


def label_first_tokens(tokenizer, labels) -> dict[int, str] | None:
    """{first token: label} when every label starts with its own token, else None."""
    first = {}
    for label in labels:
        ids = tokenizer(label + ".", add_special_tokens=False)["input_ids"]
        if not ids or ids[0] in first:
            return None
        first[ids[0]] = label
    return first


def load_base(path: Path):
    """The tokenizer and the float32 model transformers builds from a GGUF file (it
    dequantizes the weights and, for llama, puts the q/k rows back in Hugging Face order)."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    # library deprecation notices are noise to the caller, who reads stderr for errors
    warnings.filterwarnings("ignore", category=FutureWarning)
    folder, name = str(path.resolve().parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        raise InputError(f"base {path}: transformers cannot load it ({type(e).__name__}: {e})") from None
    if not tokenizer.chat_template:
        raise InputError(f"base {path}: the GGUF file carries no chat template")
    return tokenizer, model


def resolve_base(path: Path):
    """Checks the base file and reads its architecture (before the slow model load)."""
    if not path.is_file():
        raise InputError(f"base {path}: no such file")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise InputError(f"base {path}: not a GGUF file")
    try:
        info = lora_gguf.read_base(path)
    except Exception as e:  # noqa: BLE001  (a damaged file fails in many ways; name it)
        raise InputError(f"base {path}: cannot read it as a GGUF model ({e})") from None
    if info.architecture not in lora_gguf.PERMUTES_QK:
        raise InputError(
            f"base {path}: architecture {info.architecture!r} is not supported "
            f"(supported: {', '.join(lora_gguf.PERMUTES_QK)})"
        )
    return info


# ---------------------------------------------------------------------------------------
# training


def schedule(n_examples: int, batch: int, epochs: int, max_steps: int | None, seed: int) -> list[list[int]]:
    """The batches of every step, fixed by the seed: each epoch is a fresh shuffle. With
    max_steps, that many steps (more epochs if needed, or fewer)."""
    per_epoch = math.ceil(n_examples / batch)
    total = max_steps if max_steps else epochs * per_epoch
    steps, epoch = [], 0
    while len(steps) < total:
        order = list(range(n_examples))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        steps.extend(order[i : i + batch] for i in range(0, n_examples, batch))
        epoch += 1
    return steps[:total]


def collate(examples: list[Example], pad_id: int, torch, device):
    """Right-padded input ids, attention mask and targets for a batch."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    targets = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        mask[i, :n] = 1
        targets[i, :n] = torch.tensor(e.targets)
    return ids.to(device), mask.to(device), targets.to(device)


def answer_logits(causal_lm, ids, mask, targets):
    """The output layer's logits at the answer positions only (for a ~400-token prompt and a
    50k-150k vocabulary that skips most of its cost), in target order."""
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    where = targets != -100
    return causal_lm.lm_head(hidden[where]).float(), targets[where]


def batch_loss(causal_lm, ids, mask, targets, weights, torch):
    """(summed cross-entropy over the answer tokens, the same with each token's weight,
    answer tokens)."""
    logits, wanted = answer_logits(causal_lm, ids, mask, targets)
    ce = torch.nn.functional.cross_entropy(logits, wanted, reduction="none")
    return ce.sum(), (ce * weights).sum(), int(wanted.numel())


def macro_f1(pairs: list[tuple[str, str | None]], labels) -> float:
    """Mean F1 over `labels` of (expected, predicted) pairs."""
    f1s = []
    for label in labels:
        tp = sum(1 for e, p in pairs if e == label and p == label)
        fp = sum(1 for e, p in pairs if e != label and p == label)
        fn = sum(1 for e, p in pairs if e == label and p != label)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / max(len(f1s), 1)


def evaluate(model, causal_lm, examples, pad_id, torch, device, autocast, first_tokens) -> dict:
    """Token-weighted mean answer loss over `examples`, and with `first_tokens` ({token:
    label}) the labels: `label_macro_f1`/`label_accuracy` of the label whose first token is
    rated highest, `greedy_label_accuracy` of greedy decoding's first token."""
    model.eval()
    total, count, ranked, greedy = 0.0, 0, [], []
    with torch.no_grad(), autocast():
        for e in examples:
            ids, mask, targets = collate([e], pad_id, torch, device)
            logits, wanted = answer_logits(causal_lm, ids, mask, targets)
            total += torch.nn.functional.cross_entropy(logits, wanted, reduction="sum").item()
            count += int(wanted.numel())
            if first_tokens and e.label is not None:
                row = logits[0]
                candidates = list(first_tokens)
                best = candidates[int(torch.argmax(row[candidates]))]
                ranked.append((e.label, first_tokens[best]))
                greedy.append((e.label, first_tokens.get(int(torch.argmax(row)))))
    model.train()
    out = {"loss": total / max(count, 1)}
    if ranked:
        labels = sorted(set(first_tokens.values()))
        out["label_accuracy"] = round(sum(a == b for a, b in ranked) / len(ranked), 4)
        out["label_macro_f1"] = round(macro_f1(ranked, labels), 4)
        out["greedy_label_accuracy"] = round(sum(a == b for a, b in greedy) / len(greedy), 4)
        out["predicted"] = {label: sum(1 for _, p in ranked if p == label) for label in labels}
    return out


def lora_matrices(model) -> dict:
    """{hf module name: (A (r, in), B (out, r))} as float32 numpy arrays."""
    from peft.tuners.lora import LoraLayer

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and "default" in module.lora_A:
            a = module.lora_A["default"].weight.detach().float().cpu().numpy()
            b = module.lora_B["default"].weight.detach().float().cpu().numpy()
            out[name] = (a, b)
    return out


def save_checkpoint(path: Path, state: dict, torch) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", type=Path, required=True, help="the base model, a GGUF file")
    p.add_argument("--data", type=Path, required=True, help="training chats (JSONL, `sanctum finetune export`)")
    p.add_argument("--valid", type=Path, help="validation chats (JSONL); loss reported before and after")
    p.add_argument("--out", type=Path, required=True, help="where to write the llama.cpp GGUF LoRA adapter")
    p.add_argument("--report", type=Path, required=True, help="where to write the JSON report")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    p.add_argument("--targets", default="q_proj,k_proj,v_proj,o_proj",
                   help=f"comma-separated layers to adapt, of: {','.join(lora_gguf.HF_TO_GGUF)}")
    p.add_argument("--layers", help="adapt only these decoder layers, e.g. 15-29 or 0,2,4 (default: all); "
                   "on CPU the backward pass then stops at the lowest adapted layer")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--label-weight", type=float, default=1.0,
                   help="weight of the tokens of an answer's label (its opening decision) in the loss")
    p.add_argument("--balance", action="store_true",
                   help="weigh each label's tokens inversely to how often the label occurs")
    p.add_argument("--max-steps", type=int, help="train this many steps (overrides --epochs)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (linear decay to 10%% of it)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=2048, help="leave out examples longer than this")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: all cores)")
    p.add_argument("--checkpoint-dir", type=Path, help="save resumable checkpoints here (and resume from one)")
    p.add_argument("--checkpoint-every", type=int, default=25, help="steps between checkpoints")
    a = p.parse_args(argv)
    for name in ("rank", "epochs", "batch", "max_tokens", "checkpoint_every"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.max_steps is not None and a.max_steps < 1:
        p.error("--max-steps must be at least 1")
    if not a.label_weight > 0:
        p.error("--label-weight must be above 0")
    if not 0 <= a.dropout < 1:
        p.error("--dropout must be in [0, 1)")
    if a.layers:
        try:
            layers = []
            for part in a.layers.split(","):
                lo, _, hi = part.strip().partition("-")
                layers.extend(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            p.error(f"--layers {a.layers!r}: expected layer numbers and ranges such as 15-29 or 0,2,4")
        if not layers or min(layers) < 0:
            p.error(f"--layers {a.layers!r}: expected layer numbers and ranges such as 15-29 or 0,2,4")
        a.layers = sorted(set(layers))
    a.targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    unknown = [t for t in a.targets if t not in lora_gguf.HF_TO_GGUF]
    if unknown or not a.targets:
        p.error(f"--targets: unknown {', '.join(unknown) or '(none given)'}; choose from {','.join(lora_gguf.HF_TO_GGUF)}")
    return a


def run(args: argparse.Namespace) -> None:
    started = time.time()
    # cheap checks first: no model load for a typo
    base_info = resolve_base(args.base)
    chats = read_chats(args.data, "data")
    valid_chats = read_chats(args.valid, "valid") if args.valid else []

    import numpy as np
    import torch
    import transformers
    import peft

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: torch sees no CUDA device")
    device = torch.device(args.device)

    hashes = {"base": sha256(args.base), "data": sha256(args.data)}
    if args.valid:
        hashes["valid"] = sha256(args.valid)
    hyper = {
        "rank": args.rank, "alpha": args.alpha, "dropout": args.dropout, "targets": args.targets, "layers": args.layers,
        "epochs": args.epochs, "max_steps": args.max_steps, "lr": args.lr, "lr_schedule": "linear to 10%",
        "batch": args.batch, "seed": args.seed, "max_tokens": args.max_tokens, "optimizer": "AdamW",
        "label_weight": args.label_weight, "balance": args.balance,
        "loss": "weighted answer-token cross-entropy sum / mean answer tokens",
    }

    load_started = time.time()
    tokenizer, causal_lm = load_base(args.base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    log(f"loaded {args.base.name} ({base_info.architecture}) in {time.time() - load_started:.1f}s")

    examples, too_long = encode(tokenizer, args.data, "data", chats, args.max_tokens)
    if not examples:
        raise InputError(f"data {args.data}: every example is longer than --max-tokens {args.max_tokens}")
    valid, valid_too_long = encode(tokenizer, args.valid, "valid", valid_chats, args.max_tokens) if args.valid else ([], 0)
    if too_long or valid_too_long:
        log(f"left out {too_long} training and {valid_too_long} validation examples longer than {args.max_tokens} tokens")
    label_weights = weigh(tokenizer, examples, args.label_weight, args.balance)
    weigh(tokenizer, valid, 1.0, False)
    label_counts = {label: sum(1 for e in examples if e.label == label) for label in label_weights}
    first_tokens = label_first_tokens(tokenizer, label_weights) if len(label_weights) > 1 else None
    if len(label_weights) > 1 and first_tokens is None:
        log("the labels do not each start with their own token: validation scores the loss only")
    # each example's loss is its weighted token sum over this constant
    norm = sum(len(e.weights) for e in examples) / len(examples)
    per_epoch = math.ceil(len(examples) / args.batch)

    torch.manual_seed(args.seed)
    config = peft.LoraConfig(
        r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout, target_modules=args.targets,
        layers_to_transform=args.layers, bias="none", task_type="CAUSAL_LM",
    )
    if args.layers and max(args.layers) >= causal_lm.config.num_hidden_layers:
        raise InputError(f"--layers: the base has layers 0-{causal_lm.config.num_hidden_layers - 1}")
    model = peft.get_peft_model(causal_lm, config)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    steps = schedule(len(examples), args.batch, args.epochs, args.max_steps, args.seed)
    total = len(steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 - 0.9 * min(s, total) / total)

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)

    fingerprint = {"hashes": hashes, "hyper": hyper, "examples": len(examples)}
    ckpt = args.checkpoint_dir / CHECKPOINT if args.checkpoint_dir else None
    first, losses, valid_before, trained_s, resumed_from = 0, [], None, 0.0, None
    epochs_seen, best = [], None
    if ckpt and ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT or state.get("fingerprint") != fingerprint:
            raise InputError(
                f"checkpoint {ckpt}: made for other inputs or hyperparameters; "
                "remove it or choose another --checkpoint-dir"
            )
        peft.set_peft_model_state_dict(model, state["lora"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        first, losses, valid_before = state["step"], state["losses"], state["valid_before"]
        epochs_seen, best = state["epochs"], state["best"]
        trained_s, resumed_from = state["trained_s"], state["step"]
        log(f"resumed from {ckpt} at step {first} of {total}")
        emit({"event": "resumed", "step": first, "total": total})

    def checkpoint(step: int) -> None:
        if not ckpt:
            return
        args.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(ckpt, {
            "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "step": step,
            "lora": peft.get_peft_model_state_dict(model, save_embedding_layers=False), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
            "losses": losses, "valid_before": valid_before, "trained_s": trained_s,
            "epochs": epochs_seen, "best": best,
        }, torch)

    emit({"event": "start", "examples": len(examples), "valid_examples": len(valid), "total": total,
          "trainable_params": sum(p.numel() for p in params), "architecture": base_info.architecture,
          "labels": label_counts, "label_weights": label_weights})
    if valid and valid_before is None:
        valid_before = evaluate(model, causal_lm, valid, pad_id, torch, device, autocast, first_tokens)
        emit({"event": "valid", "step": 0, **valid_before})

    def score(scores: dict) -> tuple:
        # better: higher label macro-F1, then lower loss
        return (scores.get("label_macro_f1", 0.0), -scores["loss"])

    def end_of_epoch(done: int) -> None:
        nonlocal best
        scores = evaluate(model, causal_lm, valid, pad_id, torch, device, autocast, first_tokens)
        epochs_seen.append({"epoch": len(epochs_seen) + 1, "step": done, **scores})
        emit({"event": "valid", "step": done, "epoch": len(epochs_seen), **scores})
        if best is None or score(scores) > score(best["scores"]):
            lora = peft.get_peft_model_state_dict(model, save_embedding_layers=False)
            best = {"epoch": len(epochs_seen), "step": done, "scores": scores,
                    "lora": {k: v.detach().clone().cpu() for k, v in lora.items()}}

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    step_times = []
    for step in range(first, total):
        t0 = time.time()
        ids, mask, targets = collate([examples[i] for i in steps[step]], pad_id, torch, device)
        weights = torch.tensor([w for i in steps[step] for w in examples[i].weights], device=device)
        with autocast():
            loss_sum, weighted_sum, n = batch_loss(causal_lm, ids, mask, targets, weights, torch)
        loss = loss_sum / n
        optimizer.zero_grad(set_to_none=True)
        (weighted_sum / (norm * len(steps[step]))).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        dt = time.time() - t0
        trained_s += dt
        step_times.append(dt)
        recent = step_times[-20:]
        losses.append(round(loss.item(), 5))
        emit({"step": step + 1, "total": total, "loss": losses[-1], "lr": float(f"{lr:.6g}"),
              "tokens": int(mask.sum()), "step_s": round(dt, 3),
              "eta_s": round(sum(recent) / len(recent) * (total - step - 1), 1)})
        done = step + 1
        if valid and done % per_epoch == 0 and done < total:
            end_of_epoch(done)
        if stop["signal"] is not None:
            checkpoint(done)
            emit({"event": "stopped", "step": done, "total": total, "checkpoint": str(ckpt) if ckpt else None})
            log(f"stopped by signal {stop['signal']} at step {done}" + (f"; checkpoint in {ckpt}" if ckpt else ""))
            sys.exit(128 + stop["signal"])
        if done % args.checkpoint_every == 0 and done < total:
            checkpoint(done)

    valid_after = None
    if valid:
        if len(epochs_seen) == 0 or epochs_seen[-1]["step"] != total:
            end_of_epoch(total)
        valid_after = epochs_seen[-1]
        if best["step"] != total:
            # an earlier epoch scored better on the validation chats: that adapter is kept
            peft.set_peft_model_state_dict(model, best["lora"])
            log(f"keeping the adapter of epoch {best['epoch']} (step {best['step']}): best validation label macro-F1")
    checkpoint(total)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    shapes = lora_gguf.write_adapter(args.out, args.base, args.alpha, lora_matrices(model),
                                     name=f"sanctum answer adapter for {args.base.stem}")
    seconds = time.time() - started
    report = {
        "base": {"path": str(args.base.resolve()), "sha256": hashes["base"], "architecture": base_info.architecture,
                 "n_head": base_info.n_head, "n_head_kv": base_info.n_head_kv},
        "data": {"path": str(args.data.resolve()), "sha256": hashes["data"], "examples": len(examples),
                 "left_out_too_long": too_long,
                 "answer_tokens": sum(sum(t != -100 for t in e.targets) for e in examples),
                 "tokens": sum(len(e.input_ids) for e in examples)},
        "valid": {"path": str(args.valid.resolve()), "sha256": hashes["valid"], "examples": len(valid),
                  "left_out_too_long": valid_too_long, "loss_before": valid_before["loss"],
                  "loss_after": valid_after["loss"], "before": valid_before, "epochs": epochs_seen,
                  "kept": {"epoch": best["epoch"], "step": best["step"], **best["scores"]}}
        if valid else None,
        "labels": {"counts": label_counts, "weights": label_weights},
        "hyperparameters": hyper,
        "steps": total,
        "loss_curve": losses,
        "adapter": {"path": str(args.out.resolve()), "sha256": sha256(args.out), "tensors": len(shapes),
                    "format": "llama.cpp GGUF LoRA (lora_a: ne [in, r], lora_b: ne [r, out]; f32)"},
        "seconds": round(seconds, 2),
        "train_seconds": round(trained_s, 2),
        "seconds_per_step": round(trained_s / total, 4),
        "resumed_from_step": resumed_from,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "transformers": transformers.__version__,
                     "peft": peft.__version__, "gguf": _version("gguf"), "numpy": np.__version__},
    }
    args.report.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.report.with_name(args.report.name + ".partial")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(args.report)
    emit({"event": "done", "adapter": str(args.out), "report": str(args.report), "seconds": round(seconds, 2),
          "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
          "valid_before": valid_before["loss"] if valid else None, "valid_after": valid_after["loss"] if valid else None,
          "kept_epoch": best["epoch"] if valid else None})


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except InputError as e:
        print(f"train: error: {e}", file=sys.stderr)
        return 2
    except lora_gguf.AdapterError as e:
        print(f"train: error: adapter {args.out}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
