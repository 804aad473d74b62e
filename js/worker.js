// The localrank Web Worker: owns the model download (progress, sha256 check, Cache API), the
// history in IndexedDB (storage.js), the wasm Recommender and the pool of embedding workers
// (pool.js), so the page never freezes.
// Messages in: {wasmModule} (the page's compiled module, or null: compile it here) first, then
// {id, method, args}; out: {id, result} | {id, error: {name, message, field?}} |
// {type: "progress"|"warning", ...}.
//
// Every change to the history is written before it is kept: if IndexedDB refuses the write (a
// full quota), the in-memory history goes back to what it was and the call fails, so the page,
// the memory and the disk always agree.
import init, { Recommender } from "./localrank.js";
import { loadHistory, saveHistory, setAside, setAsideCopies, eraseAll, storageProblem, loadVectors, syncVectors, loadProductVectors, saveProductVectors } from "./storage.js";
import { LocalRankError } from "./errors.js";
import { EmbedPool } from "./pool.js";

const MODEL_CACHE = "localrank-models";

/** Wall-clock milliseconds (comparable with the page's: workers have their own time origin). */
const wallClock = () => performance.timeOrigin + performance.now();
/** When this worker's module began running (after its files were fetched and compiled). */
const scriptStartedAt = wallClock();

let recommender = null;
let modelId = "";
/**
 * Settles when the model is attached: at once unless `init` was asked not to wait for it
 * (`waitForModel: false`), when ranking starts from the vectors saved on this device and the
 * model is attached when it arrives. Rejects with the model's failure; anything that needs a
 * text embedded waits on it. Resolves to `{ encoder }` (the store encoder's info, or null).
 */
let modelLoaded = Promise.resolve({ encoder: null });
/**
 * Starts attaching the model (`waitForModel: false` only; null once started). Attaching blocks
 * this worker for a few hundred ms (the file is parsed and requantized), so it waits until
 * something needs the model (`needModel`) or no call has come for MODEL_ATTACH_IDLE_MS: the
 * page's first ranking, asked for right after `create()`, is answered from the saved vectors
 * first instead of queueing behind it.
 */
let attachModelNow = null;
const MODEL_ATTACH_IDLE_MS = 100;
let attachTimer = null;
function attachModelWhenIdle() {
  if (!attachModelNow) return;
  clearTimeout(attachTimer);
  attachTimer = setTimeout(() => attachModelNow && attachModelNow(), MODEL_ATTACH_IDLE_MS);
}
/** The model, attached now if it was waiting for the worker to be idle. */
function needModel() {
  if (attachModelNow) attachModelNow();
  return modelLoaded;
}
/** The helper workers (null with `workers: 1`, and until started). */
let pool = null;
/** The pool to start: `{ helpers, bytes, urls }`, until it is started. */
let poolPlan = null;
/**
 * Helpers start this long after the model file has been read: started with the model, their own
 * loading (compiling the wasm, reading the model) slowed the main worker's start by about 200 ms
 * on 2 cores (create 700 ms instead of 485), and a first ranking cannot use them anyway (they
 * take about 400 ms to be ready). Never on a shopper's action, nor on anything that depends on
 * the history (such as when the model is attached): when the page fetches the helpers' files
 * must not depend on what the shopper does.
 */
const POOL_START_DELAY_MS = 1000;
/** Settles when the helpers have been started (or there are none to start). */
let poolStarted = Promise.resolve();
let poolStartedNow = () => {};

function startPool() {
  poolStartedNow();
  if (!poolPlan) return;
  const { helpers, bytes, urls } = poolPlan;
  poolPlan = null;
  pool = new EmbedPool(helpers, bytes, { ...urls, onWarning: (message) => post({ type: "warning", message }) });
}
/** The wasm module the page compiled (null: this worker compiles it), from its first message. */
let receiveWasmModule;
const pageWasmModule = new Promise((resolve) => (receiveWasmModule = resolve));
/** This worker's wasm memory (its size is the peak so far: wasm memory never shrinks). */
let wasmMemory = null;

const post = (message) => self.postMessage(message);
const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (bytes) => hex(await crypto.subtle.digest("SHA-256", bytes));

/** A progress event: which file, which phase ("fetch" | "cache" | "verify" | "compile" | "ready"). */
const progress = (file, phase, loaded = 0, total = 0) => post({ type: "progress", file, phase, loaded, total });

// fetch() with failures named ModelFetch (a network error is a TypeError with no URL in it).
async function fetchFile(url, label, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw new LocalRankError("ModelFetch", `${label} ${url}: ${error.message}`, { cause: error });
  }
  if (!response.ok) throw new LocalRankError("ModelFetch", `${label} ${url}: HTTP ${response.status}`);
  return response;
}

