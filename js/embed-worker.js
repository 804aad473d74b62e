// A helper of the worker pool (pool.js): its own wasm instance with the model, nothing else. It
// never touches storage or the network beyond loading its own code: the model bytes arrive
// from the main worker, already checked.
// Messages in: { init: Uint8Array, wasmModule?, wasmUrl? } then { id, batches: string[][] };
// out: { ready: true } | { id, vectors: Float32Array } | { id, error: { name, message, field? } }.
import init, { Embedder } from "./localrank.js";
import { LocalRankError } from "./errors.js";

let embedder = null;

self.onmessage = async ({ data }) => {
  if (data.init) {
    try {
      await init(data.wasmModule || data.wasmUrl ? { module_or_path: data.wasmModule || data.wasmUrl } : undefined);
      embedder = new Embedder(data.init);
      self.postMessage({ ready: true });
    } catch (error) {
      self.postMessage({ ready: false, error: LocalRankError.from(error).toPlain() });
    }
    return;
  }
  const { id, batches } = data;
  try {
    // One call per batch, in the order given: the pool's plan makes each batch's vectors the
    // bits one worker would compute (Embedder.batchPlan).
    const parts = batches.map((texts) => embedder.embed(texts));
    const vectors = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      vectors.set(part, offset);
      offset += part.length;
    }
    self.postMessage({ id, vectors }, [vectors.buffer]);
  } catch (error) {
    self.postMessage({ id, error: LocalRankError.from(error).toPlain() });
  }
};
