#!/usr/bin/env python3
"""Independent float64 reference for all-MiniLM-L6-v2 sentence embeddings.

It uses no candle and none of localrank's code: the `tokenizers` and `safetensors` PyPI
packages read the original files, and numpy runs BERT in float64 exactly as
sentence-transformers does (BertModel, mean pooling over real tokens, L2 normalisation,
max_seq_length 256). The output is the parity fixture the Rust tests compare against.

    python3 models/reference.py --model-dir DIR --texts tests/fixtures/texts.json \
        --out tests/fixtures/reference_embeddings.json
"""

import argparse
import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_SEQ_LEN = 256


def layer_norm(x, weight, bias, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def gelu_erf(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


class Bert:
    def __init__(self, model_dir: Path):
        self.config = json.loads((model_dir / "config.json").read_text())
        raw = load_file(str(model_dir / "model.safetensors"))
        self.w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in raw.items()}

    def linear(self, x, name):
        return x @ self.w[f"{name}.weight"].T + self.w[f"{name}.bias"]

    def ln(self, x, name):
        eps = self.config["layer_norm_eps"]
        return layer_norm(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"], eps)

    def embed_one(self, ids):
        """One unpadded sequence at a time: no mask is needed, so padding cannot leak in."""
        w = self.w
        n = len(ids)
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self.ln(x, "embeddings.LayerNorm")
        heads = self.config["num_attention_heads"]
        head_dim = self.config["hidden_size"] // heads
        for layer in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{layer}"
            q = self.linear(x, f"{p}.attention.self.query").reshape(n, heads, head_dim).transpose(1, 0, 2)
            k = self.linear(x, f"{p}.attention.self.key").reshape(n, heads, head_dim).transpose(1, 0, 2)
            v = self.linear(x, f"{p}.attention.self.value").reshape(n, heads, head_dim).transpose(1, 0, 2)
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(head_dim)
            ctx = (softmax(scores) @ v).transpose(1, 0, 2).reshape(n, heads * head_dim)
            x = self.ln(self.linear(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
            h = gelu_erf(self.linear(x, f"{p}.intermediate.dense"))
            x = self.ln(self.linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        pooled = x.mean(axis=0)
        return pooled / np.linalg.norm(pooled)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--texts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    # The shipped tokenizer.json pads and truncates to 128; sentence-transformers uses 256.
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_SEQ_LEN)
    bert = Bert(args.model_dir)

    texts = json.loads(args.texts.read_text())
    rows = []
    for text in texts:
        encoding = tokenizer.encode(text)
        rows.append({"text": text, "tokens": len(encoding.ids), "embedding": bert.embed_one(encoding.ids).tolist()})
    args.out.write_text(json.dumps({"model": "sentence-transformers/all-MiniLM-L6-v2", "dtype": "float64", "rows": rows}))
    print(f"wrote {len(rows)} reference embeddings to {args.out} (token counts {min(r['tokens'] for r in rows)}..{max(r['tokens'] for r in rows)})")


if __name__ == "__main__":
    main()
