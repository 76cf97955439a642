#!/usr/bin/env python3
"""Export sentence-transformers all-MiniLM-L6-v2 (BERT) to an fp32 ONNX file
without torch.

The graph is built by hand with the `onnx` package from the tensors in
`model.safetensors` (parsed here with numpy; the `safetensors` package is not
needed).  Only numpy and onnx are required.

    python3 export_minilm_onnx.py --model-dir DIR --out PATH/model.onnx

Inputs  : input_ids, attention_mask, token_type_ids   int64 [batch, sequence]
Output  : last_hidden_state                           float32 [batch, sequence, 384]

No pooling is done in the graph: the consumer mean-pools last_hidden_state with
the attention mask and L2-normalises (as sentence-transformers does).

The output is deterministic: the same inputs and the same onnx/numpy/protobuf
versions give a byte-identical file (fixed producer fields and ir_version, no
timestamps, fixed node/initializer names and order, deterministic protobuf
serialisation).  The sha256 of the written file is printed at the end.
"""

import argparse
import hashlib
import json
import os
import struct
import sys

try:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover
    sys.exit(f"error: {e}; install the pinned packages: pip install onnx numpy")

PRODUCER_NAME = "sanctum-export-minilm"
PRODUCER_VERSION = "1"
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17

# The values this exporter's graph is written for.  Anything else -> refuse.
EXPECTED_CONFIG = {
    "model_type": "bert",
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "hidden_act": "gelu",  # erf form in HF BERT
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
}
# Keys that may be absent, but if present must have this value.
OPTIONAL_CONFIG = {
    "position_embedding_type": "absolute",
}

# Tensors present in the checkpoint that the graph does not use.
IGNORED_TENSORS = {
    "embeddings.position_ids",
    "pooler.dense.weight",
    "pooler.dense.bias",
}

_ST_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}


def fail(msg):
    sys.exit(f"error: {msg}")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------

