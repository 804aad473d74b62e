// The localrank Web Worker: owns the model download (progress, sha256 check, Cache API), the
// history in IndexedDB (storage.js), and the wasm Recommender, so the page never freezes.
// Messages in: {id, method, args}; out: {id, result} | {id, error} | {type: "progress"|"warning", ...}.
//
// Every change to the history is written before it is kept: if IndexedDB refuses the write (a
// full quota), the in-memory history goes back to what it was and the call fails, so the page,
// the memory and the disk always agree.
import init, { Recommender } from "/pkg/localrank.js";
import { loadHistory, saveHistory, setAside, setAsideCopies, eraseAll, storageProblem, loadVectors, syncVectors, loadProductVectors, saveProductVectors } from "/storage.js";

const MODEL_CACHE = "localrank-models";

let recommender = null;
let modelId = "";

const post = (message) => self.postMessage(message);
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

async function manifestEntry(manifestUrl, modelUrl) {
  const response = await fetch(manifestUrl, { cache: "no-cache" });
  if (!response.ok) throw new Error(`model manifest ${manifestUrl}: HTTP ${response.status}`);
  const manifest = await response.json();
  const file = modelUrl.split("/").pop();
  const entry = manifest.files.find((f) => f.file === file);
  if (!entry) throw new Error(`model manifest has no entry for ${file}`);
  return { modelId: manifest.model_id, ...entry };
}

async function download(url, expectedBytes, label, phase) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${label} ${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get("content-length")) || expectedBytes;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: "progress", phase, loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

// Cached by model id and checksum: a new model version is a new key, and a cached copy whose
// bytes no longer match its checksum is refused, deleted and fetched again. `label` names the
// file in messages ("model", "store encoder"); `phase` is the download's progress phase.
async function loadModelBytes(modelUrl, entry, label = "model", phase = "download") {
  const cache = await caches.open(MODEL_CACHE);
  const key = `${new URL(modelUrl, self.location.href).pathname}?model=${encodeURIComponent(entry.modelId)}&sha256=${entry.sha256}`;
  const cached = await cache.match(key);
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    if ((await sha256(bytes)) === entry.sha256) {
      post({ type: "progress", phase: "cache", loaded: bytes.length, total: bytes.length });
      return bytes;
    }
    await cache.delete(key);
    post({ type: "warning", message: `the cached ${label} file is corrupt (checksum mismatch): fetching it again` });
  }
  for (let attempt = 1; ; attempt++) {
    const bytes = await download(modelUrl, entry.bytes, label, phase);
    const actual = await sha256(bytes);
    if (actual === entry.sha256) {
      try {
        await cache.put(key, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
      } catch (error) {
        // A full quota must not stop the recommender: it only costs a download next visit.
        post({ type: "warning", message: `the ${label} could not be cached on this device (${error && error.name}); it will be downloaded again next visit` });
      }
      return bytes;
    }
    const problem = `${label} file checksum mismatch: expected ${entry.sha256}, got ${actual}`;
    if (attempt >= 2) throw new Error(problem);
    post({ type: "warning", message: `${problem}: fetching it again` });
  }
}

// Set when a saved copy that could not be read could not be set aside either: saving now would
// overwrite it, so nothing is saved until the shopper erases (or the next visit sets it aside).
let savingBlocked = null;
// Changes to the stored history run one after another: a failed save restores exactly the state
// before its own change (never undoing a later one), and an erase cannot be overtaken by the
// save of an event recorded before it.
let changes = Promise.resolve();
function serially(task) {
  const run = changes.then(task);
  changes = run.catch(() => {});
  return run;
}

// Applies `change` to the recommender and saves the result; if the save fails, restores the
// history as it was before `change` and throws an error a shopper can read.
function changeAndSave(change) {
  return serially(async () => {
    if (savingBlocked) throw new Error(savingBlocked);
    const before = recommender.exportState();
    const result = change();
    try {
      await saveHistory(recommender.exportState());
    } catch (error) {
      recommender.importState(before);
      throw new Error(`could not save your history on this device: ${storageProblem(error)}. Nothing was changed.`, { cause: error });
    }
    return result;
  });
}

