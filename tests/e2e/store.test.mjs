// The demo storefront in headless Chromium, driven like a shopper: personalisation on the
// device, what the network sees, and a tampered model. Every test fails on an unhandled error.
// Needs: target/debug/localrank (or LOCALRANK_BIN), pkg/ (wasm-pack), models/, data/ml-1m (scripts/test builds them).
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  ARTIFACTS, BASE, waitForSaved, useStoreServer, shopper, loadStore, recommendedIds, recommendedCards, recommendedRow, serverTop, openCategory, openProduct, dataDialogLines, rowSettled, readSavedHistory,
} from "./harness.mjs";

useStoreServer();

/** Opens the first `count` products of a category, as a shopper would. Returns their titles. */
async function viewCategory(page, category, count) {
  await openCategory(page, category);
  const titles = [];
  for (let i = 0; i < count; i++) {
    titles.push(await page.locator("#grid .card").nth(i).locator(".title").textContent());
    await openProduct(page, i);
  }
  // Each view re-ranks; wait until the row names one of these products as its reason.
  await page.waitForFunction(() => [...document.querySelectorAll("#recommended .reason")].some((r) => r.textContent.startsWith("Because you viewed")), null, { timeout: 60_000 });
  return titles;
}

test("a shopper's views re-rank the store on the device, survive a reload, and erase back to the server order", async () => {
  const { page, requests, close } = await shopper();
  await loadStore(page);
  await recommendedRow(page);
  const manifest = await (await fetch(`${BASE}/models/manifest.json`)).json();
  const modelBytes = manifest.files.find((f) => f.dtype === "q8_0").bytes;
  assert.equal(Number(await page.getAttribute("body", "data-model-bytes")), modelBytes, "the progress bar counted every byte of the model");
  const serverOrder = await serverTop(8);
  await rowSettled(page);
  await page.waitForSelector("body[data-embedded-at-start]");
  const embeddedFirst = Number(await page.getAttribute("body", "data-embedded-at-start"));
  assert.ok(embeddedFirst >= 50, `a first visit embeds the home list: ${embeddedFirst}`);
  assert.deepEqual(await recommendedIds(page), serverOrder, "no history: the server's order");
  // The page's first row (LocalRank.serverOrder, in JS, before the model answers) is the order
  // the core gives a shopper without history.
  const home = await (await fetch(`${BASE}/api/candidates?slot=home&n=60`)).json();
  const jsOrder = await page.evaluate(async (list) => (await import("/pkg/index.js")).LocalRank.serverOrder(list, { limit: 8 }).map((r) => r.id), home);
  assert.deepEqual(jsOrder, serverOrder, "LocalRank.serverOrder matches the core's order");
  const before = (await recommendedCards(page)).filter((c) => c.meta.includes("Horror")).length;

  const viewed = await viewCategory(page, "Horror", 3);
  await rowSettled(page);
  const after = await recommendedCards(page);
  const horror = after.filter((c) => c.meta.includes("Horror"));
  console.log(`viewed ${JSON.stringify(viewed)}; Horror in the top 8: ${before} -> ${horror.length}`);
  assert.ok(horror.length >= before + 2, `same-genre items moved up: ${JSON.stringify(after)}`);
  assert.ok(horror.some((c) => viewed.some((title) => c.reason === `Because you viewed ${title}`)), "a matching reason names a viewed product");
  await page.screenshot({ path: join(ARTIFACTS, "store.png"), fullPage: true });
  await waitForSaved(page, 3);
  // The viewed products' vectors are kept with the history, in the background.
  const storedVectors = () => page.evaluate(async () => (await import("/pkg/storage.js")).storedVectorCount());
  for (let attempt = 0; attempt < 100 && (await storedVectors()) < 3; attempt++) await page.waitForTimeout(50);
  assert.equal(await storedVectors(), 3, "one vector per viewed product on disk");

  // Second visit: history from IndexedDB, model from the Cache API (no model download), and the
  // history's vectors from IndexedDB (not embedded again).
  const modelFetches = () => requests.filter((r) => r.url.endsWith(".gguf")).length;
  const fetchedBefore = modelFetches();
  await loadStore(page);
  assert.equal(modelFetches(), fetchedBefore, "the second visit loads the model from the cache");
  assert.equal(await page.getAttribute("body", "data-restored-vectors"), "3", "the history's vectors were read back, not embedded again");
  await page.waitForSelector("body[data-embedded-at-start]");
  assert.equal(await page.getAttribute("body", "data-embedded-at-start"), "0", "the home list's vectors were saved on the first visit: nothing embedded");
  assert.equal((await dataDialogLines(page)).length, 3);
  // The row leans toward the page on show: back on the Horror page, the same order as before.
  await openCategory(page, "Horror");
  await page.waitForFunction((ids) => [...document.querySelectorAll("#recommended .card")].map((c) => c.dataset.id).join() === ids.join(), after.map((c) => c.id), { timeout: 60_000 });

  // A product vector no ranking makes again: the home row, re-ranked after the erase, saves its
  // own products' vectors at once, so a count would race with it.
  const marker = page.evaluate.bind(page, async (save) => {
    const storage = await import("/pkg/storage.js");
    if (save) await storage.saveProductVectors([["e2e:marker", new Float32Array(384)]], 2000);
    return (await storage.loadProductVectors(["e2e:marker"])).size;
  });
  assert.equal(await marker(true), 1);
  await page.click("#open-data");
  await page.click("#erase");
  await page.waitForFunction(() => document.querySelector("#events").textContent.includes("Nothing is stored."));
  assert.equal(await storedVectors(), 0, "erasing the history erases its vectors");
  assert.equal(await marker(false), 0, "and the product vectors");
  await page.click("#close-data");
  await page.waitForFunction((ids) => [...document.querySelectorAll("#recommended .card")].map((c) => c.dataset.id).join() === ids.join(), serverOrder);
  await close();
});

