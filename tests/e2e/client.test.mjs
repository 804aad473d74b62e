// The client's contract with a page (issue 13 part 2), on a same-origin page without the store
// app: failures reach the page as LocalRankError with a stable name (and, for a bad record, the
// field), from the worker, the download and the wasm core alike; progress names the file and the
// phase, in order, for a first load and for a load from the cache.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { BASE, useStoreServer, shopper } from "./harness.mjs";

useStoreServer();

const MODEL_URL = "/models/all-MiniLM-L6-v2.q8_0.gguf";

async function blankPage(page) {
  await page.route(`${BASE}/blank-page`, (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>a page</title>" }));
  await page.goto(`${BASE}/blank-page`);
}

test("errors reach the page as LocalRankError with a stable name and the field", async () => {
  const { page, close } = await shopper({ expectedFailures: [/404/] });
  try {
    await blankPage(page);
    const outcome = await page.evaluate(async (modelUrl) => {
      const { LocalRank, LocalRankError } = await import("/pkg/index.js");
      const named = (promise) => promise.then(
        () => null,
        (e) => ({ typed: e instanceof LocalRankError, name: e.name, field: e.field ?? null, message: e.message }),
      );
      const missingModel = await named(LocalRank.create({ modelUrl: "/models/no-such-model.gguf" }));
      const badWorkers = await named(LocalRank.create({ modelUrl, workers: 0 }));
      const rec = await LocalRank.create({ modelUrl, workers: 1 });
      const badOptions = await named(rec.rerank([{ id: "a", title: "A" }], { serverWeight: 2 }));
      const badEvent = await named(rec.record({ kind: "view", at: Date.now(), item: { id: "a" } }));
      const badText = await named(rec.embed(["fine", 7]));
      await rec.close();
      const closed = await named(rec.history());
      return { missingModel, badWorkers, badOptions, badEvent, badText, closed };
    }, MODEL_URL);
    for (const [what, error] of Object.entries(outcome)) assert.ok(error && error.typed, `${what}: ${JSON.stringify(error)}`);
    assert.equal(outcome.missingModel.name, "ModelFetch", outcome.missingModel.message);
    assert.match(outcome.missingModel.message, /no entry for no-such-model\.gguf/);
    assert.deepEqual([outcome.badWorkers.name, outcome.badWorkers.field], ["InvalidRecord", "workers"]);
    assert.deepEqual([outcome.badOptions.name, outcome.badOptions.field], ["InvalidRecord", "options.serverWeight"], outcome.badOptions.message);
    assert.deepEqual([outcome.badEvent.name, outcome.badEvent.field], ["InvalidRecord", "event.item"], outcome.badEvent.message);
    assert.deepEqual([outcome.badText.name, outcome.badText.field], ["InvalidRecord", "texts[1]"], outcome.badText.message);
    assert.equal(outcome.closed.name, "Terminated");
  } finally {
    await close();
  }
});

test("progress names the file and the phase, in order: fetch on a first load, cache on the next", async () => {
  const { page, close } = await shopper();
  try {
    await blankPage(page);
    const phases = await page.evaluate(async (modelUrl) => {
      const { LocalRank } = await import("/pkg/index.js");
      const load = async () => {
        const seen = [];
        const rec = await LocalRank.create({ modelUrl, workers: 1, onProgress: ({ file, phase }) => seen.at(-1) !== `${file}:${phase}` && seen.push(`${file}:${phase}`) });
        await rec.close();
        return seen;
      };
      return { first: await load(), second: await load() };
    }, MODEL_URL);
    assert.deepEqual(phases.first, ["model:fetch", "model:verify", "model:compile", "model:ready"]);
    assert.deepEqual(phases.second, ["model:cache", "model:verify", "model:compile", "model:ready"]);
  } finally {
    await close();
  }
});

test("the wasm is compiled on the page and handed to the workers; when the page cannot, the worker compiles it", async () => {
  const { page, close } = await shopper({ expectedFailures: [/WebAssembly|wasm|MIME/i] });
  try {
    await blankPage(page);
    const wasmRequests = [];
    page.on("request", (request) => request.url().endsWith(".wasm") && wasmRequests.push(request.url()));
    const start = (options) =>
      page.evaluate(async ({ modelUrl, options }) => {
        const { LocalRank } = await import("/pkg/index.js");
        const rec = await LocalRank.create({ modelUrl, workers: 2, ...options });
        const vectors = await rec.embed(["Two-person backpacking tent", "Electric kettle", "Ceramic coffee mug"]);
        const helpers = await rec.poolReady();
        const { startup } = rec.info;
        await rec.close();
        return { vectors: [...vectors], helpers, startup };
      }, { modelUrl: MODEL_URL, options });
    const compiledHere = await start({});
    assert.equal(wasmRequests.length, 1, `fetched once, by the page; the workers got the compiled module: ${wasmRequests}`);
    assert.equal(compiledHere.helpers, 2, "the helper started from the page's module");
    assert.ok(compiledHere.startup.wasm > 0 && compiledHere.startup.ready >= compiledHere.startup.wasm, JSON.stringify(compiledHere.startup));
    // The page's module ready only after the model is read (a slow network, a busy machine):
    // the helpers still wait for it rather than fetch the file themselves.
    wasmRequests.length = 0;
    await page.route("**/localrank_bg.wasm", async (route) => {
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await route.continue();
    });
    const slowWasm = await start({});
    await page.unroute("**/localrank_bg.wasm");
    assert.equal(wasmRequests.length, 1, `a slow wasm is still fetched once, by the page: ${wasmRequests}`);
    assert.ok(slowWasm.startup.modelRead < slowWasm.startup.wasm, `the model was read first: ${JSON.stringify(slowWasm.startup)}`);
    assert.equal(slowWasm.helpers, 2);
    wasmRequests.length = 0;
    const notHere = await start({ compileOnPage: false });
    assert.equal(wasmRequests.length, 2, `compileOnPage: false: each of the 2 workers fetches and compiles it: ${wasmRequests}`);
    assert.deepEqual(notHere.vectors, compiledHere.vectors, "the same vectors");
    // A server that sends the wasm as another type: streaming compilation refuses it on the page,
    // and the worker compiles it from its bytes.
    const wasm = readFileSync(new URL("../../pkg/localrank_bg.wasm", import.meta.url));
    await page.route("**/localrank_bg.wasm", (route) => route.fulfill({ status: 200, contentType: "application/octet-stream", body: wasm }));
    const fellBack = await start({});
    assert.deepEqual(fellBack.vectors, compiledHere.vectors, "the same vectors after the fallback");
    assert.equal(fellBack.helpers, 2);
  } finally {
    await close();
  }
});

test("waitForModel: false ranks a return visit from the saved vectors, before and without the model", async () => {
  const { page, close } = await shopper({ expectedFailures: [/gguf/, /Failed to load resource/] });
  try {
    await blankPage(page);
    const candidates = [
      { id: "tent", title: "Two-person backpacking tent", categories: ["Camping"], score: 3 },
      { id: "kettle", title: "Electric kettle, 1.7 litres", categories: ["Kitchen"], score: 5 },
      { id: "stove", title: "Compact camping stove", categories: ["Camping"], score: 1 },
      { id: "mug", title: "Ceramic coffee mug", categories: ["Kitchen"], score: 4 },
    ];
    // The earlier visit: the model loads as usual; ranking saves the products' vectors.
    const earlier = await page.evaluate(async ({ modelUrl, candidates }) => {
      const { LocalRank } = await import("/pkg/index.js");
      const rec = await LocalRank.create({ modelUrl, workers: 1 });
      await rec.clear();
      await rec.record({ kind: "view", at: Date.now() - 60_000, item: { id: "bag", title: "Down sleeping bag", categories: ["Camping"] } });
      const ranked = await rec.rerank(candidates);
      await rec.stats(); // the vectors are on disk
      await rec.close();
      await caches.delete("localrank-models"); // the next visit must download the model again...
      return ranked;
    }, { modelUrl: MODEL_URL, candidates });
    assert.equal(earlier[0].id, "tent", JSON.stringify(earlier));
    // ...and cannot: the model file is unavailable on this visit.
    await page.route("**/*.gguf", (route) => route.fulfill({ status: 503, body: "unavailable" }));
    const visit = await page.evaluate(async ({ modelUrl, candidates }) => {
      const { LocalRank } = await import("/pkg/index.js");
      const named = (promise) => promise.then(() => null, (e) => e.name);
      const rec = await LocalRank.create({ modelUrl, workers: 1, waitForModel: false, onWarning: () => {} });
      const ranked = await rec.rerank(candidates);
      const modelReady = await named(rec.modelReady);
      const unseen = await named(rec.rerank([{ id: "lamp", title: "Headlamp, 300 lumens", categories: ["Camping"] }]));
      const events = (await rec.history()).length;
      await rec.close();
      return { modelLoaded: rec.info.modelLoaded, ranked, modelReady, unseen, events };
    }, { modelUrl: MODEL_URL, candidates });
    assert.equal(visit.modelLoaded, false);
    // The same order and reasons; scores to rounding (the event aged a few seconds since).
    assert.deepEqual(withoutScores(visit.ranked), withoutScores(earlier), "the same ranking, from the saved vectors alone");
    visit.ranked.forEach((r, i) => assert.ok(Math.abs(r.score - earlier[i].score) < 1e-6, `${r.id}: ${r.score} vs ${earlier[i].score}`));
    assert.equal(visit.modelReady, "ModelFetch");
    assert.equal(visit.unseen, "ModelFetch", "a product never embedded waits for the model, and its failure");
    assert.equal(visit.events, 1, "the history is intact");
  } finally {
    await close();
  }
});

test("an erase during a background save leaves nothing of the erased history on disk", async () => {
  const { page, close } = await shopper();
  try {
    await blankPage(page);
    const stored = await page.evaluate(async (modelUrl) => {
      const { LocalRank } = await import("/pkg/index.js");
      const storage = await import("/pkg/storage.js");
      const rec = await LocalRank.create({ modelUrl, workers: 2 });
      await rec.clear();
      // A long description takes the helper tens of milliseconds to embed: record() resolves
      // once the event is saved, and the erase arrives while its vector is being computed.
      const description = "A waxed canvas rucksack with leather straps and a padded laptop sleeve. ".repeat(30);
      await rec.record({ kind: "view", at: Date.now(), item: { id: "rucksack", title: "Canvas rucksack", description } });
      await rec.clear();
      const ranked = rec.rerank([{ id: "tent", title: "Two-person tent", description: description.replace(/rucksack/g, "tent"), score: 1 }]);
      await rec.clear();
      await ranked;
      await rec.stats(); // every background save has finished
      const counts = { history: await storage.storedVectorCount(), products: await storage.storedProductVectorCount(), events: (await rec.history()).length };
      await rec.close();
      return counts;
    }, MODEL_URL);
    assert.deepEqual(stored, { history: 0, products: 0, events: 0 }, "the history's and the products' vectors, seen before the erase, stay erased");
  } finally {
    await close();
  }
});

/** A ranking's ids and reasons. */
function withoutScores(ranked) {
  return ranked.map(({ id, reason }) => ({ id, reason }));
}