// Restores the saved history. A copy that cannot be read (corrupt, truncated, from a newer
// version), or one with events that cannot be read, is kept aside (the shopper can export or
// erase it) and the recommender starts with what could be read: never locked out, nothing lost.
async function restoreHistory() {
  let saved;
  try {
    saved = await loadHistory();
  } catch (error) {
    post({ type: "warning", message: `your saved history could not be opened (${storageProblem(error)}); starting without it` });
    return;
  }
  if (!saved) return;
  const bytes = new Uint8Array(saved);
  let problem;
  try {
    const report = recommender.importState(bytes);
    if (report.dropped.length === 0) return;
    problem = `${report.dropped.length} saved event(s) could not be read and were left out (${report.dropped[0]})`;
  } catch (error) {
    problem = `your saved history could not be read (${error.message}); starting with an empty one`;
  }
  try {
    await setAside(bytes, problem);
    if (recommender.history().length > 0) await saveHistory(recommender.exportState());
    post({ type: "warning", message: `${problem}. The unreadable copy is kept: see "Your data on this device" to export or erase it.` });
  } catch (error) {
    savingBlocked = `could not save your history on this device: a saved copy that could not be read is still there and was not overwritten (${storageProblem(error)}). Erase your data on this device to start again.`;
    post({ type: "warning", message: `${problem}. It could not be set aside (${storageProblem(error)}), so it stays where it was and nothing new is saved until you erase it.` });
  }
}

// The history's vectors on disk: keyed by the model and a hash of the text, so another model's
// vectors are never read, and a text's vector is found whatever event it came from.
const vectorKey = async (text) => `${modelId}:${await sha256(new TextEncoder().encode(text))}`;
// Keys on disk as of the last sync (null until restored): a sync writes only what is new.
let storedKeys = null;

// Hands the vectors found on disk (`found`: key -> Float32Array) for `texts` (under `keys`) to
// the recommender, which checks them; returns how many.
function insertFound(texts, keys, found) {
  const width = found.size ? found.values().next().value.length : 0;
  const rows = keys.map((key, i) => [texts[i], found.get(key)]).filter(([, v]) => v && v.length === width);
  const flat = new Float32Array(rows.length * width);
  rows.forEach(([, vector], i) => flat.set(vector, i * width));
  recommender.insertVectors(rows.map(([text]) => text), flat);
  return rows.length;
}

// `texts`' vectors as [key, Float32Array] pairs, from the cache or embedded now.
async function keyedVectors(texts) {
  const flat = recommender.textVectors(texts);
  const width = flat.length / texts.length;
  const keys = await Promise.all(texts.map(vectorKey));
  return keys.map((key, i) => [key, flat.slice(i * width, (i + 1) * width)]);
}

// Gives the recommender the vectors kept for its history, so ranking after a reload embeds only
// what it has not seen. Returns how many were found; a storage failure costs only time.
async function restoreVectors() {
  try {
    const texts = recommender.historyTexts();
    const keys = await Promise.all(texts.map(vectorKey));
    const found = await loadVectors(keys);
    storedKeys = new Set(keys.filter((key) => found.has(key)));
    return insertFound(texts, keys, found);
  } catch (error) {
    post({ type: "warning", message: `saved product vectors could not be read (${error.message}); they will be computed again` });
    storedKeys = new Set();
    return 0;
  }
}

// After a history change, in the background: embeds what the history has that is not on disk
// yet (usually the one product just recorded, often already in the cache from ranking) and makes
// the disk hold exactly the history's vectors (a forgotten product's vector goes with it).
let vectorSync = Promise.resolve();
function syncHistoryVectors() {
  vectorSync = vectorSync.then(async () => {
    if (!recommender || !storedKeys) return;
    try {
      const texts = recommender.historyTexts();
      const keys = await Promise.all(texts.map(vectorKey));
      const missing = texts.filter((_, i) => !storedKeys.has(keys[i]));
      const added = missing.length ? await keyedVectors(missing) : [];
      const keep = new Set(keys);
      await syncVectors(added, keep);
      storedKeys = keep;
    } catch (error) {
      console.warn(`localrank: product vectors were not kept on this device (${error && error.name}); they will be computed again`);
    }
  });
  return vectorSync;
}

// Products' vectors across page loads: a bounded cache (least recently used go), so a product
// seen on an earlier page is not embedded again. Only texts missing from the in-memory cache are
// looked up, so a warm re-rank never waits on storage.
const PRODUCT_VECTOR_CAP = 2000;