test("a shopper's unhappy review pushes look-alikes down on the device, and forgetting it brings them back", async () => {
  const { page, requests, close } = await shopper();
  await loadStore(page);
  await recommendedRow(page);
  await viewCategory(page, "Horror", 3);
  await rowSettled(page);
  const horrorCount = () => page.$$eval("#recommended .card .meta", (metas) => metas.filter((m) => m.textContent.includes("Horror")).length);
  const before = await recommendedIds(page);
  const horrorBefore = await horrorCount();
  const requestsBefore = requests.length;

  // Review the first viewed film: one star, in the shopper's own words.
  const card = page.locator("#grid .card").nth(0);
  const reviewedTitle = await card.locator(".title").textContent();
  await card.click();
  await page.fill("#review-text", "Boring and not scary at all, I switched it off halfway.");
  await page.selectOption("#review-rating", "1");
  await page.click("#review button[type=submit]");
  await rowSettled(page);
  const horrorAfter = await horrorCount();
  console.log(`1-star review of ${reviewedTitle}: Horror in the top 8 ${horrorBefore} -> ${horrorAfter}; ${JSON.stringify(before)} -> ${JSON.stringify(await recommendedIds(page))}`);
  assert.ok(horrorAfter < horrorBefore, "its look-alikes went down");
  const lines = await dataDialogLines(page);
  const reviewLine = lines.find((line) => line.includes("review") && line.includes("Boring and not scary"));
  assert.ok(reviewLine && reviewLine.includes("(1 star)"), `the data dialog lists the review: ${JSON.stringify(lines)}`);
  assert.deepEqual(requests.slice(requestsBefore).filter((r) => new URL(r.url).pathname.startsWith("/api/")).map((r) => r.url), [], "writing a review sent nothing");
  await waitForSaved(page, 5);

  // Erase it: "Forget" on the review's line removes what the device holds about that film.
  await page.click("#open-data");
  await page.locator("#events li", { hasText: "Boring and not scary" }).locator("button").click();
  await page.waitForFunction(() => !document.querySelector("#events").textContent.includes("Boring and not scary"));
  await page.click("#close-data");
  await rowSettled(page);
  let saved = await readSavedHistory(page);
  for (let attempt = 0; attempt < 100 && saved.events.some((e) => e.kind === "review"); attempt++) {
    await page.waitForTimeout(50);
    saved = await readSavedHistory(page);
  }
  assert.deepEqual(saved.events.map((e) => e.kind), ["view", "view"], "the review and that film's views are gone from the device");
  const storedVectors = () => page.evaluate(async () => (await import("/pkg/storage.js")).storedVectorCount());
  for (let attempt = 0; attempt < 100 && (await storedVectors()) !== 2; attempt++) await page.waitForTimeout(50);
  assert.equal(await storedVectors(), 2, "the forgotten film's vectors (its text, the review's words) went with it");
  const afterForget = await horrorCount();
  console.log(`after forgetting it: Horror in the top 8 ${afterForget}`);
  assert.ok(afterForget > horrorAfter, "without the review, its look-alikes come back up");
  await close();
});

