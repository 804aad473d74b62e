// localrank for a storefront page, in a few lines:
//
//   import { LocalRank } from "localrank";   // or "/node_modules/localrank/index.js", or a CDN copy
//   const rec = await LocalRank.create({ modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf", onProgress, onWarning });
//   await rec.record({ kind: "view", at: Date.now(), item: product });
//   const ranked = await rec.rerank(candidates, { limit: 8 });   // [{ id, score, reason }]
//   const { now, personalised } = rec.rerankProgressively(candidates, { limit: 8 }); // never waits
//
// Everything runs in a Web Worker (worker.js): the model download with progress and a sha256
// check against the manifest, the Cache API, IndexedDB, and the wasm Recommender, with helper
// workers (pool.js) that share the embedding. Nothing the shopper does is sent anywhere. The
// package's own files (worker, wasm) are found beside this module (`import.meta.url`), so it
// works from any folder and under a bundler; options override each URL.
//
// Every failure is a `LocalRankError` with a stable `name` (errors.js); progress events name the
// file and the phase: fetch, cache, verify, compile, ready.
//
// Degrade, don't die: `rerank` ranks what it can (invalid candidates are left out, repeated ids
// merged, each problem reported once through onWarning); a failed `record` leaves the history
// as it was; a saved history that cannot be read is kept aside, not lost, and the recommender
// starts without it. When the recommender cannot start at all, `LocalRank.storedData()` and
// `LocalRank.eraseStoredData()` still let the page show and erase what is stored.
import { eraseAll, savedHistoryText, setAsideCopies } from "./storage.js";
import { LocalRankError, ERROR_NAMES } from "./errors.js";

export { LocalRankError, ERROR_NAMES };

/** Workers by default: one per core, at most this many (each holds its own copy of the model). */
const MAX_DEFAULT_WORKERS = 4;

/** The reason localrank gives a product placed by the server's order (`Reason::server`). */
const SERVER_REASON = "Popular in the store";

/** Scores mapped to 0..1 (all equal: all 1), halves first as the core does, so no overflow. */
function minMax(scores) {
  const min = Math.min(...scores);
  const max = Math.max(...scores);
  return scores.map((s) => (max > min ? (s / 2 - min / 2) / (max / 2 - min / 2) : 1));
}

export class LocalRank {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #onProgress;
  #onWarning;
  #reported = new Set();
  #stopped = null;

  constructor(worker, { onProgress, onWarning }) {
    this.#worker = worker;
    this.#onProgress = onProgress || (() => {});
    this.#onWarning = onWarning || ((message) => console.warn(`localrank: ${message}`));
    worker.onmessage = ({ data }) => this.#receive(data);
    worker.onerror = (event) => {
      event.preventDefault();
      this.#stop(new LocalRankError("WorkerFailed", `the recommender stopped (${event.message || "its worker failed to load"})`));
    };
    worker.onmessageerror = () => this.#stop(new LocalRankError("WorkerFailed", "the recommender sent a message that could not be read"));
  }

