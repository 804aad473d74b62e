// localrank for a storefront page, in a few lines:
//
//   import { LocalRank } from "/localrank.js";
//   const rec = await LocalRank.create({ modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf", onProgress, onWarning });
//   await rec.record({ kind: "view", at: Date.now(), item: product });
//   const ranked = await rec.rerank(candidates, { limit: 8 });   // [{ id, score, reason }]
//   const { now, personalised } = rec.rerankProgressively(candidates, { limit: 8 }); // never waits
//
// Everything runs in a Web Worker (worker.js): the model download with progress and a sha256
// check against the manifest, the Cache API, IndexedDB, and the wasm Recommender. Nothing the
// shopper does is sent anywhere.
//
// Degrade, don't die: `rerank` ranks what it can (invalid candidates are left out, repeated ids
// merged, each problem reported once through onWarning); a failed `record` leaves the history
// as it was; a saved history that cannot be read is kept aside, not lost, and the recommender
// starts without it. When the recommender cannot start at all, `LocalRank.storedData()` and
// `LocalRank.eraseStoredData()` still let the page show and erase what is stored.
import { eraseAll, savedHistoryText, setAsideCopies } from "/storage.js";

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
      this.#stop(new Error(`the recommender stopped (${event.message || "its worker failed to load"})`));
    };
    worker.onmessageerror = () => this.#stop(new Error("the recommender sent a message that could not be read"));
  }

  /**
   * Starts the worker, loads the model (from the Cache API when it is there) and the saved history.
   * onProgress({ phase: "download"|"cache"|"compile"|"encoder", loaded, total }) reports bytes;
   * onWarning(message) anything that went wrong but did not stop it.
   * encoderUrl (optional): the store's sequence encoder (`localrank train`'s encoder.gguf), with
   * its checksum in encoderManifestUrl (default: train.json beside it). If it cannot be used,
   * onWarning says why and ranking is by text only. `info.encoder` is { sha256, dim } or null.
   */
  static async create({ modelUrl, manifestUrl = "/models/manifest.json", workerUrl = "/worker.js", encoderUrl, encoderManifestUrl, onProgress, onWarning } = {}) {
    if (!modelUrl) throw new Error("LocalRank.create needs a modelUrl");
    const worker = new Worker(workerUrl, { type: "module" });
    const rec = new LocalRank(worker, { onProgress, onWarning });
    if (encoderUrl && !encoderManifestUrl) encoderManifestUrl = new URL("train.json", new URL(encoderUrl, location.href)).href;
    try {
      rec.info = await rec.#call("init", { modelUrl, manifestUrl, encoderUrl, encoderManifestUrl });
    } catch (error) {
      rec.terminate();
      throw error;
    }
    return rec;
  }

  /** What is stored on this device, readable without a running recommender: { history, setAside }. */
  static async storedData() {
    return { history: await savedHistoryText(), setAside: await setAsideCopies() };
  }

  /** Erases the history and every copy kept aside, without a running recommender. */
  static eraseStoredData() {
    return eraseAll();
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
   * { hits, misses, storedVectors }: texts the vector cache answered and texts embedded since
   * start, and how many of the history's vectors are kept on this device (after pending writes).
   */
  stats() { return this.#call("stats"); }
  /** The events stored on this device, oldest first. */
  history() { return this.#call("history"); }
  /** Removes every event about one product; resolves to how many were removed. */
  forget(itemId) { return this.#call("forget", itemId); }
  /** Erases the whole history on this device, and any copy kept aside. */
  clear() { return this.#call("clear"); }
  /** The history as JSON text, for the shopper's own copy. */
  exportHistory() { return this.#call("exportHistory"); }
  /** Saved copies that could not be read, kept aside: [{ key, reason, at, text }]. */
  setAside() { return this.#call("setAside"); }

  terminate() {
    this.#worker.terminate();
    this.#stop(new Error("localrank was terminated"));
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
    if ("error" in data) pending.reject(new Error(data.error));
    else pending.resolve(data.result);
  }

  #stop(error) {
    this.#stopped ||= error;
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
