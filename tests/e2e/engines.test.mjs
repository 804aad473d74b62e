// The store, the client and the npm package in the engines other than Chromium (issue 13 part 3):
// Firefox ESR and WebKitGTK (the engine of Safari), through WebDriver (tests/e2e/webdriver.mjs).
// In each: the store starts; a shopper's views move the recommended row with a reason; a reload
// restores the history and its vectors; erasing brings back the server's order; the client's
// vectors (worker pool of 2) agree with the native model's; and the Vite example built from the
// packed tarball loads, ranks and gives a reason. An engine that is not installed is reported as
// skipped, never passed. The rest of the store's suite (faults, the network audit, a11y) needs
// Playwright's request and CDP hooks and runs in Chromium only.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BASE, ROOT, useStoreServer, useExampleServer } from "./harness.mjs";
import { availableEngines, openSession } from "./webdriver.mjs";

useStoreServer();
const example = useExampleServer();

const TEXTS = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/texts.json"), "utf8"));
const NATIVE = JSON.parse(readFileSync(join(ROOT, "tests/fixtures/native_q8_0_embeddings.json"), "utf8"));
const ENGINES = availableEngines();

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

for (const name of ["Firefox", "WebKit"]) {
  const engine = ENGINES.find((e) => e.name === name);
  test(`${name}: the store personalises on the device, keeps and erases the history, the client's vectors match native, the npm package works`, { skip: engine ? false : `${name} or its WebDriver is not installed (scripts/setup installs both)` }, async () => {
    const browser = await openSession(engine);
    try {
      console.log(`${name}: ${browser.version}`);
      await browser.goto(BASE);
      await browser.waitFor("return document.body.dataset.ready");
      assert.equal(await browser.evaluate("return document.body.dataset.ready"), "true", await browser.evaluate("return document.getElementById('status').textContent"));
      await browser.waitFor("return document.querySelectorAll('#recommended .card').length === 8");

      // A shopper views three Horror films (click, close the dialog), as in the Chromium test.
      await browser.evaluate("document.querySelector('#categories button[data-category=\"Horror\"]').click()");
      await browser.waitFor("return document.getElementById('grid').dataset.page === 'Horror' && document.querySelector('#grid .card')");
      const viewed = [];
      for (let i = 0; i < 3; i++) {
        viewed.push(await browser.evaluate("const card = document.querySelectorAll('#grid .card')[arguments[0]]; const title = card.querySelector('.title').textContent; card.click(); return title;", i));
        await browser.waitFor("return document.getElementById('product').open");
        await browser.evaluate("document.getElementById('close-product').click()");
        await browser.waitFor("return !document.getElementById('product').open && document.body.dataset.rankPending === '0'");
      }
      const reasons = await browser.waitFor(
        "const r = [...document.querySelectorAll('#recommended .reason')].map((e) => e.textContent); return r.some((t) => t.startsWith('Because you viewed')) && r;",
      );
      assert.ok(reasons.some((reason) => viewed.some((title) => reason === `Because you viewed ${title}`)), `a reason names a viewed film: ${reasons.join(" | ")}`);

      // A reload: the history comes back from IndexedDB and the model from the Cache API.
      await browser.goto(BASE);
      await browser.waitFor("return document.body.dataset.ready");
      assert.equal(await browser.evaluate("return document.body.dataset.restoredVectors"), "3", "the history's vectors were read back");
      await browser.waitFor("return [...document.querySelectorAll('#recommended .reason')].some((e) => e.textContent.startsWith('Because you viewed'))");
      // Erasing everything on the device brings back the server's order.
      await browser.evaluate("document.getElementById('open-data').click()");
      await browser.evaluate("document.getElementById('erase').click()");
      await browser.waitFor("return document.getElementById('events').textContent.includes('Nothing is stored.')");
      await browser.evaluate("document.getElementById('close-data').click()");
      await browser.waitFor("return document.querySelectorAll('#recommended .card').length === 8 && ![...document.querySelectorAll('#recommended .reason')].some((e) => e.textContent.startsWith('Because you'))");

      // The client on this engine, with a pool of 2: vectors against the native model's.
      const result = await browser.evaluateAsync(
        `const [texts, done] = arguments;
        (async () => {
          const { LocalRank } = await import("/pkg/index.js");
          const rec = await LocalRank.create({ modelUrl: "/models/all-MiniLM-L6-v2.q8_0.gguf", workers: 2 });
          const working = await rec.poolReady();
          const vectors = Array.from(await rec.embed(texts));
          await rec.close();
          return { working, vectors };
        })().then(done, (e) => done({ error: e.name + ": " + e.message }));`,
        TEXTS,
      );
      assert.equal(result.error, undefined, result.error);
      assert.equal(result.working, 2, "the helper worker started");
      const cosines = NATIVE.map((row, i) => cosine(row, result.vectors.slice(i * 384, (i + 1) * 384)));
      const min = Math.min(...cosines);
      console.log(`${name}: client (2 workers) vs native q8_0 over ${TEXTS.length} texts: min cosine ${min.toFixed(8)}`);
      assert.ok(min >= 0.99999, `min cosine ${min}`);

      // The npm package through Vite, on a plain static host.
      await browser.goto(example.url);
      await browser.waitFor("return document.body.dataset.ready");
      assert.equal(await browser.evaluate("return document.body.dataset.ready"), "true", await browser.evaluate("return document.getElementById('status').textContent"));
      await browser.evaluate("[...document.querySelectorAll('#products button')].find((b) => b.textContent === 'View Trail running shoes').click()");
      await browser.waitFor("return document.getElementById('recommended').textContent.includes('GPS running watch (Because you viewed Trail running shoes)')", 60_000);
    } finally {
      await browser.close();
    }
  });
}