def load_config(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            cfg = json.load(f)
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    except ValueError as e:
        fail(f"{path} is not valid JSON: {e}")
    problems = []
    for key, want in EXPECTED_CONFIG.items():
        if key not in cfg:
            problems.append(f"{key}: missing (expected {want!r})")
            continue
        got = cfg[key]
        if isinstance(want, float):
            ok = isinstance(got, (int, float)) and abs(got - want) <= 1e-6 * abs(want)
        else:
            ok = got == want
        if not ok:
            problems.append(f"{key}: got {got!r}, expected {want!r}")
    for key, want in OPTIONAL_CONFIG.items():
        if key in cfg and cfg[key] != want:
            problems.append(f"{key}: got {cfg[key]!r}, expected {want!r}")
    if problems:
        fail(
            f"{path} does not describe the model this exporter is written for "
            "(all-MiniLM-L6-v2 / BERT 6x384):\n  " + "\n  ".join(problems)
        )
    return cfg


def load_safetensors(path):
    """Parse a .safetensors file with numpy only.  Returns {name: ndarray}."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                fail(f"{path}: too short to be a safetensors file")
            (hlen,) = struct.unpack("<Q", raw)
            if hlen <= 0 or 8 + hlen > size or hlen > 100 * 1024 * 1024:
                fail(f"{path}: bad safetensors header length {hlen}")
            header = json.loads(f.read(hlen).decode("utf-8"))
            data = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    except ValueError as e:
        fail(f"{path}: bad safetensors header: {e}")
    if len(data) != size - 8 - hlen:
        fail(f"{path}: short read")
    tensors = {}
    for name in sorted(header):
        if name == "__metadata__":
            continue
        info = header[name]
        dt = _ST_DTYPES.get(info.get("dtype"))
        if dt is None:
            fail(f"{path}: tensor {name} has unsupported dtype {info.get('dtype')!r}")
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * dt.itemsize:
            fail(f"{path}: tensor {name} has inconsistent offsets {begin}..{end}")
        arr = np.frombuffer(data, dtype=dt, count=count, offset=begin).reshape(shape)
        tensors[name] = arr
    return tensors


def normalise_names(tensors):
    """Accept both bare BertModel names and names prefixed with 'bert.'."""
    if tensors and all(k.startswith("bert.") for k in tensors):
        return {k[len("bert."):]: v for k, v in tensors.items()}
    return tensors


# --------------------------------------------------------------------------
# graph
# --------------------------------------------------------------------------

class GraphBuilder:
    def __init__(self):
        self.nodes = []
        self.initializers = []
        self._init_names = set()
        self._counter = 0

    def init(self, name, array):
        if name in self._init_names:
            fail(f"internal: duplicate initializer {name}")
        self._init_names.add(name)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, name, outputs=None, **attrs):
        if outputs is None:
            outputs = [name]
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs


def f32(x):
    return np.asarray(x, dtype=np.float32)


def build_model(cfg, t):
    H = cfg["hidden_size"]
    NH = cfg["num_attention_heads"]
    HD = H // NH
    FF = cfg["intermediate_size"]
    L = cfg["num_hidden_layers"]
    V = cfg["vocab_size"]
    P = cfg["max_position_embeddings"]
    TV = cfg["type_vocab_size"]
    eps = float(cfg["layer_norm_eps"])

    # ---- check the tensor set and shapes ----
    expected = {
        "embeddings.word_embeddings.weight": (V, H),
        "embeddings.position_embeddings.weight": (P, H),
        "embeddings.token_type_embeddings.weight": (TV, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(L):
        p = f"encoder.layer.{i}."
        for n in ("query", "key", "value"):
            expected[p + f"attention.self.{n}.weight"] = (H, H)
            expected[p + f"attention.self.{n}.bias"] = (H,)
        expected[p + "attention.output.dense.weight"] = (H, H)
        expected[p + "attention.output.dense.bias"] = (H,)
        expected[p + "attention.output.LayerNorm.weight"] = (H,)
        expected[p + "attention.output.LayerNorm.bias"] = (H,)
        expected[p + "intermediate.dense.weight"] = (FF, H)
        expected[p + "intermediate.dense.bias"] = (FF,)
        expected[p + "output.dense.weight"] = (H, FF)
        expected[p + "output.dense.bias"] = (H,)
        expected[p + "output.LayerNorm.weight"] = (H,)
        expected[p + "output.LayerNorm.bias"] = (H,)
    problems = []
    for name, shape in expected.items():
        if name not in t:
            problems.append(f"missing tensor {name}")
        elif tuple(t[name].shape) != shape:
            problems.append(f"{name}: shape {tuple(t[name].shape)}, expected {shape}")
        elif t[name].dtype != np.float32:
            problems.append(f"{name}: dtype {t[name].dtype}, expected float32")
    extra = sorted(set(t) - set(expected) - IGNORED_TENSORS)
    if extra:
        problems.append("unexpected tensors: " + ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else ""))
    if problems:
        fail("model.safetensors does not match the config:\n  " + "\n  ".join(problems))

    g = GraphBuilder()

    # ---- shared constants (initializers; fixed names, fixed order) ----
    c_zero_1d = g.init("const.zero_1d", np.array([0], dtype=np.int64))
    c_heads_shape = g.init("const.heads_shape", np.array([0, 0, NH, HD], dtype=np.int64))
    c_hidden_shape = g.init("const.hidden_shape", np.array([0, 0, H], dtype=np.int64))
    c_mask_axes = g.init("const.mask_axes", np.array([1, 2], dtype=np.int64))
    c_one = g.init("const.one", f32(1.0))
    c_mask_neg = g.init("const.mask_neg", f32(np.finfo(np.float32).min))
    c_scale = g.init("const.attn_scale", f32(np.sqrt(HD)))  # divide, like HF
    c_sqrt2 = g.init("const.sqrt2", f32(np.sqrt(2.0)))
    c_half = g.init("const.half", f32(0.5))

    # ---- embeddings ----
    w_word = g.init("embeddings.word_embeddings.weight", t["embeddings.word_embeddings.weight"])
    w_pos = g.init("embeddings.position_embeddings.weight", t["embeddings.position_embeddings.weight"])
    w_tt = g.init("embeddings.token_type_embeddings.weight", t["embeddings.token_type_embeddings.weight"])
    w_eln = g.init("embeddings.LayerNorm.weight", t["embeddings.LayerNorm.weight"])
    b_eln = g.init("embeddings.LayerNorm.bias", t["embeddings.LayerNorm.bias"])

    word = g.node("Gather", [w_word, "input_ids"], "embeddings/word", axis=0)
    tt = g.node("Gather", [w_tt, "token_type_ids"], "embeddings/token_type", axis=0)
    seq_len = g.node("Shape", ["input_ids"], "embeddings/seq_len", start=1, end=2)  # [S]
    pos = g.node("Slice", [w_pos, c_zero_1d, seq_len, c_zero_1d], "embeddings/position")  # [S,H], rows 0..S-1
    emb = g.node("Add", [word, pos], "embeddings/add_pos")
    emb = g.node("Add", [emb, tt], "embeddings/add_tt")
    x = g.node("LayerNormalization", [emb, w_eln, b_eln], "embeddings/LayerNorm", axis=-1, epsilon=eps)

    # ---- extended attention mask: (1 - mask) * float32.min, shape [B,1,1,S] ----
    m = g.node("Cast", ["attention_mask"], "mask/cast", to=TensorProto.FLOAT)
    m = g.node("Sub", [c_one, m], "mask/invert")
    m = g.node("Mul", [m, c_mask_neg], "mask/scale")
    mask = g.node("Unsqueeze", [m, c_mask_axes], "mask/unsqueeze")

    def linear(prefix, inp, wname, bname):
        # torch Linear: y = x @ W^T + b; store W^T so MatMul is plain x @ W_t
        w = g.init(wname + "_t", np.ascontiguousarray(t[wname].T))
        b = g.init(bname, t[bname])
        y = g.node("MatMul", [inp, w], prefix + "/MatMul")
        return g.node("Add", [y, b], prefix + "/Add")

    for i in range(L):
        p = f"encoder.layer.{i}."
        n = f"layer{i}"
        # self-attention
        q = linear(f"{n}/query", x, p + "attention.self.query.weight", p + "attention.self.query.bias")
        k = linear(f"{n}/key", x, p + "attention.self.key.weight", p + "attention.self.key.bias")
        v = linear(f"{n}/value", x, p + "attention.self.value.weight", p + "attention.self.value.bias")
        q = g.node("Reshape", [q, c_heads_shape], f"{n}/query/reshape")
        q = g.node("Transpose", [q], f"{n}/query/transpose", perm=[0, 2, 1, 3])  # [B,NH,S,HD]
        k = g.node("Reshape", [k, c_heads_shape], f"{n}/key/reshape")
        k = g.node("Transpose", [k], f"{n}/key/transpose", perm=[0, 2, 3, 1])  # [B,NH,HD,S]
        v = g.node("Reshape", [v, c_heads_shape], f"{n}/value/reshape")
        v = g.node("Transpose", [v], f"{n}/value/transpose", perm=[0, 2, 1, 3])  # [B,NH,S,HD]
        s = g.node("MatMul", [q, k], f"{n}/attn/scores")  # [B,NH,S,S]
        s = g.node("Div", [s, c_scale], f"{n}/attn/scale")
        s = g.node("Add", [s, mask], f"{n}/attn/mask")
        pr = g.node("Softmax", [s], f"{n}/attn/softmax", axis=-1)
        c = g.node("MatMul", [pr, v], f"{n}/attn/context")  # [B,NH,S,HD]
        c = g.node("Transpose", [c], f"{n}/attn/context_transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, c_hidden_shape], f"{n}/attn/context_reshape")  # [B,S,H]
        o = linear(f"{n}/attn_out", c, p + "attention.output.dense.weight", p + "attention.output.dense.bias")
        o = g.node("Add", [o, x], f"{n}/attn_out/residual")
        lw = g.init(p + "attention.output.LayerNorm.weight", t[p + "attention.output.LayerNorm.weight"])
        lb = g.init(p + "attention.output.LayerNorm.bias", t[p + "attention.output.LayerNorm.bias"])
        x = g.node("LayerNormalization", [o, lw, lb], f"{n}/attn_out/LayerNorm", axis=-1, epsilon=eps)
        # feed-forward with exact (erf) GELU: 0.5 * h * (1 + erf(h / sqrt(2)))
        h = linear(f"{n}/intermediate", x, p + "intermediate.dense.weight", p + "intermediate.dense.bias")
        e = g.node("Div", [h, c_sqrt2], f"{n}/gelu/div")
        e = g.node("Erf", [e], f"{n}/gelu/erf")
        e = g.node("Add", [e, c_one], f"{n}/gelu/add")
        e = g.node("Mul", [h, e], f"{n}/gelu/mul")
        h = g.node("Mul", [e, c_half], f"{n}/gelu/half")
        o = linear(f"{n}/output", h, p + "output.dense.weight", p + "output.dense.bias")
        o = g.node("Add", [o, x], f"{n}/output/residual")
        lw = g.init(p + "output.LayerNorm.weight", t[p + "output.LayerNorm.weight"])
        lb = g.init(p + "output.LayerNorm.bias", t[p + "output.LayerNorm.bias"])
        last = i == L - 1
        x = g.node(
            "LayerNormalization", [o, lw, lb], f"{n}/output/LayerNorm",
            outputs=["last_hidden_state"] if last else None, axis=-1, epsilon=eps,
        )

    dims = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, dims),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dims),
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, dims),
    ]
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, dims + [H])]
    graph = helper.make_graph(g.nodes, "all-MiniLM-L6-v2", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER_NAME,
        producer_version=PRODUCER_VERSION,
        ir_version=IR_VERSION,
    )
    model.model_version = 1
    model.doc_string = (
        "sentence-transformers/all-MiniLM-L6-v2 BertModel, fp32, no pooling; "
        "consumer mean-pools last_hidden_state with attention_mask and L2-normalises."
    )
    return model


# --------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description="Export all-MiniLM-L6-v2 safetensors to fp32 ONNX without torch.")
    ap.add_argument("--model-dir", required=True, help="directory with config.json and model.safetensors")
    ap.add_argument("--out", required=True, help="output path, e.g. /opt/sanctum/models/minilm/model.onnx")
    args = ap.parse_args(argv)

    cfg_path = os.path.join(args.model_dir, "config.json")
    st_path = os.path.join(args.model_dir, "model.safetensors")
    cfg = load_config(cfg_path)
    if not os.path.isfile(st_path):
        fail(f"{st_path} not found")
    print(f"model.safetensors sha256 {sha256_file(st_path)}")
    tensors = normalise_names(load_safetensors(st_path))
    model = build_model(cfg, tensors)

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001
        fail(f"generated model failed onnx.checker: {e}")

    try:
        data = model.SerializeToString(deterministic=True)
    except TypeError:  # very old protobuf runtimes without the keyword
        data = model.SerializeToString()

    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)

    digest = hashlib.sha256(data).hexdigest()
    print(f"wrote {out} ({len(data)} bytes)")
    print(f"sha256 {digest}  {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
