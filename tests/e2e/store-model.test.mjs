// The store's trained sequence model in the demo store: the page fetches the encoder (the same
// file for every shopper, checksummed and cached), product records carry their vectors, a
// history moves the order through the encoder, and a bad encoder leaves text-only ranking.
// Needs a `localrank train` folder: LOCALRANK_STORE_MODEL, or target/e2e-store-model (scripts/test
// trains one epoch on the first 200,000 events of MovieLens-1M and passes its folder).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { BASE, ROOT, useStoreServer, shopper, loadStore, recommendedIds, recommendedCards, recommendedRow, serverTop, openCategory, openProduct } from "./harness.mjs";

const STORE_MODEL = process.env.LOCALRANK_STORE_MODEL || join(ROOT, "target/e2e-store-model");
useStoreServer({ storeModel: STORE_MODEL });

test("the store's encoder is fetched once, product records carry vectors, and views move the order through it", async () => {
  const summary = await (await fetch(`${BASE}/store/train.json`)).json();
  const list = await (await fetch(`${BASE}/api/candidates?slot=home&n=5`)).json();
  assert.ok(list.every((c) => Array.isArray(c.vector) && c.vector.length === summary.encoder.dim), "every product carries its store vector");

  const { page, requests, close } = await shopper();
  await loadStore(page);
  await recommendedRow(page);
  assert.equal(await page.getAttribute("body", "data-encoder"), "store", await page.textContent("#status"));
  const encoderFetches = requests.filter((r) => new URL(r.url).pathname === "/store/encoder.gguf");
  assert.equal(encoderFetches.length, 1, "the encoder is downloaded once");
  const serverOrder = await serverTop(8);
  assert.deepEqual(await recommendedIds(page), serverOrder, "no history: the server's order");

  await openCategory(page, "Horror");
  const before = requests.length;
  const viewed = [];
  for (let i = 0; i < 3; i++) viewed.push(await openProduct(page, i));
  await page.waitForFunction((ids) => [...document.querySelectorAll("#recommended .card")].map((c) => c.dataset.id).join() !== ids.join(), serverOrder, { timeout: 60_000 });
  const after = await recommendedCards(page);
  console.log(`store encoder: viewed ${viewed.join(",")}; top 8 now ${after.map((c) => `${c.id} (${c.reason})`).join("; ")}`);
  assert.ok(after.some((c) => c.reason.startsWith("Because you viewed")), "reasons stay");
  assert.equal(requests.length, before, "views only re-rank on the device: no request");

  // A second visit takes the encoder from the cache.
  await loadStore(page);
  assert.equal(requests.filter((r) => new URL(r.url).pathname === "/store/encoder.gguf").length, 1, "cached");
  await close();
});

test("an encoder that cannot be used is a warning, and ranking stays text-only", async () => {
  const { page, warnings, close } = await shopper();
  // A file that matches its published checksum but is not an encoder (a broken publish).
  const garbage = Buffer.from("this is not an encoder file");
  const sha256 = createHash("sha256").update(garbage).digest("hex");
  await page.route("**/store/train.json", (route) =>
    route.fulfill({ contentType: "application/json", body: JSON.stringify({ encoder_sha256: sha256, encoder_bytes: garbage.length, text_model_id: "x" }) }));
  await page.route("**/store/encoder.gguf", (route) => route.fulfill({ contentType: "application/octet-stream", body: garbage }));
  await loadStore(page);
  await recommendedRow(page);
  assert.equal(await page.getAttribute("body", "data-encoder"), "none");
  assert.ok(warnings.some((w) => w.includes("ranking by product text only") && w.includes("not a GGUF")), JSON.stringify(warnings));
  await openCategory(page, "Horror");
  for (let i = 0; i < 3; i++) await openProduct(page, i);
  await page.waitForFunction(() => [...document.querySelectorAll("#recommended .reason")].some((r) => r.textContent.startsWith("Because you viewed")), null, { timeout: 60_000 });
  await close();
});

test("on a return visit the encoder is checked and used before the model has loaded", async () => {
  const { page, close } = await shopper({ expectedFailures: [/Failed to load resource.*503/] });
  try {
    await page.route(`${BASE}/blank-page`, (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>a page</title>" }));
    await page.goto(`${BASE}/blank-page`);
    const candidates = await (await fetch(`${BASE}/api/candidates?slot=home&n=12`)).json();
    const setup = { modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf", encoderUrl: "/store/encoder.gguf", candidates };
    const earlier = await page.evaluate(async ({ modelUrl, encoderUrl, candidates }) => {
      const { LocalRank } = await import("/pkg/index.js");
      const rec = await LocalRank.create({ modelUrl, encoderUrl, workers: 1 }); // a new profile: nothing stored
      const browse = async () => {
        for (const item of candidates.slice(6, 9)) await rec.record({ kind: "view", at: Date.now() - 60_000, item });
        const ranked = await rec.rerank(candidates);
        await rec.stats(); // every vector (the probe sentence's too) is on disk
        return ranked;
      };
      await browse();
      // An erase takes the products' vectors with it, but not the probe sentence's; what is
      // ranked after it is saved again.
      await rec.clear();
      const ranked = await browse();
      await rec.close();
      await caches.open("localrank-models").then(async (cache) => {
        for (const request of await cache.keys()) if (request.url.includes("MiniLM")) await cache.delete(request);
      });
      return { ranked, encoder: rec.info.encoder };
    }, setup);
    assert.ok(earlier.encoder, "the encoder is used");
    // The language model cannot arrive on this visit; the encoder (cached) can.
    await page.route("**/all-MiniLM-L6-v2.q8_0.gguf", (route) => route.fulfill({ status: 503, body: "unavailable" }));
    const visit = await page.evaluate(async ({ modelUrl, encoderUrl, candidates }) => {
      const { LocalRank } = await import("/pkg/index.js");
      const rec = await LocalRank.create({ modelUrl, encoderUrl, workers: 1, waitForModel: false, onWarning: () => {} });
      const ranked = await rec.rerank(candidates);
      const modelReady = await rec.modelReady.then(() => null, (e) => e.name);
      await rec.close();
      return { ranked, encoder: rec.info.encoder, modelLoaded: rec.info.modelLoaded, modelReady };
    }, setup);
    assert.equal(visit.modelLoaded, false);
    assert.deepEqual(visit.encoder, earlier.encoder, "checked with the saved vector of its probe sentence");
    // The same order and reasons; scores to rounding (the events aged a few seconds since).
    assert.deepEqual(withoutScores(visit.ranked), withoutScores(earlier.ranked), "the same ranking as with the model");
    visit.ranked.forEach((r, i) => assert.ok(Math.abs(r.score - earlier.ranked[i].score) < 1e-6, `${r.id}: ${r.score} vs ${earlier.ranked[i].score}`));
    assert.equal(visit.modelReady, "ModelFetch");
  } finally {
    await close();
  }
});

/** A ranking's ids and reasons. */
function withoutScores(ranked) {
  return ranked.map(({ id, reason }) => ({ id, reason }));
}
