// The browser half of the benchmark (scripts/bench drives it headless; bench/run.mjs merges it
// with the native half). It embeds the workload that `localrank bench --write-workload` wrote,
// with localrank's wasm build and with transformers.js on the same model (int8 ONNX), on this
// page's thread, one thread each, and times re-ranking with the Recommender class the store uses.
// The result goes to `window.benchResult`; `body[data-done]` says when it is there.
// Two more passes, each on its own page load (bench/run.mjs): `?pool`, the client (LocalRank,
// its worker and the worker pool) with 1 and 2 workers on a page without COOP/COEP (an ordinary
// store page); `?tjs2`, transformers.js with 2 threads on a cross-origin isolated page (its best
// case: onnxruntime-web's threads need SharedArrayBuffer), which must be a fresh page because
// onnxruntime-web reads its thread count once.
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
  // Wasm memory at each stage (it never shrinks: each figure is the peak so far).
  const memory = { start: wasm.memory.buffer.byteLength };
  const started = performance.now();
  const embedder = new Embedder(bytes);
  const loadMs = performance.now() - started;
  memory.after_load = wasm.memory.buffer.byteLength;
  log(`localrank ${dtype}: loaded in ${loadMs.toFixed(0)} ms`);
  const row = { dtype, file_bytes: entry.bytes, load_ms: loadMs, ...(await embeddingRows((texts) => embedder.embed(texts), workload)) };
  const vectors = rowsOf(embedder.embed(agreementTexts(workload)), embedder.dim);
  memory.after_embedding = wasm.memory.buffer.byteLength;
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
  memory.after_rerank = row.wasm_memory_bytes;
  row.wasm_memory_stages = memory;
  log(`localrank ${dtype}: ${JSON.stringify(row)}`);
  return { row, vectors };
}

/// transformers.js's feature-extraction pipeline on the int8 ONNX model, offline, with `threads`.
async function transformersPipeline(threads) {
  const { pipeline, env } = await import(TRANSFORMERS_URL);
  env.allowRemoteModels = false;
  env.allowLocalModels = true;
  env.localModelPath = ONNX_MODELS;
  env.useBrowserCache = false;
  env.useWasmCache = false;
  env.backends.onnx.wasm.numThreads = threads;
  env.backends.onnx.wasm.wasmPaths = ORT_WASM_PREFIX;
  const extractor = await pipeline("feature-extraction", ONNX_MODEL_NAME, { device: "wasm", dtype: "q8" });
  extractor.onnxVersion = env.backends.onnx.versions?.web ?? null;
  return extractor;
}

async function benchTransformersJs(workload) {
  const started = performance.now();
  // One thread: the same as one localrank worker.
  const extractor = await transformersPipeline(1);
  const loadMs = performance.now() - started;
  log(`transformers.js: loaded in ${loadMs.toFixed(0)} ms (includes fetching the model from this server)`);
  const embed = async (texts) => (await extractor(texts, { pooling: "mean", normalize: true })).data;
  const row = { engine: "transformers.js", onnxruntime_web: extractor.onnxVersion, load_ms: loadMs, ...(await embeddingRows(embed, workload)) };
  const vectors = rowsOf(await embed(agreementTexts(workload)), 384);
  await extractor.dispose();
  log(`transformers.js: ${JSON.stringify(row)}`);
  return { row, vectors };
}

/// Resolves after `ms`; timing loops pause between runs so one run's background work (saving
/// vectors) does not land in the next one's time.
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/// Candidates no client has seen: the run number appended to each title (new text, new vectors).
const fresh = (candidates, run) => candidates.map((c) => ({ ...c, id: `${c.id}~${run}`, title: `${c.title} (${run})` }));

/// The client with `workers` workers: titles and descriptions at batch 32 through `embed` (each
/// call's texts made new, as the client caches vectors), and its main worker's wasm memory.
async function poolThroughput(LocalRank, modelUrl, workload, workers) {
  const rec = await LocalRank.create({ modelUrl, workers });
  const working = await rec.poolReady();
  let call = 0;
  const embed = (texts) => rec.embed(texts.map((t) => `${t} #${++call}`));
  await embed(workload.titles.slice(0, 32)); // warm-up
  const row = {
    workers,
    working,
    titles_b32_per_s: await throughput(embed, workload.titles, 32),
    descriptions_b32_per_s: await throughput(embed, workload.descriptions, 32),
    main_worker_wasm_memory_bytes: (await rec.stats()).memoryBytes,
  };
  await rec.close();
  log(`localrank client, ${workers} worker(s): ${JSON.stringify(row)}`);
  return row;
}

