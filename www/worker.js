// The localrank Web Worker: owns the model download (progress, sha256 check, Cache API), the
// history in IndexedDB, and the wasm Recommender, so the page never freezes. Messages in:
// {id, method, args}; out: {id, result} | {id, error} | {type: "progress"|"warning", ...}.
import init, { Recommender } from "/pkg/localrank.js";

const MODEL_CACHE = "localrank-models";
const DB_NAME = "localrank";
const STORE = "state";
const HISTORY_KEY = "history";

let recommender = null;

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

async function download(url, expectedBytes) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`model ${url}: HTTP ${response.status}`);
  const total = Number(response.headers.get("content-length")) || expectedBytes;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: "progress", phase: "download", loaded, total });
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
// bytes no longer match its checksum is refused, deleted and fetched again.
async function loadModelBytes(modelUrl, entry) {
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
    post({ type: "warning", message: "the cached model file is corrupt (checksum mismatch): fetching it again" });
  }
  for (let attempt = 1; ; attempt++) {
    const bytes = await download(modelUrl, entry.bytes);
    const actual = await sha256(bytes);
    if (actual === entry.sha256) {
      try {
        await cache.put(key, new Response(bytes, { headers: { "content-type": "application/octet-stream" } }));
      } catch (error) {
        // A full quota must not stop the recommender: it only costs a download next visit.
        post({ type: "warning", message: `the model could not be cached on this device (${error && error.name}); it will be downloaded again next visit` });
      }
      return bytes;
    }
    const problem = `model file checksum mismatch: expected ${entry.sha256}, got ${actual}`;
    if (attempt >= 2) throw new Error(problem);
    post({ type: "warning", message: `${problem}: fetching it again` });
  }
}

// One connection for the worker's lifetime.
let database = null;
function openDb() {
  database ||= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return database;
}

function dbRequest(mode, run) {
  return openDb().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(STORE, mode);
        const request = run(tx.objectStore(STORE));
        tx.oncomplete = () => resolve(request.result);
        tx.onabort = tx.onerror = () => reject(tx.error || request.error);
      }),
  );
}

// Saves the whole history. If the write fails (a full quota), the error reaches the page and the
// copy already in IndexedDB stays as it was: the failed transaction changes nothing.
async function persist() {
  try {
    await dbRequest("readwrite", (store) => store.put(recommender.exportState(), HISTORY_KEY));
  } catch (error) {
    throw new Error(`could not save the history on this device (${error && error.name}: ${error && error.message}); what was saved before is kept`);
  }
}

const methods = {
  async init({ modelUrl, manifestUrl }) {
    const entry = await manifestEntry(manifestUrl, modelUrl);
    const bytes = await loadModelBytes(modelUrl, entry);
    post({ type: "progress", phase: "compile", loaded: 0, total: 1 });
    await init();
    recommender = new Recommender(bytes);
    const saved = await dbRequest("readonly", (store) => store.get(HISTORY_KEY));
    if (saved) recommender.importState(new Uint8Array(saved));
    return { modelId: entry.modelId, sha256: entry.sha256, events: recommender.history().length };
  },
  async record(event) {
    recommender.record(event);
    await persist();
  },
  rerank(candidates, options) {
    return recommender.rerank(candidates, options);
  },
  history() {
    return recommender.history();
  },
  async forget(itemId) {
    const removed = recommender.forget(itemId);
    await persist();
    return removed;
  },
  async clear() {
    recommender.clear();
    await dbRequest("readwrite", (store) => store.delete(HISTORY_KEY));
  },
  exportHistory() {
    return new TextDecoder().decode(recommender.exportState());
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