// Puts the saved vectors of `candidates`' uncached texts into the recommender; returns the texts
// that were not saved (ranking embeds them; they are saved after it).
async function restoreProductVectors(candidates) {
  const texts = recommender.uncachedTexts(candidates);
  if (!texts.length) return [];
  try {
    const keys = await Promise.all(texts.map(vectorKey));
    const found = await loadProductVectors(keys);
    insertFound(texts, keys, found);
    return texts.filter((_, i) => !found.has(keys[i]));
  } catch (error) {
    console.warn(`localrank: saved product vectors could not be read (${error && error.message}); embedding them`);
    return texts;
  }
}

// After ranking, in the background: saves the vectors ranking just computed.
function keepProductVectors(texts) {
  if (!texts.length) return;
  vectorSync = vectorSync.then(async () => {
    try {
      await saveProductVectors(await keyedVectors(texts), PRODUCT_VECTOR_CAP);
    } catch (error) {
      console.warn(`localrank: product vectors were not kept on this device (${error && error.name}); they will be computed again`);
    }
  });
}

// The store's sequence encoder: fetched with progress and checked against the checksum in its
// train.json, cached like the model. Any failure (missing, corrupt, made for another model) is a
// warning and ranking stays text-only: the store's encoder improves ranking, it never blocks it.
async function loadEncoder(encoderUrl, encoderManifestUrl) {
  try {
    const response = await fetch(encoderManifestUrl, { cache: "no-cache" });
    if (!response.ok) throw new Error(`${encoderManifestUrl}: HTTP ${response.status}`);
    const summary = await response.json();
    const entry = { modelId: summary.text_model_id, sha256: summary.encoder_sha256, bytes: summary.encoder_bytes };
    if (typeof entry.sha256 !== "string") throw new Error(`${encoderManifestUrl} has no encoder_sha256`);
    const bytes = await loadModelBytes(encoderUrl, entry, "store encoder", "encoder");
    recommender.setEncoder(bytes);
    return { sha256: entry.sha256, dim: recommender.encoderDim };
  } catch (error) {
    post({ type: "warning", message: `the store's ranking model could not be used (${error.message}); ranking by product text only` });
    return null;
  }
}

const methods = {
  async init({ modelUrl, manifestUrl, encoderUrl, encoderManifestUrl }) {
    const entry = await manifestEntry(manifestUrl, modelUrl);
    const bytes = await loadModelBytes(modelUrl, entry);
    post({ type: "progress", phase: "compile", loaded: 0, total: 1 });
    await init();
    recommender = new Recommender(bytes);
    modelId = `${entry.modelId}@${entry.sha256}`;
    const encoder = encoderUrl ? await loadEncoder(encoderUrl, encoderManifestUrl) : null;
    await restoreHistory();
    const restoredVectors = await restoreVectors();
    return { modelId: entry.modelId, sha256: entry.sha256, encoder, events: recommender.history().length, restoredVectors };
  },
  async record(event) {
    const result = await changeAndSave(() => recommender.record(event));
    syncHistoryVectors();
    return result;
  },
  // Lenient: what cannot be ranked is left out and named in `dropped`, the rest is ranked.
  async rerank(candidates, options) {
    const unsaved = await restoreProductVectors(candidates);
    const result = recommender.rerankAdmitting(candidates, options);
    keepProductVectors(unsaved);
    return result;
  },
  history() {
    return recommender.history();
  },
  async forget(itemId) {
    const removed = await changeAndSave(() => recommender.forget(itemId));
    syncHistoryVectors();
    return removed;
  },
  // { hits, misses } of the recommender's vector cache, and the vectors kept on disk.
  async stats() {
    await vectorSync;
    return { ...recommender.cacheStats(), storedVectors: storedKeys ? storedKeys.size : 0 };
  },
  clear() {
    return serially(async () => {
      try {
        await eraseAll();
      } catch (error) {
        throw new Error(`could not erase the history on this device: ${storageProblem(error)}`, { cause: error });
      }
      recommender.clear();
      storedKeys = new Set();
      savingBlocked = null;
    });
  },
  exportHistory() {
    return new TextDecoder().decode(recommender.exportState());
  },
  setAside() {
    return setAsideCopies();
  },
};

self.onmessage = async ({ data: { id, method, args } }) => {
  try {
    if (method !== "init" && !recommender) throw new Error("localrank is not ready: call create() and await it first");
    const run = methods[method];
    if (!run) throw new Error(`unknown method ${method}`);
    post({ id, result: await run(...(args || [])) });
  } catch (error) {
    post({ id, error: error instanceof Error ? error.message : String(error) });
  }
};
