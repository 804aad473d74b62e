// What every end-to-end test file shares: the demo store's server (one per file), a fresh
// shopper (browser profile) whose requests and console are recorded, and page helpers.
// Debian's Chromium through playwright-core: no browser download.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync, readFileSync, statSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join, dirname, extname, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const PORT = 18000 + (process.pid % 1000);
export const BASE = `http://127.0.0.1:${PORT}`;
export const ARTIFACTS = join(ROOT, "target", "e2e");
const READY_TIMEOUT = 180_000;
let server;

/**
 * Starts `localrank serve` for this test file and stops it after. `storeModel`: a `localrank
 * train` output folder to serve (vectors on products, the encoder at /store). `fixtures`: also
 * serve tests/e2e/fixtures/ at /test-fixtures.
 */
export function useStoreServer({ storeModel, fixtures = false } = {}) {
  before(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const binary = process.env.LOCALRANK_BIN || join(ROOT, "target/debug/localrank");
    const args = ["serve", "--port", String(PORT), ...(storeModel ? ["--store-model", storeModel] : []), ...(fixtures ? ["--mount", "/test-fixtures=tests/e2e/fixtures"] : [])];
    server = spawn(binary, args, { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] });
    await new Promise((resolve, reject) => {
      server.stderr.on("data", (chunk) => String(chunk).includes("localrank store: http") && resolve());
      server.on("exit", (code) => reject(new Error(`localrank serve exited with ${code}`)));
    });
  });
  after(async () => {
    // A test that failed before its close() leaves its browser open, which would keep this file
    // running forever: close what is left, then the server.
    await Promise.all([...openContexts].map((context) => context.close().catch(() => {})));
    if (server) server.kill();
  });
}

/** Browser contexts `shopper()` opened and their test has not closed yet. */
const openContexts = new Set();

const EXAMPLE_DIST = join(ROOT, "examples/vite/dist");
const CONTENT_TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".gguf": "application/octet-stream" };

/**
 * Serves the npm package's Vite example (examples/vite/dist, built by examples/vite/build) as
 * plain static files, as any web host would (no localrank server, no COOP/COEP), with the model
 * under /models/, for this test file. Returns `{ url }`, set once the server is up.
 */
