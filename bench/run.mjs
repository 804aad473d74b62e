// The benchmark runner: native half (`localrank bench`), browser half (www/bench.html in Debian's
// Chromium through playwright-core), one table on stdout, and bench/results.json, bench/table.md
// and bench/throughput.svg. `scripts/bench` builds and fetches what it needs, then runs this.
//
//   node bench/run.mjs [--smoke]
//   node bench/run.mjs --redraw     (table.md and throughput.svg again from bench/results.json)
//   node bench/run.mjs --pool-only  (the client's pool and latency page alone, printed, not written:
//                                    for work on them; the committed results need a full run)
//
// --smoke: q8_0 only, few texts and runs, output in target/bench/smoke/ (CI keeps it working;
// its numbers mean nothing). Benchmarks never pass or fail on a number: only a broken run fails.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, statSync } from "node:fs";
import { gzipSync, constants as zlib } from "node:zlib";
import { tmpdir, cpus, totalmem, release } from "node:os";
import { join, dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const SMOKE = process.argv.includes("--smoke");
const OUT = SMOKE ? join(ROOT, "target/bench/smoke") : join(ROOT, "bench");
const WORK = join(ROOT, "target/bench");
const BIN = process.env.LOCALRANK_BIN || join(ROOT, "target/release/localrank");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const PORT = 19000 + (process.pid % 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const PAGE_TIMEOUT_MS = 30 * 60 * 1000;
const MOUNTS = {
  "/bench/data": "target/bench",
  "/bench/transformers": "bench/node_modules/@huggingface/transformers/dist",
  "/bench/ort": "bench/node_modules/onnxruntime-web/dist",
  "/bench/onnx-models": "bench/.cache/transformersjs",
};

const say = (message) => process.stderr.write(`bench: ${message}\n`);

function localrank(args) {
  say(`${relative(ROOT, BIN)} ${args.join(" ")}`);
  execFileSync(BIN, args, { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"] });
}

function runNative() {
  const json = join(WORK, "native.json");
  const sized = SMOKE ? ["--model", "models/all-MiniLM-L6-v2.q8_0.gguf", "--texts", "32", "--runs", "2", "--repeats", "1"] : ["--runs", "20"];
  localrank(["bench", ...sized, "--json", json]);
  return JSON.parse(readFileSync(json, "utf8"));
}

async function startServer() {
  const mounts = Object.entries(MOUNTS).flatMap(([prefix, dir]) => ["--mount", `${prefix}=${dir}`]);
  const server = spawn(BIN, ["serve", "--port", String(PORT), ...mounts], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  await new Promise((resolve, reject) => {
    server.stderr.on("data", (chunk) => String(chunk).includes("localrank store:") && resolve());
    server.on("exit", (code) => reject(new Error(`localrank serve exited with ${code}`)));
  });
  return server;
}

/// One pass of the benchmark page: `mode` "" (engines and re-rank), "pool" or "tjs2" (see
/// www/bench.js). `ordinary`: serve the page without COOP/COEP (the store server sends them), as
/// most store pages are; its workers then run without SharedArrayBuffer.
async function runBrowser(mode = "", { ordinary = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "localrank-bench-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = context.pages()[0] || (await context.newPage());
    const problems = [];
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(message.text());
      else if (message.type() === "log") say(`page: ${message.text().slice(0, 200)}`);
    });
    page.on("pageerror", (error) => problems.push(String(error)));
    if (ordinary) {
      await page.route("**/bench.html?*", async (route) => {
        const response = await route.fetch();
        const headers = { ...response.headers() };
        delete headers["cross-origin-opener-policy"];
        delete headers["cross-origin-embedder-policy"];
        await route.fulfill({ response, headers });
      });
    }
    const query = [mode, SMOKE ? "smoke" : ""].filter(Boolean).join("&");
    await page.goto(`${BASE}/bench.html?${query}`);
    await page.waitForSelector("body[data-done]", { timeout: PAGE_TIMEOUT_MS });
    const error = await page.evaluate(() => window.benchError);
    if (error) throw new Error(`the benchmark page failed: ${error}`);
    if (problems.length) throw new Error(`console errors on the benchmark page: ${problems.join(" | ")}`);
    return await page.evaluate(() => window.benchResult);
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
}

function environment(browser) {
  const chromiumVersion = execFileSync(CHROMIUM, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  const rustc = execFileSync("rustc", ["--version"], { encoding: "utf8" }).trim();
  return {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memory_gib: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    chromium: chromiumVersion,
    user_agent: browser.user_agent,
    node: process.version,
    rustc,
    onnxruntime_web: browser.transformersjs.onnxruntime_web,
    transformers_js: JSON.parse(readFileSync(join(ROOT, "bench/node_modules/@huggingface/transformers/package.json"), "utf8")).version,
    threads: 1,
  };
}

function wasmSizes() {
  const wasm = readFileSync(join(ROOT, "pkg/localrank_bg.wasm"));
  return { raw: wasm.length, gzip: gzipSync(wasm, { level: zlib.Z_BEST_COMPRESSION }).length };
}

const METRICS = [
  ["load_ms", "load to ready, ms (lower is better)", 0],
  ["titles_b1_per_s", "titles, batch 1, texts/s", 1],
  ["titles_b32_per_s", "titles, batch 32, texts/s", 1],
  ["descriptions_b1_per_s", "descriptions, batch 1, texts/s", 1],
  ["descriptions_b32_per_s", "descriptions, batch 32, texts/s", 1],
  ["rerank_cold_p50_ms", "re-rank cold p50, ms", 1],
  ["rerank_cold_p95_ms", "re-rank cold p95, ms", 1],
  ["rerank_warm_p50_ms", "re-rank warm p50, ms", 2],
  ["rerank_warm_p95_ms", "re-rank warm p95, ms", 2],
  ["rerank_store_warm_p50_ms", "re-rank warm + store encoder p50, ms", 2],
  ["rerank_store_warm_p95_ms", "re-rank warm + store encoder p95, ms", 2],
];

function table(results) {
  const wasm = Object.fromEntries(results.localrank_wasm.map((row) => [row.dtype, row]));
  const native = Object.fromEntries(results.localrank_native.map((row) => [row.dtype, row]));
  const dtypes = results.localrank_wasm.map((row) => row.dtype);
  const tjs = results.transformersjs;
  const format = (value, digits) => (value == null || Number.isNaN(value) ? "-" : value.toFixed(digits));
  const ratio = (a, b) => (a == null || b == null ? "-" : `${(a / b).toFixed(2)}x`);
  const header = ["metric", ...dtypes.map((d) => `wasm ${d}`), "transformers.js int8", "wasm q8_0 / tjs", ...dtypes.map((d) => `native ${d}`), "wasm / native (q8_0)"];
  const lines = [`| ${header.join(" | ")} |`, `|${header.map((_, i) => (i ? "---:" : "---")).join("|")}|`];
  for (const [key, label, digits] of METRICS) {
    const cells = [label, ...dtypes.map((d) => format(wasm[d]?.[key], digits)), format(tjs[key], digits), ratio(wasm.q8_0?.[key], tjs[key]), ...dtypes.map((d) => format(native[d]?.[key], digits)), ratio(wasm.q8_0?.[key], native.q8_0?.[key])];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const mb = (bytes) => (bytes / 1e6).toFixed(2);
  lines.push(`| model file, MB | ${dtypes.map((d) => mb(wasm[d].file_bytes)).join(" | ")} | ${mb(results.transformersjs_model_bytes)} | ${ratio(wasm.q8_0?.file_bytes, results.transformersjs_model_bytes)} | ${dtypes.map(() => "").join(" | ")} | |`);
  return lines.join("\n");
}

/// Grouped horizontal bars: texts/s per workload row, one bar per engine. Plain SVG, no library.
function throughputChart(results) {
  const engines = [
    ...results.localrank_wasm.map((row) => [`localrank wasm ${row.dtype}`, row]),
    ["transformers.js int8 (wasm)", results.transformersjs],
    ...results.localrank_native.filter((row) => row.dtype === "q8_0").map((row) => ["localrank native q8_0", row]),
  ];
  const colours = ["#1f77b4", "#aec7e8", "#6baed6", "#ff7f0e", "#2ca02c"];
  const rows = METRICS.filter(([key]) => key.endsWith("_per_s"));

  const barHeight = 14, groupGap = 18, left = 230, width = 760, plot = width - left - 80;
  const height = 40 + rows.length * (engines.length * barHeight + groupGap) + engines.length * 18 + 20;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`, `<text x="10" y="20" font-size="14">Embedding throughput, texts/s (wasm: one thread, ${results.environment.chromium.split(" built")[0]}; native: 2 cores)</text>`];
  let y = 40;
  for (const [key, label] of rows) {
    // Each workload on its own scale: descriptions run ~8x slower than titles.
    const max = Math.max(...engines.map(([, row]) => row[key] || 0));
    parts.push(`<text x="10" y="${y + (engines.length * barHeight) / 2 + 4}">${label.replace(", texts/s", "")}</text>`);
    engines.forEach(([, row], i) => {
      const value = row[key] || 0;
      const w = Math.max(1, (value / max) * plot);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight - 2}" fill="${colours[i % colours.length]}"/>`);
      parts.push(`<text x="${(left + w + 4).toFixed(1)}" y="${y + barHeight - 4}">${value.toFixed(1)}</text>`);
      y += barHeight;
    });
    y += groupGap;
  }
  engines.forEach(([name], i) => {
    parts.push(`<rect x="${left}" y="${y}" width="12" height="12" fill="${colours[i % colours.length]}"/><text x="${left + 18}" y="${y + 10}">${name}</text>`);
    y += 18;
  });
  parts.push("</svg>");
  return parts.join("\n");
}

/// A broken run must fail, even in the smoke pass: every key outside checks read is a positive
/// number, and the two engines embed alike (else the race compares different work). No timing
/// is judged here.
const REQUIRED_KEYS = [
  "embed_titles_b32_per_s",
  "embed_titles_b32_per_s_transformersjs",
  "rerank_warm_p50_ms",
  "rerank_cold_p50_ms",
  "wasm_gzip_bytes",
  "model_bytes",
  "peak_wasm_memory_bytes",
  "embed_titles_b32_per_s_pool",
  "embed_titles_b32_per_s_transformersjs_2threads",
  "rerank_new_page_p50_ms",
  "first_row_p50_ms",
  "peak_wasm_memory_per_worker_bytes",
];
const MIN_AGREEMENT = 0.99;

function checkShape(results) {
  for (const key of REQUIRED_KEYS) {
    const value = results[key];
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new Error(`results.${key} is ${value}, not a positive number`);
  }
  const agreement = results.agreement.localrank_q8_0_vs_transformersjs;
  if (!agreement || !(agreement.min >= MIN_AGREEMENT)) throw new Error(`localrank q8_0 and transformers.js disagree: min cosine ${agreement?.min} < ${MIN_AGREEMENT}`);
}

/// The pool's table (issue 12): one worker vs two on an ordinary page, against transformers.js
/// with 1 and 2 threads (2 on an isolated page), and the client's latencies.
function poolTable(results) {
  const pool = results.pool;
  if (!pool) return "";
  const f = (value, digits = 1) => (value == null ? "-" : value.toFixed(digits));
  const tjs1 = results.transformersjs;
  const rows = [
    ["titles, batch 32, texts/s", pool.one_worker.titles_b32_per_s, pool.two_workers.titles_b32_per_s, tjs1.titles_b32_per_s, pool.transformersjs_2threads.titles_b32_per_s],
    ["descriptions, batch 32, texts/s", pool.one_worker.descriptions_b32_per_s, pool.two_workers.descriptions_b32_per_s, tjs1.descriptions_b32_per_s, pool.transformersjs_2threads.descriptions_b32_per_s],
  ];
  const lines = [
    "| metric | localrank 1 worker | localrank 2 workers | transformers.js 1 thread | transformers.js 2 threads | 2 workers / 1 | 2 workers / tjs 2 threads |",
    "|---|---:|---:|---:|---:|---:|---:|",
    ...rows.map(([label, one, two, t1, t2]) => `| ${label} | ${f(one)} | ${f(two)} | ${f(t1)} | ${f(t2)} | ${f(two / one, 2)}x | ${f(two / t2, 2)}x |`),
    "",
    `| client latency (${pool.latency.workers} workers, ordinary page) | p50, ms | p95, ms |`,
    "|---|---:|---:|",
    `| re-rank, new page (history embedded, 100 new candidates) | ${f(pool.latency.rerank_new_page_p50_ms)} | ${f(pool.latency.rerank_new_page_p95_ms)} |`,
    `| first personalised row, return visit (start, 20-event history, the 24 home products seen before; ranked from saved vectors before the model loads) | ${f(pool.latency.first_row_p50_ms)} | ${f(pool.latency.first_row_p95_ms)} |`,
    `| the same, waiting for the model first (\`waitForModel: true\`) | ${f(pool.latency.first_row_waiting_for_model_p50_ms)} | ${f(pool.latency.first_row_waiting_for_model_p95_ms)} |`,
    `| first personalised row, 24 products never seen (all embedded) | ${f(pool.latency.first_row_new_products_p50_ms)} | ${f(pool.latency.first_row_new_products_p95_ms)} |`,
    ...firstRowSteps(pool.latency.first_row_steps_p50_ms, f),
    "",
    `peak wasm memory per worker (the main worker): ${f(results.peak_wasm_memory_per_worker_bytes / 2 ** 20)} MiB`,
  ];
  return lines.join("\n");
}

/// Where the return visit's first row goes: when each start step finished (median ms after
/// create(); the steps overlap), then the ranking itself.
function firstRowSteps(steps, f) {
  if (!steps) return [];
  const order = Object.entries(steps).filter(([step]) => step !== "rerank" && step !== "total").sort(([, a], [, b]) => a - b);
  return [
    "",
    "| first row, return visit: step finished (median ms after create()) | ms |",
    "|---|---:|",
    ...order.map(([step, ms]) => `| ${step} | ${f(ms)} |`),
    `| the ranking after create() resolved | ${f(steps.rerank)} |`,
    `| the whole first row | ${f(steps.total)} |`,
  ];
}

function writeReport(results) {
  const text = [table(results), poolTable(results)].filter(Boolean).join("\n\n");
  writeFileSync(join(OUT, "table.md"), `${text}\n`);
  writeFileSync(join(OUT, "throughput.svg"), `${throughputChart(results)}\n`);
  return text;
}

async function main() {
  if (process.argv.includes("--redraw")) {
    writeReport(JSON.parse(readFileSync(join(OUT, "results.json"), "utf8")));
    return say(`redrew ${relative(ROOT, OUT)}/table.md, throughput.svg`);
  }
  mkdirSync(WORK, { recursive: true });
  mkdirSync(OUT, { recursive: true });
  localrank(["bench", "--write-workload", join(WORK, "workload.json")]);
  if (process.argv.includes("--pool-only")) {
    const server = await startServer();
    try {
      const pool = await runBrowser("pool", { ordinary: true });
      return say(`pool only (not written): ${JSON.stringify(pool, null, 1)}`);
    } finally {
      server.kill();
    }
  }
  const native = runNative();
  const server = await startServer();
  let browser, pool, tjs2;
  try {
    browser = await runBrowser();
    pool = await runBrowser("pool", { ordinary: true });
    tjs2 = await runBrowser("tjs2");
  } finally {
    server.kill();
  }
  if (pool.cross_origin_isolated) throw new Error("the pool's page was cross-origin isolated: it must be an ordinary page");
  if (!tjs2.cross_origin_isolated) throw new Error("transformers.js's 2-thread page was not cross-origin isolated: it would run on one thread");
  const [oneWorker, twoWorkers] = pool.pool;
  const sizes = wasmSizes();
  const q8 = browser.localrank.find((row) => row.dtype === "q8_0");
  const results = {
    // The keys outside checks read (issue 6): localrank's wasm build on the q8_0 model.
    embed_titles_b32_per_s: q8.titles_b32_per_s,
    embed_titles_b32_per_s_transformersjs: browser.transformersjs.titles_b32_per_s,
    rerank_warm_p50_ms: q8.rerank_warm_p50_ms,
    rerank_cold_p50_ms: q8.rerank_cold_p50_ms,
    rerank_store_warm_p50_ms: q8.rerank_store_warm_p50_ms,
    wasm_gzip_bytes: sizes.gzip,
    model_bytes: q8.file_bytes,
    peak_wasm_memory_bytes: browser.peak_wasm_memory_bytes,
    // Issue 12: the client with its worker pool on an ordinary page, transformers.js with 2
    // threads on an isolated one.
    embed_titles_b32_per_s_pool: twoWorkers.titles_b32_per_s,
    embed_titles_b32_per_s_transformersjs_2threads: tjs2.titles_b32_per_s,
    rerank_new_page_p50_ms: pool.latency.rerank_new_page_p50_ms,
    first_row_p50_ms: pool.latency.first_row_p50_ms,
    peak_wasm_memory_per_worker_bytes: Math.max(...pool.pool.map((row) => row.main_worker_wasm_memory_bytes)),
    pool: {
      one_worker: oneWorker,
      two_workers: twoWorkers,
      latency: pool.latency,
      transformersjs_2threads: tjs2,
      two_workers_over_one_titles: twoWorkers.titles_b32_per_s / oneWorker.titles_b32_per_s,
      two_workers_over_transformersjs_2threads_titles: twoWorkers.titles_b32_per_s / tjs2.titles_b32_per_s,
      two_workers_over_transformersjs_2threads_descriptions: twoWorkers.descriptions_b32_per_s / tjs2.descriptions_b32_per_s,
    },
    // Everything else measured in the same run.
    smoke: SMOKE,
    wasm_raw_bytes: sizes.raw,
    transformersjs_model_bytes: statSync(join(ROOT, MOUNTS["/bench/onnx-models"], "all-MiniLM-L6-v2/onnx/model_quantized.onnx")).size,
    environment: environment(browser),
    agreement: browser.agreement,
    localrank_wasm: browser.localrank,
    transformersjs: browser.transformersjs,
    localrank_native: native,
    measured_at: new Date().toISOString(),
  };
  checkShape(results);
  writeFileSync(join(OUT, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
  const text = writeReport(results);
  console.log(text);
  console.log(`\n.wasm ${sizes.raw} B raw, ${sizes.gzip} B gzip -9; peak wasm memory ${(results.peak_wasm_memory_bytes / 2 ** 20).toFixed(1)} MiB`);
  console.log(`agreement (cosine, ${Object.values(results.agreement)[0]?.texts} texts): ${Object.entries(results.agreement).map(([k, v]) => `${k} min ${v.min.toFixed(5)} mean ${v.mean.toFixed(5)}`).join("; ")}`);
  say(`wrote ${relative(ROOT, OUT)}/results.json, table.md, throughput.svg`);
}

main().catch((error) => {
  console.error(`bench: ${error.stack || error}`);
  process.exit(1);
});
