#!/usr/bin/env python3
"""Independent reference for the embedded backend: all-MiniLM-L6-v2 in plain numpy.

Reads vocab.txt and model.safetensors directly (no torch, no tokenizers library), runs the
BERT encoder, mean-pools over the attention mask and L2-normalizes, like sentence-transformers.
Used to produce the golden values in worker/src/inference/embedded.rs:

    PYTHONPATH=<dir with numpy> python3 worker/scripts/minilm_reference.py "$ECLOUD_MINILM_DIR" "text" ...

Only for simple ASCII text (BERT basic tokenizer: lowercase, split on whitespace and
punctuation, greedy WordPiece).
"""
import json, math, struct, sys
import numpy as np

def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__" or meta["dtype"] != "F32":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(meta["shape"]).astype(np.float64)
    return out

def tokenize(text, vocab):
    words, cur = [], ""
    for ch in text.lower():
        if ch.isspace():
            if cur: words.append(cur); cur = ""
        elif not ch.isalnum():
            if cur: words.append(cur); cur = ""
            words.append(ch)
        else:
            cur += ch
    if cur: words.append(cur)
    ids = [vocab["[CLS]"]]
    for w in words:
        start, pieces = 0, []
        while start < len(w):
            end = len(w)
            while end > start:
                sub = w[start:end] if start == 0 else "##" + w[start:end]
                if sub in vocab: pieces.append(vocab[sub]); break
                end -= 1
            if end == start: pieces = [vocab["[UNK]"]]; break
            start = end
        ids.extend(pieces)
    ids.append(vocab["[SEP]"])
    return ids

def layer_norm(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b

erf = np.vectorize(math.erf)

def embed(ids, W, heads=12, layers=6):
    n = len(ids)
    x = W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][:n] \
        + W["embeddings.token_type_embeddings.weight"][0]
    x = layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"])
    lin = lambda x, p: x @ W[p + ".weight"].T + W[p + ".bias"]
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q, k, v = (lin(x, p + "attention.self." + t).reshape(n, heads, -1).transpose(1, 0, 2)
                   for t in ("query", "key", "value"))
        s = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, -1)
        x = layer_norm(lin(ctx, p + "attention.output.dense") + x,
                       W[p + "attention.output.LayerNorm.weight"], W[p + "attention.output.LayerNorm.bias"])
        h = lin(x, p + "intermediate.dense"); h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = layer_norm(lin(h, p + "output.dense") + x, W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"])
    m = x.mean(0)
    return m / np.linalg.norm(m)

def main():
    d = sys.argv[1]
    vocab = {t.rstrip("\n"): i for i, t in enumerate(open(d + "/vocab.txt", encoding="utf-8"))}
    W = load_safetensors(d + "/model.safetensors")
    embs = []
    for text in sys.argv[2:]:
        ids = tokenize(text, vocab)
        e = embed(ids, W)
        embs.append(e)
        print(json.dumps({"text": text, "ids": ids, "first8": [round(float(v), 6) for v in e[:8]]}))
    for i in range(len(embs)):
        for j in range(i + 1, len(embs)):
            print(f"cos[{i},{j}] = {float(embs[i] @ embs[j]):.6f}")

if __name__ == "__main__":
    main()