export function useExampleServer() {
  const example = { url: null };
  let server;
  before(async () => {
    assert.ok(existsSync(join(EXAMPLE_DIST, "index.html")), "examples/vite/build has run (scripts/test runs it)");
    server = createServer((request, response) => {
      const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
      const file = path.startsWith("/models/") ? join(ROOT, path) : join(EXAMPLE_DIST, path === "/" ? "index.html" : path);
      if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) {
        response.writeHead(404).end("not found");
        return;
      }
      response.writeHead(200, { "content-type": CONTENT_TYPES[extname(file)] || "application/octet-stream" }).end(readFileSync(file));
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    example.url = `http://127.0.0.1:${server.address().port}`;
  });
  after(() => server && server.close());
  return example;
}

/**
 * A fresh browser profile, with every request and console message of its pages recorded.
 * `close()` asserts that no error went unhandled on the page: no uncaught exception or
 * rejection, and no console error except the browser's own line for a response the test made
 * fail on purpose (`expectedFailures`, regexps).
 */
export async function shopper({ expectedFailures = [], profile } = {}) {
  // A given profile is the same shopper coming back: it is kept on close.
  const dir = profile || mkdtempSync(join(tmpdir(), "localrank-e2e-"));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  openContexts.add(context);
  const requests = [];
  const errors = [];
  const warnings = [];
  context.on("request", (request) => requests.push({ url: request.url(), method: request.method(), body: request.postData() }));
  const watch = (page) => {
    page.on("console", (message) => {
      if (message.type() === "error" && !expectedFailures.some((re) => re.test(message.text()))) errors.push(message.text());
      if (message.type() === "warning") warnings.push(message.text());
    });
    page.on("pageerror", (error) => errors.push(`uncaught: ${error}`));
  };
  context.on("page", watch);
  const page = context.pages()[0] || (await context.newPage());
  watch(page);
  const close = async () => {
    openContexts.delete(context);
    await context.close();
    if (!profile) rmSync(dir, { recursive: true, force: true });
    assert.deepEqual(errors, [], "unhandled errors on the page");
  };
  return { context, page, requests, errors, warnings, close };
}

/** Loads the store and waits until the recommender has started (`ready` "true") or given up ("failed"). */
/** A browser profile that outlives one `shopper()` (remove it with `rmSync` when done). */
export const newProfile = () => mkdtempSync(join(tmpdir(), "localrank-e2e-"));

export async function loadStore(page, { expect = "true" } = {}) {
  await page.goto(BASE);
  await page.waitForSelector("body[data-ready]", { timeout: READY_TIMEOUT });
  assert.equal(await page.getAttribute("body", "data-ready"), expect, await page.textContent("#status"));
  // The embedding workers start after the first row (their files are fetched then): wait, so a
  // test's own request count starts after the page's load.
  if (expect === "true") await page.waitForSelector("body[data-workers]", { timeout: READY_TIMEOUT });
}

export const recommendedIds = (page) => page.$$eval("#recommended .card", (cards) => cards.map((c) => c.dataset.id));
export const recommendedCards = (page) =>
  page.$$eval("#recommended .card", (cards) => cards.map((c) => ({ id: c.dataset.id, meta: c.querySelector(".meta").textContent, reason: c.querySelector(".reason").textContent })));

/** Waits until the recommended row shows `n` products. */
export const recommendedRow = (page, n = 8) =>
  page.waitForFunction((count) => document.querySelectorAll("#recommended .card").length === count, n, { timeout: 60_000 });

export async function serverTop(n) {
  const list = await (await fetch(`${BASE}/api/candidates?slot=home&n=60`)).json();
  return list.slice(0, n).map((c) => c.id);
}

/** Opens a category page as a shopper would. */
export async function openCategory(page, category) {
  await page.click(`#categories button[data-category="${category}"]`);
  await page.waitForFunction((name) => document.getElementById("grid-title").textContent === name, category);
  // The title changes at once; the products when the list arrives: wait for those.
  await page.waitForFunction((name) => document.getElementById("grid").dataset.page === name && document.querySelector("#grid .card"), category);
}

/** Opens grid product `index`, optionally presses an action in its dialog, and closes it. */
export async function openProduct(page, index, action = "#close-product") {
  const card = page.locator("#grid .card").nth(index);
  const id = await card.getAttribute("data-id");
  await card.click();
  await page.click(action);
  return id;
}

/** Waits until no re-ranking of the recommended row is in flight (the product dialog closed). */
export async function rowSettled(page) {
  await page.waitForFunction(() => !document.getElementById("product").open && document.body.dataset.rankPending === "0", null, { timeout: 60_000 });
}

/** The events stored on this device, as the data dialog lists them. */
export async function dataDialogLines(page) {
  await page.click("#open-data");
  await page.waitForFunction(() => document.querySelector("#events").children.length > 0);
  const lines = await page.$$eval("#events li", (items) => items.map((li) => li.textContent));
  await page.click("#close-data");
  return lines.filter((line) => !/^Nothing is stored/.test(line));
}

/** The page still works for a shopper: a category opens and a product dialog opens and closes. */
export async function assertUsable(page, category = "Comedy") {
  await openCategory(page, category);
  await openProduct(page, 0);
  assert.equal(await page.locator("#product").getAttribute("open"), null, "the product dialog closed");
}

/** Replaces the saved history's bytes in IndexedDB, as a crash, a bad extension or a newer version might. */
export function writeSavedHistory(page, text) {
  return page.evaluate(
    (text) =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("localrank");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const tx = open.result.transaction("state", "readwrite");
          tx.objectStore("state").put(new TextEncoder().encode(text), "history");
          tx.oncomplete = () => {
            open.result.close();
            resolve();
          };
          tx.onerror = () => reject(tx.error);
        };
      }),
    text,
  );
}

/** The saved history as stored (parsed), read straight from IndexedDB. */
export function readSavedHistory(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const open = indexedDB.open("localrank");
        open.onerror = () => reject(open.error);
        open.onsuccess = () => {
          const get = open.result.transaction("state").objectStore("state").get("history");
          get.onsuccess = () => {
            open.result.close();
            resolve(get.result ? JSON.parse(new TextDecoder().decode(get.result)) : null);
          };
          get.onerror = () => reject(get.error);
        };
      }),
  );
}

/**
 * Waits until the saved history (on disk, not the worker's memory) holds `count` events: a
 * recorded event is written after the page moves on, and a reload must not race that write.
 */
export async function waitForSaved(page, count) {
  for (let attempt = 0; attempt < 200; attempt++) {
    const saved = await readSavedHistory(page);
    if (saved && saved.events.length >= count) return saved;
    await page.waitForTimeout(50);
  }
  throw new Error(`the saved history never reached ${count} events`);
}
