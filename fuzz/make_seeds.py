#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (fuzz/corpus/*): small valid inputs for each target to
mutate from. Idempotent.

    python3 fuzz/make_seeds.py

gguf: a tiny but complete localrank model file (1 layer, width 4, F32), so mutations reach every
check past the header; and the first 64 KiB of the real q8_0 model, when it has been fetched.
"""

import json
import struct
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
U32, F32, STRING, ARRAY = 4, 6, 8, 9


def gguf_string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def tiny_model() -> bytes:
    hidden, ffn, vocab, context, types = 4, 8, 8, 8, 2
    metadata = [
        ("general.architecture", STRING, "bert"),
        ("localrank.model_id", STRING, "fuzz/tiny"),
        ("localrank.format_version", U32, 2),
        ("localrank.weight_dtype", STRING, "f32"),
        ("localrank.pooling", STRING, "mean"),
        ("localrank.max_seq_len", U32, 8),
        ("bert.block_count", U32, 1),
        ("bert.embedding_length", U32, hidden),
        ("bert.feed_forward_length", U32, ffn),
        ("bert.attention.head_count", U32, 2),
        ("bert.attention.layer_norm_epsilon", F32, 1e-12),
        ("bert.context_length", U32, context),
        ("bert.vocab_size", U32, vocab),
        ("bert.type_vocab_size", U32, types),
        ("tokenizer.huggingface.json", STRING, "{}"),
        ("localrank.probe_vector", ARRAY, [0.5, 0.5, 0.5, 0.5]),
    ]
    tensors = [
        ("embeddings.word_embeddings.weight", [vocab, hidden]),
        ("embeddings.position_embeddings.weight", [context, hidden]),
        ("embeddings.token_type_embeddings.weight", [types, hidden]),
        ("embeddings.LayerNorm.weight", [hidden]),
        ("embeddings.LayerNorm.bias", [hidden]),
    ]
    layer = [
        ("attention.self.query.weight", [hidden, hidden]), ("attention.self.query.bias", [hidden]),
        ("attention.self.key.weight", [hidden, hidden]), ("attention.self.key.bias", [hidden]),
        ("attention.self.value.weight", [hidden, hidden]), ("attention.self.value.bias", [hidden]),
        ("attention.output.dense.weight", [hidden, hidden]), ("attention.output.dense.bias", [hidden]),
        ("attention.output.LayerNorm.weight", [hidden]), ("attention.output.LayerNorm.bias", [hidden]),
        ("intermediate.dense.weight", [ffn, hidden]), ("intermediate.dense.bias", [ffn]),
        ("output.dense.weight", [hidden, ffn]), ("output.dense.bias", [hidden]),
        ("output.LayerNorm.weight", [hidden]), ("output.LayerNorm.bias", [hidden]),
    ]
    tensors += [(f"encoder.layer.0.{name}", shape) for name, shape in layer]
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, kind, value in metadata:
        out += gguf_string(key) + struct.pack("<I", kind)
        if kind == STRING:
            out += gguf_string(value)
        elif kind == U32:
            out += struct.pack("<I", value)
        elif kind == F32:
            out += struct.pack("<f", value)
        else:
            out += struct.pack("<IQ", F32, len(value)) + b"".join(struct.pack("<f", x) for x in value)
    offset, data = 0, bytearray()
    for name, shape in tensors:
        out += gguf_string(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in reversed(shape))  # GGUF stores dims reversed
        out += struct.pack("<IQ", 0, offset)  # 0 = F32
        count = 1
        for d in shape:
            count *= d
        tensor = struct.pack(f"<{count}f", *([0.25] * count))
        tensor += b"\0" * (-len(tensor) % 32)
        data += tensor
        offset += len(tensor)
    out += b"\0" * (-len(out) % 32)
    return bytes(out + data)


def write(target: str, name: str, data) -> None:
    folder = FUZZ / "corpus" / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def main() -> None:
    write("gguf", "tiny.gguf", tiny_model())
    real = ROOT / "models" / "all-MiniLM-L6-v2.q8_0.gguf"
    if real.exists():
        write("gguf", "q8_0-head.gguf", real.read_bytes()[: 64 * 1024])
    catalog = json.loads((ROOT / "tests" / "fixtures" / "catalog.json").read_text())
    write("records", "candidates.json", json.dumps(catalog[:4]))
    write("records", "odd.json", '[{"id": "a", "title": "A", "score": 1e999}, {"id": "a", "title": "", "vector": [1, 2]}]')
    events = [
        {"kind": "view", "at": 1700000000000, "item": catalog[0]},
        {"kind": "search", "at": 1700000000500, "query": "trail shoes"},
        {"kind": "dismiss", "at": 1700000001000, "item": catalog[1]},
    ]
    write("records", "history.jsonl", "\n".join(json.dumps(e) for e in events) + "\n\n")
    write("records", "options.json", '{"diversity": 0.2, "serverWeight": 0.3, "limit": 5}')
    write("saved_state", "v1.json", json.dumps({"version": 1, "events": events}))
    write("saved_state", "v0.json", json.dumps(events))
    # The encoder target patches a valid encoder it builds itself; an empty input is its seed.
    write("encoder", "no-patches.bin", b"")
    write("saved_state", "bad-event.json", '{"version": 1, "events": [{"kind": "view", "at": "x"}]}')


if __name__ == "__main__":
    main()