/** A request as the server sees it, without its timing. */
const describe = (r) => `${r.method} ${new URL(r.url).pathname}${new URL(r.url).search}`;

test("no request, nor how many or when, depends on the shopper's history; nothing leaves the origin", async () => {
  // Two shoppers take the same navigation (load, open the Horror page, load again). One only
  // looks; the other opens products, adds one to the cart and dismisses another in between.
  const sessions = {};
  for (const busy of [false, true]) {
    const name = busy ? "busy" : "quiet";
    const { context, page, requests, close } = await shopper();
    await loadStore(page);
    await recommendedRow(page);
    await openCategory(page, "Horror");
    const viewedIds = [];
    const beforeActivity = requests.length;
    if (busy) {
      for (let i = 0; i < 4; i++) viewedIds.push(await openProduct(page, i));
      viewedIds.push(await openProduct(page, 4, "#add-to-cart"));
      viewedIds.push(await openProduct(page, 5, "#not-interested"));
      await page.waitForFunction(() => [...document.querySelectorAll("#recommended .reason")].some((r) => r.textContent.startsWith("Because you viewed")), null, { timeout: 60_000 });
      assert.equal((await dataDialogLines(page)).length, 8, "4 views, a view and a cart, a view and a dismissal");
      await waitForSaved(page, 8);
    } else {
      await page.waitForTimeout(2_000);
    }
    const duringActivity = requests.slice(beforeActivity);
    assert.deepEqual(duringActivity.map(describe), [], `${name}: what the shopper did sent no request`);
    await loadStore(page);
    await recommendedRow(page);
    for (const request of requests) {
      assert.ok(request.url.startsWith(BASE), `off-origin request: ${request.url}`);
      for (const id of viewedIds) {
        assert.ok(!new URL(request.url).search.includes(`=${id}`) && !(request.body || "").includes(id), `request carries viewed item ${id}: ${request.url}`);
      }
    }
    assert.deepEqual(await context.cookies(), [], "no cookie");
    sessions[name] = {
      api: requests.filter((r) => new URL(r.url).pathname.startsWith("/api/")).map(describe),
      all: requests.map(describe).sort(),
    };
    console.log(`${name} shopper: ${requests.length} requests; API requests in order: ${JSON.stringify(sessions[name].api)}`);
    await close();
  }
  assert.ok(sessions.quiet.api.length >= 4, "both page loads and the category page asked the server");
  assert.deepEqual(sessions.busy.api, sessions.quiet.api, "the same API requests, in the same order and number");
  assert.deepEqual(sessions.busy.all, sessions.quiet.all, "the same requests in all, the same number of each");
});

test("a corrupted model in the cache is refused and fetched again", async () => {
  const { page, requests, close } = await shopper();
  await loadStore(page);
  const corrupted = await page.evaluate(async () => {
    const cache = await caches.open("localrank-models");
    const keys = await cache.keys();
    for (const key of keys) await cache.put(key, new Response(new Uint8Array([71, 71, 85, 70, 1, 2, 3])));
    return keys.length;
  });
  assert.equal(corrupted, 1);
  const start = requests.length;
  await loadStore(page);
  assert.match(await page.textContent("#warning"), /cached model file is corrupt/);
  assert.equal(requests.slice(start).filter((r) => r.url.endsWith(".gguf")).length, 1, "fetched again");
  await close();
});
