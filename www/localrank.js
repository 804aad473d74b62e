// localrank for a storefront page, in a few lines:
//
//   import { LocalRank } from "/localrank.js";
//   const rec = await LocalRank.create({ modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf", onProgress });
//   await rec.record({ kind: "view", at: Date.now(), item: product });
//   const ranked = await rec.rerank(candidates, { limit: 8 });   // [{ id, score, reason }]
//
// Everything runs in a Web Worker (worker.js): the model download with progress and a sha256
// check against the manifest, the Cache API, IndexedDB, and the wasm Recommender. Nothing the
// shopper does is sent anywhere.

export class LocalRank {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #onProgress;
  #onWarning;

  constructor(worker, { onProgress, onWarning }) {
    this.#worker = worker;
    this.#onProgress = onProgress || (() => {});
    this.#onWarning = onWarning || ((message) => console.warn(`localrank: ${message}`));
    worker.onmessage = ({ data }) => this.#receive(data);
    worker.onerror = (event) => this.#failAll(new Error(`localrank worker failed: ${event.message}`));
  }

  /**
   * Starts the worker, loads the model (from the Cache API when it is there) and the saved history.
   * onProgress({ phase: "download"|"cache"|"compile", loaded, total }) reports the model's bytes.
   */
  static async create({ modelUrl, manifestUrl = "/models/manifest.json", workerUrl = "/worker.js", onProgress, onWarning } = {}) {
    if (!modelUrl) throw new Error("LocalRank.create needs a modelUrl");
    const worker = new Worker(workerUrl, { type: "module" });
    const rec = new LocalRank(worker, { onProgress, onWarning });
    rec.info = await rec.#call("init", { modelUrl, manifestUrl });
    return rec;
  }

  /** Adds a shopper event ({ kind, at, item | query }) to the history on this device. */
  record(event) { return this.#call("record", event); }
  /** Re-ranks the server's candidates for this shopper: [{ id, score, reason }]. */
  rerank(candidates, options) { return this.#call("rerank", candidates, options); }
  /** The events stored on this device, oldest first. */
  history() { return this.#call("history"); }
  /** Removes every event about one product; resolves to how many were removed. */
  forget(itemId) { return this.#call("forget", itemId); }
  /** Erases the whole history on this device. */
  clear() { return this.#call("clear"); }
  /** The history as JSON text, for the shopper's own copy. */
  exportHistory() { return this.#call("exportHistory"); }

  terminate() {
    this.#worker.terminate();
    this.#failAll(new Error("localrank was terminated"));
  }

  #call(method, ...args) {
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

  #failAll(error) {
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}