/// Re-rank latency through the client (default workers) as a store page sees it: "new page"
/// (the history's vectors already made, 100 candidates never seen), and the first personalised
/// row of the store's home page (24 candidates) from a cold start (a new LocalRank: model from
/// the Cache API, history and vectors from IndexedDB) with a 20-event history stored: on a return
/// visit (the home page's products ranked on an earlier visit, so their vectors are stored), and
/// with 24 products never seen (everything embedded). The first row is ranked as the demo store
/// does it (`waitForModel: false`: from the saved vectors, before the model has loaded), and,
/// for comparison, after waiting for the model.
async function clientLatency(LocalRank, modelUrl, workload) {
  const rec = await LocalRank.create({ modelUrl });
  await rec.clear();
  for (const event of workload.history) await rec.record(event);
  await rec.stats(); // the history's vectors made and stored
  const runs = SMOKE ? 2 : 10;
  const newPage = [];
  for (let run = 0; run < runs; run++) {
    const candidates = fresh(workload.candidates, `new-${run}`);
    const started = performance.now();
    await rec.rerank(candidates);
    newPage.push(performance.now() - started);
    await rec.stats();
    await pause(50);
  }
  await rec.clear();
  for (const event of workload.history.slice(-20)) await rec.record(event);
  const home = workload.candidates.slice(0, 24);
  await rec.rerank(home, { limit: 8 }); // the earlier visit
  await rec.stats();
  const workers = rec.info.workers;
  await rec.close();
  // As the demo store starts: not waiting for the model (ranked from saved vectors if it can).
  // Where the return visit's first row goes: each start step's median time (ms after create()).
  const startups = [];
  const firstRow = async (candidates, waitForModel = false) => {
    const started = performance.now();
    const client = await LocalRank.create({ modelUrl, waitForModel });
    const created = performance.now();
    await client.rerank(candidates, { limit: 8 });
    const ms = performance.now() - started;
    if (candidates === home && !waitForModel) startups.push({ ...client.info.startup, rerank: ms - (created - started), total: ms });
    await client.modelReady; // the next run starts from a settled cache
    await client.close();
    await pause(50);
    return ms;
  };
  const returnVisit = [];
  const waitingForModel = [];
  const newProducts = [];
  for (let run = 0; run < runs; run++) {
    returnVisit.push(await firstRow(home));
    waitingForModel.push(await firstRow(home, true));
    newProducts.push(await firstRow(fresh(home, `home-${run}`)));
  }
  const steps = [...new Set(startups.flatMap(Object.keys))];
  const firstRowSteps = Object.fromEntries(steps.map((step) => [step, percentile(startups.map((s) => s[step]).filter(Number.isFinite), 0.5)]));
  const row = {
    workers,
    rerank_new_page_p50_ms: percentile(newPage, 0.5),
    rerank_new_page_p95_ms: percentile(newPage, 0.95),
    first_row_p50_ms: percentile(returnVisit, 0.5),
    first_row_p95_ms: percentile(returnVisit, 0.95),
    first_row_waiting_for_model_p50_ms: percentile(waitingForModel, 0.5),
    first_row_waiting_for_model_p95_ms: percentile(waitingForModel, 0.95),
    first_row_new_products_p50_ms: percentile(newProducts, 0.5),
    first_row_new_products_p95_ms: percentile(newProducts, 0.95),
    first_row_steps_p50_ms: firstRowSteps,
  };
  log(`localrank client latency: ${JSON.stringify(row)}`);
  return row;
}

async function benchPool() {
  const workload = await fetchJson(WORKLOAD_URL);
  const manifest = await fetchJson("/models/manifest.json");
  if (SMOKE) {
    workload.titles = workload.titles.slice(0, 32);
    workload.descriptions = workload.descriptions.slice(0, 32);
  }
  const { LocalRank } = await import("/pkg/index.js");
  const modelUrl = `/models/${manifest.files.find((f) => f.dtype === "q8_0").file}`;
  const result = { cross_origin_isolated: self.crossOriginIsolated, hardware_concurrency: navigator.hardwareConcurrency, pool: [] };
  for (const workers of [1, 2]) result.pool.push(await poolThroughput(LocalRank, modelUrl, workload, workers));
  result.latency = await clientLatency(LocalRank, modelUrl, workload);
  return result;
}

/// transformers.js with 2 threads (this page must be cross-origin isolated): titles and
/// descriptions at batch 32.
async function benchTransformersJs2Threads() {
  const workload = await fetchJson(WORKLOAD_URL);
  if (SMOKE) {
    workload.titles = workload.titles.slice(0, 32);
    workload.descriptions = workload.descriptions.slice(0, 32);
  }
  const extractor = await transformersPipeline(2);
  const embed = async (texts) => (await extractor(texts, { pooling: "mean", normalize: true })).data;
  await embed(workload.titles.slice(0, 8));
  const row = {
    threads: 2,
    cross_origin_isolated: self.crossOriginIsolated,
    titles_b32_per_s: await throughput(embed, workload.titles, 32),
    descriptions_b32_per_s: await throughput(embed, workload.descriptions, 32),
  };
  await extractor.dispose();
  log(`transformers.js, 2 threads: ${JSON.stringify(row)}`);
  return row;
}

async function main() {
  if (params.has("pool")) return benchPool();
  if (params.has("tjs2")) return benchTransformersJs2Threads();
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
