// The worker pool: helper workers (embed-worker.js), each with its own wasm instance, that embed
// shares of a batch while the main worker embeds its own share. No SharedArrayBuffer, so it
// works on any page, cross-origin isolated or not.
//
// Identical results: work is split along the batches one worker would run
// (`Recommender.batchPlan`), and a batch's vectors depend only on its members, so the pool's
// vectors are bit for bit one worker's.
//
// Faults: a helper that dies (an uncaught error, a crash) is replaced and its share retried once
// on the new one; a second failure is a `WorkerFailed` error. A helper that cannot start is left
// out (with a warning) and the others carry on; with none, the main worker embeds alone.
import { LocalRankError } from "./errors.js";

class Helper {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #dead = null;
  /** Resolves true when the helper has loaded the model, false if it could not. */
  ready;
  isReady = false;

  constructor(name, modelBytes, urls) {
    const { embedWorkerUrl } = urls;
    // The literal `new Worker(new URL(..., import.meta.url))` is what bundlers recognise.
    this.#worker = embedWorkerUrl ? new Worker(embedWorkerUrl, { type: "module", name }) : new Worker(new URL("./embed-worker.js", import.meta.url), { type: "module", name });
    this.ready = new Promise((resolve) => {
      this.#worker.onmessage = ({ data }) => {
        if ("ready" in data) {
          this.isReady = data.ready;
          if (!data.ready) this.#fail(LocalRankError.from(data.error));
          return resolve(data.ready);
        }
        const request = this.#pending.get(data.id);
        if (!request) return;
        this.#pending.delete(data.id);
        if (data.error) request.reject(LocalRankError.from(data.error));
        else request.resolve(data.vectors);
      };
      this.#worker.onerror = (event) => {
        event.preventDefault();
        this.#fail(new LocalRankError("WorkerFailed", `embedding worker ${name} stopped: ${event.message || "it failed to load"}`));
        resolve(false);
      };
      this.#worker.onmessageerror = () => this.#fail(new LocalRankError("WorkerFailed", `embedding worker ${name} sent a message that could not be read`));
    });
    // A copy: the main worker keeps its own bytes (transferring would detach them).
    this.#worker.postMessage({ init: modelBytes, wasmUrl: urls.wasmUrl, wasmModule: urls.wasmModule });
  }

  get dead() {
    return this.#dead;
  }

  /** The vectors of `batches` (string[][]), rows in order, as one Float32Array. */
  embed(batches) {
    if (this.#dead) return Promise.reject(this.#dead);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, batches });
    });
  }

  terminate() {
    this.#worker.terminate();
    this.#fail(new LocalRankError("Terminated", "the embedding worker was closed"));
  }

  #fail(error) {
    this.isReady = false;
    this.#dead ||= error;
    for (const { reject } of this.#pending.values()) reject(error);
    this.#pending.clear();
  }
}

export class EmbedPool {
  #slots = [];
  #generation = [];
  #readModel;
  #urls;
  #onWarning;

  /**
   * `helpers` helper workers, each loading `modelBytes` (already checked) into its own instance.
   * The pool does not keep those bytes (25 MB the main worker would otherwise hold for its
   * whole life): a replacement for a helper that died gets them from `readModel()` (the checked
   * copy on this device, or null if there is none, and then there is no replacement).
   * `urls`: { wasmUrl, embedWorkerUrl }, where this package's files are if not beside it, and
   * wasmModule: the compiled wasm, if the page compiled it (the helpers then do not).
   */
  constructor(helpers, modelBytes, { onWarning, readModel, ...urls }) {
    this.#readModel = readModel;
    this.#urls = urls;
    this.#onWarning = onWarning;
    for (let slot = 0; slot < helpers; slot++) {
      this.#generation.push(0);
      this.#slots.push(this.#spawn(slot, modelBytes));
    }
  }

  /** Helpers that have loaded the model (the main worker does not wait for the others). */
  get readyCount() {
    return this.#slots.filter((h) => h.isReady).length;
  }

