// The browser half of the benchmark (scripts/bench drives it headless; bench/run.mjs merges it
// with the native half). It embeds the workload that `localrank bench --write-workload` wrote,
// with localrank's wasm build and with transformers.js on the same model (int8 ONNX), on this
// page's thread, one thread each, and times re-ranking with the Recommender class the store uses.
// The result goes to `window.benchResult`; `body[data-done]` says when it is there.
import init, { Embedder, Recommender } from "/pkg/localrank.js";

const params = new URLSearchParams(location.search);
const SMOKE = params.has("smoke");
const WORKLOAD_URL = "/bench/data/workload.json";
/// An untrained encoder of the shipped shape, written beside the workload (timing only).
const ENCODER_URL = "/bench/data/encoder.gguf";
const TRANSFORMERS_URL = "/bench/transformers/transformers.js";
const ORT_WASM_PREFIX = "/bench/ort/";
const ONNX_MODELS = "/bench/onnx-models/";
const ONNX_MODEL_NAME = "all-MiniLM-L6-v2";
const DTYPES = SMOKE ? ["q8_0"] : ["q8_0", "f32", "q4_0"];
const RERANK_RUNS = SMOKE ? 2 : 20;
/// Each throughput is measured this many times and the median kept: this machine's neighbours
/// make single passes vary by up to a third.
const REPEATS = SMOKE ? 1 : 3;
/// Texts compared across engines for the agreement check.
const AGREEMENT_TEXTS = 16;

const log = (message) => {
  document.getElementById("log").textContent += `${message}\n`;
  console.log(message);
};
/// Lets the page breathe between long synchronous wasm calls.
const yieldToPage = () => new Promise((resolve) => setTimeout(resolve, 0));

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

/// Nearest-rank percentile (the same definition as the native `localrank bench`).
function percentile(samples, fraction) {
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil(fraction * sorted.length);
  return sorted[Math.min(Math.max(rank, 1), sorted.length) - 1];
}

/// Texts per second embedding `texts` in chunks of `batch` with `embed(chunk)` (sync or async):
/// the median of REPEATS passes.
async function throughput(embed, texts, batch) {
  const rates = [];
  for (let pass = 0; pass < REPEATS; pass++) {
    const started = performance.now();
    for (let i = 0; i < texts.length; i += batch) await embed(texts.slice(i, i + batch));
    rates.push(texts.length / ((performance.now() - started) / 1000));
    await yieldToPage();
  }
  return percentile(rates, 0.5);
}

/// The four throughput rows for one engine. Batch-1 descriptions use a quarter of the texts
/// (as natively): slow, and a quarter is enough for a steady rate.
async function embeddingRows(embed, workload) {
  const { titles, descriptions } = workload;
  await embed(titles.slice(0, 8)); // warm-up: allocation and first-call costs are not measured
  return {
    titles_b1_per_s: await throughput(embed, titles, 1),
    titles_b32_per_s: await throughput(embed, titles, 32),
    descriptions_b1_per_s: await throughput(embed, descriptions.slice(0, descriptions.length / 4), 1),
    descriptions_b32_per_s: await throughput(embed, descriptions, 32),
  };
}

/// Cold: the vector cache emptied before each run (all 150 texts embedded); warm: every vector cached.
/// Calls before timing: allocations, and the engine's optimisation of code first run here (with
/// one call, the first pass over the store encoder measured about twice the later passes).
const WARM_UP_CALLS = SMOKE ? 1 : 5;
function warmUp(recommender, candidates) {
  for (let i = 0; i < WARM_UP_CALLS; i++) recommender.rerank(candidates);
}

function rerankLatency(recommender, candidates) {
  const timeOne = () => {
    const started = performance.now();
    recommender.rerank(candidates);
    return performance.now() - started;
  };
  const cold = [];
  for (let i = 0; i < RERANK_RUNS; i++) {
    recommender.clearCache();
    cold.push(timeOne());
  }
  const warm = [];
  for (let i = 0; i < RERANK_RUNS; i++) warm.push(timeOne());
  return {
    rerank_cold_p50_ms: percentile(cold, 0.5),
    rerank_cold_p95_ms: percentile(cold, 0.95),
    rerank_warm_p50_ms: percentile(warm, 0.5),
    rerank_warm_p95_ms: percentile(warm, 0.95),
  };
}

/// Rows of a flat row-major matrix.
const rowsOf = (data, dim) => Array.from({ length: data.length / dim }, (_, i) => data.subarray(i * dim, (i + 1) * dim));

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

function agreement(left, right) {
  const cosines = left.map((row, i) => cosine(row, right[i]));
  return { min: Math.min(...cosines), mean: cosines.reduce((a, b) => a + b, 0) / cosines.length, texts: cosines.length };
}