  /**
   * Starts the worker, loads the model (from the Cache API when it is there) and the saved history.
   * modelUrl: the GGUF model; manifestUrl (default: manifest.json beside it) holds its checksum.
   * onProgress({ file: "model"|"encoder", phase: "fetch"|"cache"|"verify"|"compile"|"ready",
   * loaded, total }); onWarning(message): anything that went wrong but did not stop it.
   * encoderUrl (optional): the store's sequence encoder (`localrank train`'s encoder.gguf), with
   * its checksum in encoderManifestUrl (default: train.json beside it). If it cannot be used,
   * onWarning says why and ranking is by text only. `info.encoder` is { sha256, dim } or null.
   * workers: how many workers embed (default: one per core, at most 4); workerUrl,
   * embedWorkerUrl, wasmUrl: where this package's worker.js, embed-worker.js and
   * localrank_bg.wasm are, if not beside this module.
   * compileOnPage (default true): the wasm is compiled on the page while the worker starts,
   * which makes the start about 80 ms faster; set false on a page whose CSP does not allow
   * 'wasm-unsafe-eval' (the worker then compiles it).
   * waitForModel (default true): with false, create() resolves as soon as the saved history
   * and the vectors this device kept are read (the model still loading: `info.modelLoaded` is
   * false), so a returning shopper's first row is ranked from them at once; `modelReady`
   * settles when the model is attached, and a ranking that needs a text embedded waits for it.
   * Rejects with a LocalRankError (ModelFetch, ModelChecksum, ModelFormat, WorkerFailed, ...);
   * with waitForModel false, a model failure rejects `modelReady` instead (and every later call
   * that needs the model).
   */
  static async create({ modelUrl, manifestUrl, workerUrl, embedWorkerUrl, wasmUrl, encoderUrl, encoderManifestUrl, workers, waitForModel = true, compileOnPage = true, onProgress, onWarning } = {}) {
    if (!modelUrl) throw new LocalRankError("InvalidRecord", "LocalRank.create needs a modelUrl", { field: "modelUrl" });
    const createdAt = performance.timeOrigin + performance.now(); // info.startup counts from here
    const absolute = (url) => url && new URL(url, location.href).href;
    modelUrl = absolute(modelUrl);
    manifestUrl = absolute(manifestUrl) || new URL("manifest.json", modelUrl).href;
    if (encoderUrl && !encoderManifestUrl) encoderManifestUrl = new URL("train.json", absolute(encoderUrl)).href;
    workers = LocalRank.#workerCount(workers);
    // The literal `new Worker(new URL(..., import.meta.url))` is what bundlers recognise.
    const worker = workerUrl ? new Worker(workerUrl, { type: "module", name: "localrank" }) : new Worker(new URL("./worker.js", import.meta.url), { type: "module", name: "localrank" });
    const rec = new LocalRank(worker, { onProgress, onWarning });
    LocalRank.#compileFor(worker, absolute(wasmUrl) || new URL("./localrank_bg.wasm", import.meta.url).href, compileOnPage);
    try {
      rec.info = await rec.#call("init", { modelUrl, manifestUrl, wasmUrl: absolute(wasmUrl), embedWorkerUrl: absolute(embedWorkerUrl), encoderUrl: absolute(encoderUrl), encoderManifestUrl: absolute(encoderManifestUrl), workers, waitForModel: waitForModel !== false, createdAt });
    } catch (error) {
      rec.terminate();
      throw error;
    }
    rec.modelReady = rec.info.modelLoaded ? Promise.resolve({ encoder: rec.info.encoder }) : rec.#call("modelReady");
    rec.modelReady.catch(() => {}); // the page's to handle (a ranking that needs the model rejects too)
    return rec;
  }