async function manifestEntry(manifestUrl, modelUrl) {
  const response = await fetchFile(manifestUrl, "model manifest", { cache: "no-cache" });
  let manifest;
  try {
    manifest = await response.json();
  } catch (error) {
    throw new LocalRankError("ModelFetch", `model manifest ${manifestUrl} is not JSON (${error.message})`, { cause: error });
  }
  const file = new URL(modelUrl, self.location.href).pathname.split("/").pop();
  const entry = Array.isArray(manifest.files) && manifest.files.find((f) => f.file === file);
  if (!entry) throw new LocalRankError("ModelFetch", `model manifest ${manifestUrl} has no entry for ${file}`);
  return { modelId: manifest.model_id, ...entry };
}

async function download(url, expectedBytes, label, file) {
  const response = await fetchFile(url, label, { cache: "no-store" });
  const total = Number(response.headers.get("content-length")) || expectedBytes;
  const reader = response.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress(file, "fetch", loaded, total);
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
// file in messages ("model", "store encoder"); `file` in progress events ("model", "encoder").
async function loadModelBytes(modelUrl, entry, label = "model", file = "model") {
  const cache = await caches.open(MODEL_CACHE);
  const key = modelCacheKey(modelUrl, entry);
  const cached = await readCached(cache, key, entry, label, file);
  if (cached) return cached;
  for (let attempt = 1; ; attempt++) {
    const bytes = await download(modelUrl, entry.bytes, label, file);
    progress(file, "verify", bytes.length, bytes.length);
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
    if (attempt >= 2) throw new LocalRankError("ModelChecksum", problem);
    post({ type: "warning", message: `${problem}: fetching it again` });
  }
}

const modelCacheKey = (modelUrl, entry) => `${new URL(modelUrl, self.location.href).pathname}?model=${encodeURIComponent(entry.modelId)}&sha256=${entry.sha256}`;

// The cached copy of a file if it is there and its checksum holds (a corrupt copy is deleted,
// with a warning that ends with `next`: what happens instead), else null. `file` names it in
// progress events; null sends none.
async function readCached(cache, key, entry, label, file, next = "fetching it again") {
  const cached = await cache.match(key);
  if (!cached) return null;
  const bytes = new Uint8Array(await cached.arrayBuffer());
  if (file) {
    progress(file, "cache", bytes.length, bytes.length);
    progress(file, "verify", bytes.length, bytes.length);
  }
  if ((await sha256(bytes)) === entry.sha256) return bytes;
  await cache.delete(key);
  post({ type: "warning", message: `the cached ${label} file is corrupt (checksum mismatch): ${next}` });
  return null;
}

/**
 * Reads the model for a replacement helper worker from this device's cache only (null if it is
 * not there): a helper dying must not make the page ask the server for anything. No progress
 * events: the page's model has long been loaded. Made at the top level, not inline in `Start`:
 * a closure there would keep the start, and with it the model's bytes, alive as long as the pool.
 */
const cachedModelReader = (modelUrl, entry) => async () =>
  readCached(await caches.open(MODEL_CACHE), modelCacheKey(modelUrl, entry), entry, "model", null, "deleted; the embedding worker is not replaced");

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
    if (savingBlocked) throw new LocalRankError("Storage", savingBlocked);
    const before = recommender.exportState();
    const result = change();
    try {
      await saveHistory(recommender.exportState());
    } catch (error) {
      recommender.importState(before);
      throw LocalRankError.storage(`could not save your history on this device: ${storageProblem(error)}. Nothing was changed.`, error);
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
// Keys are remembered (a history change would otherwise hash every history text again); the
// memo is dropped when it grows past KEY_MEMO_LIMIT, so it stays bounded.
const KEY_MEMO_LIMIT = 10_000;
const keyMemo = new Map();
async function vectorKey(text) {
  let key = keyMemo.get(text);
  if (key) return key;
  key = `${modelId}:${await sha256(new TextEncoder().encode(text))}`;
  if (keyMemo.size >= KEY_MEMO_LIMIT) keyMemo.clear();
  keyMemo.set(text, key);
  return key;
}
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

// Puts `texts`' vectors in the recommender's cache: what is missing is embedded, split across the
// pool when there is one.
async function embedIntoCache(texts) {
  const missing = recommender.uncachedOf(texts);
  if (!missing.length) return;
  if (pool) await pool.embedInto(recommender, missing);
  else recommender.textVectors(missing);
}

// `texts`' vectors as [key, Float32Array] pairs, from the cache or embedded now.
async function keyedVectors(texts) {
  await embedIntoCache(texts);
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

// Saves of vectors run in the background, one after another. An erase bumps `erasures`; a save
// queued before it (or for a ranking asked before it) writes nothing afterwards: its texts were
// read before the erase, and writing them would put back part of what the shopper just erased.
let vectorSync = Promise.resolve();
let erasures = 0;
function inBackground(task, erasuresThen = erasures) {
  const erasedSince = () => erasures !== erasuresThen;
  vectorSync = vectorSync.then(async () => {
    try {
      await needModel();
      await task(erasedSince);
    } catch (error) {
      console.warn(`localrank: product vectors were not kept on this device (${error && error.name}); they will be computed again`);
    }
  });
  return vectorSync;
}

// After a history change, in the background: embeds what the history has that is not on disk
// yet (usually the one product just recorded, often already in the cache from ranking) and makes
// the disk hold exactly the history's vectors (a forgotten product's vector goes with it).
function syncHistoryVectors() {
  return inBackground(async (erasedSince) => {
    if (!recommender || !storedKeys) return;
    const texts = recommender.historyTexts();
    const keys = await Promise.all(texts.map(vectorKey));
    const missing = texts.filter((_, i) => !storedKeys.has(keys[i]));
    const added = missing.length ? await keyedVectors(missing) : [];
    if (erasedSince()) return;
    const keep = new Set(keys);
    await syncVectors(added, keep);
    storedKeys = keep;
  });
}

// Products' vectors across page loads: a bounded cache (least recently used go), so a product
// seen on an earlier page is not embedded again. Only texts missing from the in-memory cache are
// looked up, so a warm re-rank never waits on storage.
const PRODUCT_VECTOR_CAP = 2000;

// Puts the saved vectors of `texts` (those not in memory) into the recommender; returns the
// texts that were not saved (ranking embeds them; they are saved after it).
async function restoreSavedTexts(texts) {
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

// After ranking, in the background: saves the vectors ranking just computed. `erasuresThen`:
// the count when the ranking was asked for (an erase while it ran drops the save too).
function keepProductVectors(texts, erasuresThen = erasures) {
  if (!texts.length) return;
  inBackground(async (erasedSince) => {
    if (erasedSince()) return; // nor embedded again: the erase emptied the cache
    const entries = await keyedVectors(texts);
    if (!erasedSince()) await saveProductVectors(entries, PRODUCT_VECTOR_CAP);
  }, erasuresThen);
}

// The store's sequence encoder: fetched with progress and checked against the checksum in its
// train.json, cached like the model. Any failure (missing, corrupt, made for another model) is a
// warning and ranking stays text-only: the store's encoder improves ranking, it never blocks it.
const encoderUnusable = (error) => post({ type: "warning", message: `the store's ranking model could not be used (${error.message}); ranking by product text only` });

// The encoder file's bytes and checksum, or null (warned).
async function fetchEncoder(encoderUrl, encoderManifestUrl) {
  try {
    const response = await fetchFile(encoderManifestUrl, "store encoder summary", { cache: "no-cache" });
    const summary = await response.json();
    const entry = { modelId: summary.text_model_id, sha256: summary.encoder_sha256, bytes: summary.encoder_bytes };
    if (typeof entry.sha256 !== "string") throw new Error(`${encoderManifestUrl} has no encoder_sha256`);
    return { bytes: await loadModelBytes(encoderUrl, entry, "store encoder", "encoder"), sha256: entry.sha256 };
  } catch (error) {
    encoderUnusable(error);
    return null;
  }
}

// Gives the recommender the encoder: its info, or null (warned), or "later" when it cannot be
// checked yet (no model, and the probe sentence's vector not saved on this device). The check
// embeds the probe sentence; its vector is kept, so the next visit can check before the model.
async function useEncoder({ bytes, sha256 }) {
  const unsaved = await restoreSavedTexts(recommender.uncachedOf([Recommender.probeText()]));
  progress("encoder", "compile");
  try {
    recommender.setEncoder(bytes);
  } catch (error) {
    if (error.name === "NotReady") return "later";
    encoderUnusable(error);
    return null;
  }
  progress("encoder", "ready");
  keepProductVectors(unsaved);
  return { sha256, dim: recommender.encoderDim };
}

/**
 * One start of the recommender (`init`): the steps both ways of starting share, and when each
 * finished (`times`, ms after the page called create(), for `info.startup`: the steps overlap,
 * so these are points in time, not durations to add up).
 */
class Start {
  constructor({ modelUrl, manifestUrl, wasmUrl, embedWorkerUrl, workers, createdAt }) {
    this.createdAt = createdAt;
    this.times = { workerScript: scriptStartedAt - createdAt };
    this.reached("initCalled");
    this.urls = { modelUrl, manifestUrl, wasmUrl, embedWorkerUrl };
    this.workers = workers > 1 ? workers : 1;
    this.restoredVectors = 0;
    // The wasm (compiled by the page, or fetched and compiled here) is instantiated while the
    // model is read and checked: neither waits.
    this.wasmReady = pageWasmModule.then((wasmModule) => {
      this.urls.wasmModule = wasmModule; // for the helpers
      const source = wasmModule || wasmUrl;
      return init(source ? { module_or_path: source } : undefined); // undefined: beside localrank.js
    });
    this.wasmReady.catch(() => {}); // awaited by wasm(); a model failure first must not leave it unhandled
  }

  reached(step) {
    if (this.times[step] === undefined) this.times[step] = wallClock() - this.createdAt;
  }

  /** Reads the manifest, then starts reading the model and (later) the helper workers. */
  async readManifest() {
    const { modelUrl, manifestUrl } = this.urls;
    this.entry = await manifestEntry(manifestUrl, modelUrl);
    this.reached("manifest");
    modelId = `${this.entry.modelId}@${this.entry.sha256}`;
    // Read (and checked) now, whatever the history: when the model is requested from the
    // server (a first visit, an evicted cache) must not depend on what this device saved.
    this.modelBytes = loadModelBytes(modelUrl, this.entry);
    this.modelBytes.then(() => this.reached("modelRead"), () => {}); // the failure is awaited by attachModel()
    if (this.workers > 1) {
      poolStarted = new Promise((resolve) => (poolStartedNow = resolve));
      // After the page's compiled wasm has come too (or the word that it could not be): the
      // helpers get the module rather than fetching the file again, however slow the compile.
      Promise.all([this.modelBytes, pageWasmModule]).then(([bytes, wasmModule]) => {
        const { wasmUrl, embedWorkerUrl } = this.urls;
        const readModel = cachedModelReader(modelUrl, this.entry);
        poolPlan = { helpers: this.workers - 1, bytes, urls: { wasmUrl, embedWorkerUrl, wasmModule, readModel } };
        setTimeout(startPool, POOL_START_DELAY_MS);
      }, startPool);
    }
  }

  async wasm() {
    try {
      ({ memory: wasmMemory } = await this.wasmReady);
    } catch (error) {
      throw new LocalRankError("ModelFetch", `the localrank wasm file could not be loaded (${error.message})`, { cause: error });
    }
    this.reached("wasm");
  }

  /** Gives the model's bytes to `use`. The helpers start on their own schedule, not with it. */
  async attachModel(use) {
    const bytes = await this.modelBytes;
    progress("model", "compile");
    await this.wasm();
    use(bytes);
    progress("model", "ready");
  }

  /** The saved history, then its saved vectors. */
  async restore() {
    await restoreHistory();
    this.reached("history");
    this.restoredVectors = await restoreVectors();
    this.reached("historyVectors");
  }

  /** `create()`'s `info`. */
  answer(encoder, modelLoaded) {
    this.reached("ready");
    const { entry, restoredVectors, workers, times } = this;
    return { modelId: entry.modelId, sha256: entry.sha256, encoder, events: recommender.history().length, restoredVectors, workers, modelLoaded, startup: times };
  }
}

// The model first, then the encoder and the saved history: create() answers with everything ready.
async function startWithModel(start, { encoderUrl, encoderManifestUrl }) {
  await start.attachModel((bytes) => (recommender = new Recommender(bytes)));
  start.reached("model");
  const fetched = encoderUrl && (await fetchEncoder(encoderUrl, encoderManifestUrl));
  const encoder = fetched ? await useEncoder(fetched) : null;
  start.reached("encoder");
  modelLoaded = Promise.resolve({ encoder });
  await start.restore();
  return start.answer(encoder, true);
}

// Ranking from what this device saved, before the model: the history, its vectors, the encoder
// (checked with the saved vector of its probe sentence). The model is attached when something
// needs it or the worker is idle (attachModelNow).
async function startFromSavedVectors(start, { encoderUrl, encoderManifestUrl }) {
  await start.wasm();
  recommender = Recommender.withoutModel(`${start.entry.modelId}@${start.entry.dtype}`);
  await start.restore();
  const fetched = encoderUrl && (await fetchEncoder(encoderUrl, encoderManifestUrl));
  const encoder = fetched ? await useEncoder(fetched) : null;
  start.reached("encoder");
  modelLoaded = new Promise((resolve, reject) => {
    attachModelNow = () => {
      attachModelNow = null;
      clearTimeout(attachTimer);
      start
        .attachModel((bytes) => recommender.attachModel(bytes))
        .then(async () => ({ encoder: encoder === "later" ? await useEncoder(fetched) : encoder }))
        .then(resolve, reject);
    };
  });
  modelLoaded.catch(() => {}); // awaited by what needs the model
  return start.answer(encoder === "later" ? null : encoder, false);
}

const methods = {
  async init({ modelUrl, manifestUrl, wasmUrl, embedWorkerUrl, encoderUrl, encoderManifestUrl, workers, waitForModel = true, createdAt = wallClock() }) {
    const start = new Start({ modelUrl, manifestUrl, wasmUrl, embedWorkerUrl, workers, createdAt });
    await start.readManifest();
    const encoderUrls = { encoderUrl, encoderManifestUrl };
    return waitForModel ? startWithModel(start, encoderUrls) : startFromSavedVectors(start, encoderUrls);
  },
  // Settles when the model is attached: { encoder } (null, or the store encoder's info).
  // Waiting for it does not hurry it (the client asks at once, for every page).
  modelReady() {
    return modelLoaded;
  },
  // The model's vectors of `texts` (row-major Float32Array), from the cache or embedded now.
  async embed(texts) {
    await needModel();
    await embedIntoCache(texts);
    return recommender.textVectors(texts);
  },
  // Resolves when every helper worker has started or given up: how many are working.
  async poolReady() {
    await poolStarted;
    return 1 + (pool ? await pool.settled() : 0);
  },
  // Stops the helper workers; the client then terminates this worker.
  close() {
    clearTimeout(attachTimer);
    attachModelNow = null;
    if (pool) pool.close();
    pool = null;
    poolPlan = null;
  },
  async record(event) {
    const result = await changeAndSave(() => recommender.record(event));
    syncHistoryVectors();
    return result;
  },
  // Lenient: what cannot be ranked is left out and named in `dropped`, the rest is ranked.
  async rerank(candidates, options) {
    const erasuresThen = erasures;
    // The texts neither in memory nor on disk: embedded here (across the pool), saved after.
    const unsaved = await restoreSavedTexts(recommender.uncachedTexts(candidates, options));
    if (!recommender.hasModel) {
      // Everything may have been saved on this device: then rank now, without the model. A
      // text with no saved vector (a review's reading, a history item whose vector was not
      // kept yet) throws NotReady, and the ranking waits for the model.
      if (!unsaved.length) {
        try {
          return recommender.rerankAdmitting(candidates, options);
        } catch (error) {
          if (error.name !== "NotReady") throw error;
        }
      }
      await needModel();
    }
    await embedIntoCache(unsaved);
    const result = recommender.rerankAdmitting(candidates, options);
    keepProductVectors(unsaved, erasuresThen);
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
  // { hits, misses } of the recommender's vector cache, the vectors kept on disk, and this
  // worker's wasm memory in bytes.
  async stats() {
    await vectorSync;
    return { ...recommender.cacheStats(), storedVectors: storedKeys ? storedKeys.size : 0, memoryBytes: wasmMemory.buffer.byteLength };
  },
  clear() {
    // At once, not when the erase's turn comes: no save begun before this call writes after it.
    erasures += 1;
    return serially(async () => {
      try {
        await eraseAll();
      } catch (error) {
        throw LocalRankError.storage(`could not erase the history on this device: ${storageProblem(error)}`, error);
      }
      recommender.clear();
      // The vectors in memory go too (they are of products this shopper saw), so what is
      // ranked after the erase is embedded and saved again, as on a first visit.
      recommender.clearCache();
      storedKeys = new Set();
      savingBlocked = null;
      // The encoder's probe sentence says nothing about the shopper: kept, so the next visit
      // can still check the encoder before the model loads.
      if (recommender.encoderDim > 0) keepProductVectors([Recommender.probeText()]);
    });
  },
  exportHistory() {
    return new TextDecoder().decode(recommender.exportState());
  },
  setAside() {
    return setAsideCopies();
  },
};

self.onmessage = async ({ data: { id, method, args, wasmModule } }) => {
  if (wasmModule !== undefined) return receiveWasmModule(wasmModule);
  try {
    if (method !== "init" && !recommender) throw new LocalRankError("NotReady", "localrank is not ready: call create() and await it first");
    const run = methods[method];
    if (!run) throw new LocalRankError("Internal", `unknown method ${method}`);
    post({ id, result: await run(...(args || [])) });
  } catch (error) {
    post({ id, error: LocalRankError.from(error).toPlain() });
  } finally {
    attachModelWhenIdle();
  }
};