const agreementTexts = (workload) => [...workload.titles.slice(0, AGREEMENT_TEXTS / 2), ...workload.descriptions.slice(0, AGREEMENT_TEXTS / 2)];

async function benchLocalrank(wasm, manifest, workload, dtype) {
  const entry = manifest.files.find((file) => file.dtype === dtype);
  if (!entry) throw new Error(`models/manifest.json has no ${dtype} model`);
  const bytes = await fetchBytes(`/models/${entry.file}`);
  const started = performance.now();
  const embedder = new Embedder(bytes);
  const loadMs = performance.now() - started;
  log(`localrank ${dtype}: loaded in ${loadMs.toFixed(0)} ms`);
  const row = { dtype, file_bytes: entry.bytes, load_ms: loadMs, ...(await embeddingRows((texts) => embedder.embed(texts), workload)) };
  const vectors = rowsOf(embedder.embed(agreementTexts(workload)), embedder.dim);
  embedder.free();
  const recommender = new Recommender(bytes);
  for (const event of workload.history) recommender.record(event);
  warmUp(recommender, workload.candidates);
  Object.assign(row, rerankLatency(recommender, workload.candidates));
  // The same with the store's sequence encoder and the 64-wide product vectors a store sends.
  recommender.setEncoder(await fetchBytes(ENCODER_URL));
  recommender.clear();
  for (const event of workload.storeHistory) recommender.record(event);
  warmUp(recommender, workload.storeCandidates);
  const store = rerankLatency(recommender, workload.storeCandidates);
  row.rerank_store_warm_p50_ms = store.rerank_warm_p50_ms;
  row.rerank_store_warm_p95_ms = store.rerank_warm_p95_ms;
  recommender.free();
  row.wasm_memory_bytes = wasm.memory.buffer.byteLength;
  log(`localrank ${dtype}: ${JSON.stringify(row)}`);
  return { row, vectors };
}

async function benchTransformersJs(workload) {
  const { pipeline, env } = await import(TRANSFORMERS_URL);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = ONNX_MODELS;
  env.useBrowserCache = false;
  env.useWasmCache = false;
  env.backends.onnx.wasm.numThreads = 1; // localrank's wasm is single-threaded: equal threads
  env.backends.onnx.wasm.wasmPaths = ORT_WASM_PREFIX;
  const started = performance.now();
  const extractor = await pipeline("feature-extraction", ONNX_MODEL_NAME, { device: "wasm", dtype: "q8" });
  const loadMs = performance.now() - started;
  log(`transformers.js: loaded in ${loadMs.toFixed(0)} ms (includes fetching the model from this server)`);
  const embed = async (texts) => (await extractor(texts, { pooling: "mean", normalize: true })).data;
  const row = { engine: "transformers.js", onnxruntime_web: env.backends.onnx.versions?.web ?? null, load_ms: loadMs, ...(await embeddingRows(embed, workload)) };
  const vectors = rowsOf(await embed(agreementTexts(workload)), 384);
  await extractor.dispose();
  log(`transformers.js: ${JSON.stringify(row)}`);
  return { row, vectors };
}

async function main() {
  const workload = await fetchJson(WORKLOAD_URL);
  const manifest = await fetchJson("/models/manifest.json");
  if (SMOKE) {
    workload.titles = workload.titles.slice(0, 32);
    workload.descriptions = workload.descriptions.slice(0, 32);
  }
  const wasm = await init();
  const result = {
    smoke: SMOKE,
    user_agent: navigator.userAgent,
    hardware_concurrency: navigator.hardwareConcurrency,
    cross_origin_isolated: self.crossOriginIsolated,
    localrank: [],
    agreement: {},
  };
  const vectors = {};
  // q8_0 (the default model) runs first: wasm memory never shrinks, so its size after the q8_0
  // pass is the peak of the store's path (load, embed, re-rank) without the other models.
  for (const dtype of DTYPES) {
    const run = await benchLocalrank(wasm, manifest, workload, dtype);
    result.localrank.push(run.row);
    vectors[dtype] = run.vectors;
    await yieldToPage();
  }
  result.peak_wasm_memory_bytes = result.localrank[0].wasm_memory_bytes;
  const reference = await benchTransformersJs(workload);
  result.transformersjs = reference.row;
  for (const dtype of DTYPES) result.agreement[`localrank_${dtype}_vs_transformersjs`] = agreement(vectors[dtype], reference.vectors);
  if (vectors.f32) result.agreement.localrank_q8_0_vs_f32 = agreement(vectors.q8_0, vectors.f32);
  log(`agreement: ${JSON.stringify(result.agreement)}`);
  return result;
}

main().then(
  (result) => {
    window.benchResult = result;
    document.body.dataset.done = "ok";
  },
  (error) => {
    window.benchError = String(error?.stack || error);
    log(`failed: ${window.benchError}`);
    document.body.dataset.done = "error";
  },
);