  /** Resolves when every helper has started or given up (for benchmarks and tests). */
  async settled() {
    await Promise.all(this.#slots.map((h) => h.ready));
    return this.readyCount;
  }

  /**
   * Embeds `texts` into `recommender`'s cache: the main worker's share here, the rest on the
   * ready helpers, all along `recommender.batchPlan(texts)`.
   */
  async embedInto(recommender, texts) {
    const helpers = this.#slots.filter((h) => h.isReady);
    const plan = helpers.length && texts.length > 1 ? recommender.batchPlan(texts) : [];
    if (plan.length < 2) {
      recommender.textVectors(texts);
      return;
    }
    const [mine, ...theirs] = splitPlan(plan, texts, helpers.length + 1);
    const running = theirs.map((batches, i) =>
      batches.length ? this.#embedRetrying(helpers[i], batches.map((b) => b.map((j) => texts[j]))).then((vectors) => ({ batches, vectors })) : null,
    );
    // While the helpers work, the main worker embeds its own share (straight into its cache).
    let own = null;
    try {
      for (const batch of mine) recommender.textVectors(batch.map((j) => texts[j]));
    } catch (error) {
      own = error;
    }
    const results = await Promise.allSettled(running.filter(Boolean));
    if (own) throw own;
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
    for (const { value } of results) {
      const rows = value.batches.flat().map((j) => texts[j]);
      recommender.insertVectors(rows, value.vectors);
    }
  }

  /** Stops every helper; nothing stays alive. */
  close() {
    for (const helper of this.#slots) helper.terminate();
    this.#slots = [];
  }

  #spawn(slot, modelBytes) {
    const name = `localrank-embed-${slot}.${this.#generation[slot]++}`;
    const helper = new Helper(name, modelBytes, this.#urls);
    helper.ready.then((ok) => ok || this.#onWarning(`an embedding worker could not start (${helper.dead && helper.dead.message}); the others carry on`));
    return helper;
  }

  async #readModelOrNull() {
    try {
      return (await this.#readModel?.()) || null;
    } catch (error) {
      this.#onWarning(`the model could not be read again for a new embedding worker (${error.message})`);
      return null;
    }
  }

  // A share on `helper`; if the helper dies, once more on its replacement.
  async #embedRetrying(helper, batches) {
    try {
      return await helper.embed(batches);
    } catch (error) {
      if (error.name !== "WorkerFailed") throw error;
      const slot = this.#slots.indexOf(helper);
      if (slot < 0) throw error;
      helper.terminate();
      const modelBytes = await this.#readModelOrNull();
      if (!modelBytes) {
        throw new LocalRankError("WorkerFailed", `an embedding worker died and cannot be replaced: the model is not on this device any more (${error.message})`, { cause: error });
      }
      if (this.#slots[slot] !== helper) throw error; // closed (or replaced) meanwhile
      const replacement = this.#spawn(slot, modelBytes);
      this.#slots[slot] = replacement;
      if (!(await replacement.ready)) throw new LocalRankError("WorkerFailed", `an embedding worker died and its replacement could not start: ${error.message}`);
      try {
        return await replacement.embed(batches);
      } catch (again) {
        if (again.name !== "WorkerFailed") throw again;
        throw new LocalRankError("WorkerFailed", `an embedding worker died twice on the same texts: ${again.message}`, { cause: again });
      }
    }
  }
}

/**
 * Splits a batch plan into `shares` lists of batches, balancing an estimate of the work (a
 * batch's rows times its longest text, as padding makes every row as long as the longest):
 * each batch, longest first as planned, goes to the share with the least work so far.
 */
export function splitPlan(plan, texts, shares) {
  const work = new Array(shares).fill(0);
  const split = Array.from({ length: shares }, () => []);
  for (const batch of plan) {
    const longest = Math.max(...batch.map((j) => texts[j].length));
    const share = work.indexOf(Math.min(...work));
    split[share].push(batch);
    work[share] += batch.length * (longest + 8); // +8: the fixed cost of a row
  }
  return split;
}
