#!/usr/bin/env python3
"""Validate an all-MiniLM-L6-v2 ONNX produced by export_minilm_onnx.py.

    python3 check_minilm_onnx.py --onnx PATH/model.onnx --model-dir DIR \
        [--ref-onnx int8/model.onnx] [--no-numpy-ref] [--timing-runs N]

Needs: numpy, onnxruntime, tokenizers (and onnx only if --ref-onnx is not given
and nothing else; the numpy reference forward pass reuses the safetensors parser
of export_minilm_onnx.py from the same directory).

Checks (exit status 1 if any fails):
  * graph inputs/outputs are as expected
  * token-level output matches a pure-numpy BERT forward pass of the
    safetensors weights (max abs diff < 1e-3)
  * if --ref-onnx: cosine of mean-pooled, L2-normalised embeddings vs the
    reference model > 0.97 for every sentence
  * "A man is eating food." is closer to "A man is eating a piece of bread."
    than to "A man is riding a horse."
  * batch=1 and a padded batch=3 give the same embedding (max abs diff < 1e-5)
Also reports time per 256-token sequence on 1 and 2 threads.
"""

import argparse
import math
import os
import sys
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The quick brown fox jumps over the lazy dog.",
    "Sanctum keeps your documents on your own machine and answers questions about them.",
    "How do I reset the administrator password?",
    "Le chat est assis sur le tapis.",
    "",
]
MAX_LEN = 256


def load_tokenizer(model_dir):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    # tokenizer.json ships with truncation 128 and fixed padding to 128: override.
    tok.enable_truncation(max_length=MAX_LEN)
    tok.no_padding()
    return tok


def encode(tok, texts, pad=True):
    encs = tok.encode_batch(texts)
    n = max(len(e.ids) for e in encs) if pad else None
    ids, mask, tt = [], [], []
    for e in encs:
        L = len(e.ids)
        padn = (n - L) if pad else 0
        ids.append(list(e.ids) + [0] * padn)
        mask.append(list(e.attention_mask) + [0] * padn)
        tt.append(list(e.type_ids) + [0] * padn)
    return {
        "input_ids": np.array(ids, dtype=np.int64),
        "attention_mask": np.array(mask, dtype=np.int64),
        "token_type_ids": np.array(tt, dtype=np.int64),
    }


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def run(sess, feed):
    names = {i.name for i in sess.get_inputs()}
    out = sess.run(["last_hidden_state"], {k: v for k, v in feed.items() if k in names})[0]
    return out


def pool(hidden, mask):
    m = mask.astype(np.float32)[:, :, None]
    s = (hidden * m).sum(axis=1)
    c = np.clip(m.sum(axis=1), 1e-9, None)
    e = s / c
    return e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)


# ---- independent numpy reference of HF BertModel ----