  /**
   * Compiles the wasm here while the worker starts, and hands the module over (a compiled module
   * can be posted to a worker; its helpers get it too): the worker's own start (about 70 ms: its
   * scripts fetched and run) and the compile overlap, where the worker would compile only once
   * running. If it cannot be compiled here (`compileOnPage: false`, a page whose CSP has no
   * 'wasm-unsafe-eval', a server sending another MIME type), the worker compiles it itself.
   */
  static #compileFor(worker, wasmUrl, compileOnPage) {
    const give = (wasmModule) => worker.postMessage({ wasmModule });
    if (!compileOnPage || typeof WebAssembly.compileStreaming !== "function") return give(null);
    WebAssembly.compileStreaming(fetch(wasmUrl)).then(give, () => give(null));
  }

  static #workerCount(workers) {
    if (workers === undefined) return Math.max(1, Math.min(MAX_DEFAULT_WORKERS, (typeof navigator !== "undefined" && navigator.hardwareConcurrency) || 1));
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) throw new LocalRankError("InvalidRecord", `workers must be a whole number from 1 to 64, not ${workers}`, { field: "workers" });
    return workers;
  }

  /** What is stored on this device, readable without a running recommender: { history, setAside }. */
  static async storedData() {
    try {
      return { history: await savedHistoryText(), setAside: await setAsideCopies() };
    } catch (error) {
      throw LocalRankError.storage(`could not read the data stored on this device (${(error && error.message) || error})`, error);
    }
  }

  /** Erases the history and every copy kept aside, without a running recommender. */
  static async eraseStoredData() {
    try {
      await eraseAll();
    } catch (error) {
      throw LocalRankError.storage(`could not erase the data stored on this device (${(error && error.message) || error})`, error);
    }
  }

  /**
   * The server's order of `candidates`, exactly as localrank ranks them for a shopper with no
   * history: by `score`, highest first, when every candidate has one, else in list order (ties
   * keep list order); each id once; candidates without a string id and title left out; at most
   * `limit` (0 = all). Needs no model or worker: a page can show it before anything has loaded.
   */
  static serverOrder(candidates, { limit = 0 } = {}) {
    const seen = new Set();
    const usable = (Array.isArray(candidates) ? candidates : []).filter(
      (c) => c && typeof c.id === "string" && typeof c.title === "string" && !seen.has(c.id) && seen.add(c.id),
    );
    const scored = usable.every((c) => typeof c.score === "number" && Number.isFinite(c.score));
    const prior = scored ? minMax(usable.map((c) => c.score)) : usable.map((_, i) => (usable.length > 1 ? 1 - i / (usable.length - 1) : 1));
    const order = usable.map((c, i) => ({ id: c.id, score: prior[i], reason: { kind: "server", text: SERVER_REASON } }));
    order.sort((a, b) => b.score - a.score); // stable: ties keep the list order
    return limit > 0 ? order.slice(0, limit) : order;
  }

  /**
   * A ranking that never keeps the page waiting: `now` is the server's order (synchronous, see
   * `serverOrder`), `personalised` a promise of the re-ranked order. A page shows `now` at once
   * and swaps in `personalised` when it resolves (if it rejects, `now` stands).
   */
  rerankProgressively(candidates, options) {
    return { now: LocalRank.serverOrder(candidates, options), personalised: this.rerank(candidates, options) };
  }

  /**
   * Settles when the model is attached ({ encoder }: the store encoder in use, or null); at
   * once unless created with `waitForModel: false`. Rejects with the model's failure.
   * @type {Promise<{ encoder: { sha256: string, dim: number } | null }>}
   */
  modelReady;

  /** The model's vectors of `texts`: a Float32Array of texts.length rows, each L2-normalised. */
  embed(texts) { return this.#call("embed", texts); }
  /** Resolves when every embedding worker has started (or given up): how many are working. */
  poolReady() { return this.#call("poolReady"); }

  /** Adds a shopper event ({ kind, at, item | query }) to the history on this device. */
  record(event) { return this.#call("record", event); }

  /**
   * Re-ranks the server's candidates for this shopper: [{ id, score, reason }]. Candidates that
   * cannot be ranked are left out (reported once each through onWarning); repeated ids appear once.
   */
  async rerank(candidates, options) {
    const { ranked, dropped } = await this.#call("rerank", candidates, options);
    for (const message of dropped) {
      if (this.#reported.has(message)) continue;
      this.#reported.add(message);
      this.#onWarning(`a product from the store was not personalised: ${message}`);
    }
    return ranked;
  }
  /**
   * { hits, misses, storedVectors, memoryBytes }: texts the vector cache answered and texts
   * embedded since start, how many of the history's vectors are kept on this device (after
   * pending writes), and the main worker's wasm memory (its peak: wasm memory never shrinks).
   */
  stats() { return this.#call("stats"); }
  /** The events stored on this device, oldest first. */
  history() { return this.#call("history"); }
  /** Removes every event about one product; resolves to how many were removed. */
  forget(itemId) { return this.#call("forget", itemId); }
  /** Erases the whole history on this device, any copy kept aside, and the products' vectors. */
  clear() { return this.#call("clear"); }
  /** The history as JSON text, for the shopper's own copy. */
  exportHistory() { return this.#call("exportHistory"); }
  /** Saved copies that could not be read, kept aside: [{ key, reason, at, text }]. */
  setAside() { return this.#call("setAside"); }

  /** Stops every worker (the pool's helpers first); later calls reject with `Terminated`. */
  async close() {
    if (!this.#stopped) {
      // Ask the worker to stop its helpers; a worker that is stuck or dead is terminated anyway
      // (and with it any helper it started).
      await Promise.race([this.#call("close").catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
    }
    this.terminate();
  }

  /** Stops the worker at once (its helpers with it); later calls reject with `Terminated`. */
  terminate() {
    this.#worker.terminate();
    this.#stop(new LocalRankError("Terminated", "localrank was closed"));
  }

  #call(method, ...args) {
    if (this.#stopped) return Promise.reject(this.#stopped);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, method, args });
    });
  }

  #receive(data) {
    if (data.type === "progress") return this.#onProgress(data);
    if (data.type === "warning") return this.#onWarning(data.message);
    const pending = this.#pending.get(data.id);
    if (!pending) return;
    this.#pending.delete(data.id);
    if ("error" in data) pending.reject(LocalRankError.from(data.error));
    else pending.resolve(data.result);
  }

  #stop(error) {
    this.#stopped ||= error;
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
