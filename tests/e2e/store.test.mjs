// The demo storefront in headless Chromium (Debian's, through playwright-core: no browser
// download), driven like a shopper. Every test fails on any console error on the page.
// Needs: target/debug/localrank (or LOCALRANK_BIN), pkg/ (wasm-pack), models/, data/ml-1m (scripts/test builds them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PORT = 18000 + (process.pid % 1000);
const BASE = `http://127.0.0.1:${PORT}`;
const ARTIFACTS = join(ROOT, "target", "e2e");
const READY_TIMEOUT = 180_000;
let server;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  const binary = process.env.LOCALRANK_BIN || join(ROOT, "target/debug/localrank");
  server = spawn(binary, ["serve", "--port", String(PORT)], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
  await new Promise((resolve, reject) => {
    server.stderr.on("data", (chunk) => String(chunk).includes("localrank store:") && resolve());
    server.on("exit", (code) => reject(new Error(`localrank serve exited with ${code}`)));
  });
});

after(() => server && server.kill());

/** A fresh browser profile, with every request and console error of its pages recorded. */
async function shopper() {
  const dir = mkdtempSync(join(tmpdir(), "localrank-e2e-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const requests = [];
  const errors = [];
  context.on("request", (request) => requests.push({ url: request.url(), method: request.method(), body: request.postData() }));
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (message) => message.type() === "error" && errors.push(message.text()));
  page.on("pageerror", (error) => errors.push(String(error)));
  const close = async () => {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(errors, [], "console errors on the page");
  };
  return { context, page, requests, errors, close };
}

async function loadStore(page) {
  await page.goto(BASE);
  await page.waitForSelector("body[data-ready]", { timeout: READY_TIMEOUT });
  assert.equal(await page.getAttribute("body", "data-ready"), "true", await page.textContent("#status"));
}

const recommendedIds = (page) => page.$$eval("#recommended .card", (cards) => cards.map((c) => c.dataset.id));
const recommendedCards = (page) =>
  page.$$eval("#recommended .card", (cards) => cards.map((c) => ({ id: c.dataset.id, meta: c.querySelector(".meta").textContent, reason: c.querySelector(".reason").textContent })));

async function serverTop(n) {
  const list = await (await fetch(`${BASE}/api/candidates?slot=home&n=60`)).json();
  return list.slice(0, n).map((c) => c.id);
}

/** Opens the first `count` products of a category, as a shopper would. Returns their titles. */
async function viewCategory(page, category, count) {
  await page.click(`#categories button[data-category="${category}"]`);
  await page.waitForFunction((name) => document.getElementById("grid-title").textContent === name, category);
  const titles = [];
  for (let i = 0; i < count; i++) {
    const card = page.locator("#grid .card").nth(i);
    titles.push(await card.locator(".title").textContent());
    await card.click();
    await page.click("#close-product");
  }
  // Each view re-ranks; wait until the row names one of these products as its reason.
  await page.waitForFunction(() => [...document.querySelectorAll("#recommended .reason")].some((r) => r.textContent.startsWith("because you viewed")), null, { timeout: 60_000 });
  return titles;
}

test("a shopper's views re-rank the store on the device, survive a reload, and erase back to the server order", async () => {
  const { page, requests, close } = await shopper();
  await loadStore(page);
  const manifest = await (await fetch(`${BASE}/models/manifest.json`)).json();
  const modelBytes = manifest.files.find((f) => f.dtype === "q8_0").bytes;
  assert.equal(Number(await page.getAttribute("body", "data-model-bytes")), modelBytes, "the progress bar counted every byte of the model");
  const serverOrder = await serverTop(8);
  assert.deepEqual(await recommendedIds(page), serverOrder, "no history: the server's order");
  const before = (await recommendedCards(page)).filter((c) => c.meta.includes("Horror")).length;

  const viewed = await viewCategory(page, "Horror", 3);
  const after = await recommendedCards(page);
  const horror = after.filter((c) => c.meta.includes("Horror"));
  console.log(`viewed ${JSON.stringify(viewed)}; Horror in the top 8: ${before} -> ${horror.length}`);
  assert.ok(horror.length >= before + 2, `same-genre items moved up: ${JSON.stringify(after)}`);
  assert.ok(horror.some((c) => viewed.some((title) => c.reason === `because you viewed ${title}`)), "a matching reason names a viewed product");
  await page.screenshot({ path: join(ARTIFACTS, "store.png"), fullPage: true });

  // Second visit: history from IndexedDB, model from the Cache API (no model download).
  const modelFetches = () => requests.filter((r) => r.url.endsWith(".gguf")).length;
  const fetchedBefore = modelFetches();
  await loadStore(page);
  assert.equal(modelFetches(), fetchedBefore, "the second visit loads the model from the cache");
  await page.click("#open-data");
  await page.waitForFunction(() => document.querySelectorAll("#events li").length === 3);
  assert.deepEqual((await recommendedCards(page)).map((c) => c.id), after.map((c) => c.id), "same ranking after reload");

  await page.click("#erase");
  await page.waitForFunction(() => document.querySelectorAll("#events li").length === 0);
  await page.click("#close-data");
  await page.waitForFunction((ids) => [...document.querySelectorAll("#recommended .card")].map((c) => c.dataset.id).join() === ids.join(), serverOrder);
  await close();
});

test("no request depends on the shopper's history, nothing leaves the origin, no cookie is set", async () => {
  const histories = { horror: "Horror", children: "Children's" };
  const audits = {};
  for (const [name, category] of Object.entries(histories)) {
    const { context, page, requests, close } = await shopper();
    await loadStore(page);
    const viewedIds = [];
    await page.click(`#categories button[data-category="${category}"]`);
    await page.waitForFunction((c) => document.getElementById("grid-title").textContent === c, category);
    for (let i = 0; i < 3; i++) {
      const card = page.locator("#grid .card").nth(i);
      viewedIds.push(await card.getAttribute("data-id"));
      await card.click();
      await page.click("#close-product");
    }
    await page.waitForFunction(() => [...document.querySelectorAll("#recommended .reason")].some((r) => r.textContent.startsWith("because you viewed")), null, { timeout: 60_000 });
    // What a returning shopper's visit sends, with the history now stored on the device.
    const start = requests.length;
    await loadStore(page);
    await page.waitForFunction(() => document.querySelectorAll("#recommended .card").length === 8);
    const visit = requests.slice(start);
    for (const request of requests) {
      assert.ok(request.url.startsWith(BASE), `off-origin request: ${request.url}`);
      for (const id of viewedIds) {
        assert.ok(!new URL(request.url).search.includes(`=${id}`) && !(request.body || "").includes(id), `request carries viewed item ${id}: ${request.url}`);
      }
    }
    assert.deepEqual(await context.cookies(), [], "no cookie");
    audits[name] = visit.filter((r) => new URL(r.url).pathname.startsWith("/api/")).map((r) => `${r.method} ${new URL(r.url).pathname}${new URL(r.url).search}`).sort();
    console.log(`${name} shopper: ${requests.length} requests in all, returning visit's API requests: ${JSON.stringify(audits[name])}`);
    await close();
  }
  assert.ok(audits.horror.length > 0);
  assert.deepEqual(audits.horror, audits.children, "two shoppers with different histories send identical API requests");
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