def numpy_bert(t, feed, layers=6, heads=12, eps=1e-12):
    def ln(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w + b

    verf = np.vectorize(math.erf, otypes=[np.float64])

    def lin(x, name):
        return x @ t[name + ".weight"].astype(np.float64).T + t[name + ".bias"]

    ids, mask, tt = feed["input_ids"], feed["attention_mask"], feed["token_type_ids"]
    B, S = ids.shape
    x = (t["embeddings.word_embeddings.weight"][ids].astype(np.float64)
         + t["embeddings.position_embeddings.weight"][np.arange(S)][None]
         + t["embeddings.token_type_embeddings.weight"][tt])
    x = ln(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    H = x.shape[-1]
    hd = H // heads
    ext = (1.0 - mask[:, None, None, :].astype(np.float64)) * np.finfo(np.float32).min
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def split(y):
            return y.reshape(B, S, heads, hd).transpose(0, 2, 1, 3)

        q = split(lin(x, p + "attention.self.query"))
        k = split(lin(x, p + "attention.self.key"))
        v = split(lin(x, p + "attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + ext
        s = s - s.max(-1, keepdims=True)
        pr = np.exp(s)
        pr /= pr.sum(-1, keepdims=True)
        c = (pr @ v).transpose(0, 2, 1, 3).reshape(B, S, H)
        x = ln(lin(c, p + "attention.output.dense") + x,
               t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + verf(h / math.sqrt(2.0)))
        x = ln(lin(h, p + "output.dense") + x,
               t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    return x


def time_per_seq(path, threads, feed, runs):
    sess = session(path, threads)
    for _ in range(2):
        run(sess, feed)
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(sess, feed)
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1000.0, float(min(ts)) * 1000.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--model-dir", required=True, help="dir with tokenizer.json (and model.safetensors for the numpy ref)")
    ap.add_argument("--ref-onnx", help="reference ONNX (e.g. the int8 export) to compare embeddings with")
    ap.add_argument("--no-numpy-ref", action="store_true")
    ap.add_argument("--timing-runs", type=int, default=10, help="0 to skip timing")
    args = ap.parse_args()

    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("PASS " if cond else "FAIL ") + msg)
        ok = ok and bool(cond)

    tok = load_tokenizer(args.model_dir)
    sess = session(args.onnx, 2)
    ins = [(i.name, i.type, i.shape) for i in sess.get_inputs()]
    outs = [(o.name, o.type, o.shape) for o in sess.get_outputs()]
    print("inputs :", ins)
    print("outputs:", outs)
    check(ins == [(n, "tensor(int64)", ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
          and outs == [("last_hidden_state", "tensor(float)", ["batch", "sequence", 384])], "graph signature")

    feed = encode(tok, SENTENCES)
    hid = run(sess, feed)
    emb = pool(hid, feed["attention_mask"])

    if not args.no_numpy_ref:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import export_minilm_onnx as ex
        t = ex.normalise_names(ex.load_safetensors(os.path.join(args.model_dir, "model.safetensors")))
        ref = numpy_bert(t, feed)
        m = feed["attention_mask"].astype(bool)
        d = np.abs(hid - ref)[m].max()  # only real tokens matter to mean pooling
        check(d < 1e-3, f"token states vs float64 numpy BERT: max abs diff {d:.2e} (< 1e-3)")
        cos_np = (emb * pool(ref, feed["attention_mask"])).sum(1)
        check(cos_np.min() > 0.99999, f"pooled cosine vs numpy BERT: min {cos_np.min():.7f}")

    if args.ref_onnx:
        rsess = session(args.ref_onnx, 2)
        remb = pool(run(rsess, feed), feed["attention_mask"])
        cos = (emb * remb).sum(1)
        for s, c in zip(SENTENCES, cos):
            print(f"  cos vs ref {c:.5f}  {s!r}")
        check(cos.min() > 0.97, f"cosine vs reference: min {cos.min():.5f} mean {cos.mean():.5f} (> 0.97)")

    sim_bread = float(emb[0] @ emb[1])
    sim_horse = float(emb[0] @ emb[2])
    check(sim_bread > sim_horse, f"sim(food, bread)={sim_bread:.4f} > sim(food, horse)={sim_horse:.4f}")

    single = pool(*(lambda f: (run(sess, f), f["attention_mask"]))(encode(tok, [SENTENCES[0]])))
    b3 = encode(tok, [SENTENCES[0], SENTENCES[4], SENTENCES[3]])  # SENTENCES[0] gets padded
    assert (b3["attention_mask"][0] == 0).any(), "batch check needs padding"
    multi = pool(run(sess, b3), b3["attention_mask"])
    d = float(np.abs(single[0] - multi[0]).max())
    check(d < 1e-5, f"batch=1 vs padded batch=3: max abs diff {d:.2e} (< 1e-5)")

    if args.timing_runs > 0:
        text = " ".join(["The appliance indexes documents locally and retrieves relevant passages."] * 40)
        f256 = encode(tok, [text])
        n = f256["input_ids"].shape[1]
        print(f"timing: batch=1, {n} tokens, median (min) over {args.timing_runs} runs")
        models = [("fp32", args.onnx)] + ([("ref", args.ref_onnx)] if args.ref_onnx else [])
        for name, path in models:
            for th in (1, 2):
                med, mn = time_per_seq(path, th, f256, args.timing_runs)
                print(f"  {name:5s} threads={th}: {med:7.1f} ms ({mn:.1f})")

    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
