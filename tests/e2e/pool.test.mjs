// The worker pool (issue 12 part 1), on a page that is not cross-origin isolated: the vectors
// out of two workers are bit for bit one worker's; a helper that dies mid-batch is replaced and
// its share retried once (the model read again from this device's cache: the pool keeps no copy),
// a second death is a `WorkerFailed` error and the client carries on; `close()` leaves no
// worker alive.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BASE, useStoreServer, shopper } from "./harness.mjs";

useStoreServer({ fixtures: true });

const MODEL_URL = "/models/all-MiniLM-L6-v2.q8_0.gguf";

// A same-origin page without the store app on it (so the only workers are the test's) and
// without COOP/COEP (the store sends them; most store pages cannot): an ordinary page.
async function blankPage(page) {
  await page.route(`${BASE}/ordinary-page`, (route) => route.fulfill({ status: 200, contentType: "text/html", body: "<!doctype html><title>an ordinary page</title>" }));
  await page.goto(`${BASE}/ordinary-page`);
  assert.equal(await page.evaluate(() => self.crossOriginIsolated), false, "an ordinary page: no SharedArrayBuffer");
}

// 100 product texts from the catalog: the size of one page of candidates.
async function catalogTexts() {
  const list = await (await fetch(`${BASE}/api/candidates?slot=home&n=100`)).json();
  return list.map((c) => `${c.title}. ${(c.categories || []).join(", ")}`);
}

/** Runs in the page: a LocalRank with `workers`, its vectors of `texts` (as an array) and info. */
async function embedWith(page, workers, texts) {
  return page.evaluate(
    async ({ modelUrl, workers, texts }) => {
      const { LocalRank } = await import("/pkg/index.js");
      const rec = await LocalRank.create({ modelUrl, workers });
      const working = await rec.poolReady();
      const vectors = await rec.embed(texts);
      await rec.close();
      return { working, vectors: Array.from(vectors) };
    },
    { modelUrl: MODEL_URL, workers, texts },
  );
}

test("two workers give exactly one worker's vectors, on a page without COOP/COEP", async () => {
  const { page, close } = await shopper();
  try {
    await blankPage(page);
    const texts = await catalogTexts();
    const one = await embedWith(page, 1, texts);
    const two = await embedWith(page, 2, texts);
    assert.equal(one.working, 1);
    assert.equal(two.working, 2, "the helper worker started");
    assert.equal(two.vectors.length, texts.length * 384);
    const differing = one.vectors.filter((x, i) => !Object.is(x, two.vectors[i])).length;
    assert.equal(differing, 0, "every number is the same bits");
  } finally {
    await close();
  }
});

test("close() leaves no worker alive", async () => {
  const { page, close } = await shopper();
  await blankPage(page);
  const ours = () => page.workers().filter((w) => w.url().includes("/pkg/"));
  await page.evaluate(async (modelUrl) => {
    const { LocalRank } = await import("/pkg/index.js");
    self.testRec = await LocalRank.create({ modelUrl, workers: 3 });
    await self.testRec.poolReady();
  }, MODEL_URL);
  assert.ok(ours().length >= 3, `the main worker and two helpers run (${ours().map((w) => w.url())})`);
  await page.evaluate(() => self.testRec.close());
  for (let i = 0; i < 50 && ours().length; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(ours().map((w) => w.url()), [], "no worker left");
  const after = await page.evaluate(() => self.testRec.rerank([{ id: "a", title: "A" }]).catch((e) => e.name));
  assert.equal(after, "Terminated");
  await close();
});


// Runs in the page: a LocalRank whose helper workers crash on a batch (`always`, or only the
// first generation of each helper), counting crashes on a BroadcastChannel.
// `evict`: the model's cached copy is deleted once the helpers run (as a browser evicting it
// would), so a replacement has no model to load: the pool keeps no copy of its own.
const crashingPool = async ({ modelUrl, texts, always, evict = false }) => {
  const { LocalRank, LocalRankError } = await import("/pkg/index.js");
  const embedWorkerUrl = `/test-fixtures/crashing-embed-worker.js${always ? "?always" : ""}`;
  let crashes = 0;
  new BroadcastChannel("planted").onmessage = () => crashes++;
  const rec = await LocalRank.create({ modelUrl, workers: 2, embedWorkerUrl });
  await rec.poolReady();
  if (evict) await caches.delete("localrank-models");
  const first = await rec.embed(texts).then(
    (vectors) => ({ vectors: Array.from(vectors) }),
    (e) => ({ failure: { name: e.name, typed: e instanceof LocalRankError, message: e.message } }),
  );
  // Whatever happened, the client still answers: the next call runs on what is left.
  const again = await rec.embed(texts);
  await rec.close();
  await new Promise((resolve) => setTimeout(resolve, 100)); // let the channel deliver
  return { ...first, crashes, rowsAfter: again.length / 384 };
};

test("a helper that dies mid-batch is replaced and its share retried: no vector lost or changed", async () => {
  const { page, close } = await shopper({ expectedFailures: [/planted crash/] });
  try {
    await blankPage(page);
    const texts = await catalogTexts();
    const reference = await embedWith(page, 1, texts);
    const outcome = await page.evaluate(crashingPool, { modelUrl: MODEL_URL, texts, always: false });
    assert.equal(outcome.failure, undefined, JSON.stringify(outcome.failure));
    assert.equal(outcome.crashes, 1, "the helper crashed once, its replacement did not");
    const differing = reference.vectors.filter((x, i) => !Object.is(x, outcome.vectors[i])).length;
    assert.equal(differing, 0, "the retried share gives the same bits");
  } finally {
    await close();
  }
});

test("a helper that dies twice is a WorkerFailed error, and the client carries on alone", async () => {
  const { page, close } = await shopper({ expectedFailures: [/planted crash/] });
  try {
    await blankPage(page);
    const texts = await catalogTexts();
    const outcome = await page.evaluate(crashingPool, { modelUrl: MODEL_URL, texts, always: true });
    assert.equal(outcome.failure && outcome.failure.name, "WorkerFailed", JSON.stringify(outcome.failure));
    assert.ok(outcome.failure.typed, "a LocalRankError");
    assert.match(outcome.failure.message, /died twice/);
    assert.equal(outcome.crashes, 2, "the share was tried on the helper and on one replacement");
    assert.equal(outcome.rowsAfter, texts.length, "the next call embeds everything on the main worker");
  } finally {
    await close();
  }
});

test("a helper that dies when the model is no longer cached is not replaced: a WorkerFailed error that says why, no request, and the client carries on alone", async () => {
  const { page, close, requests } = await shopper({ expectedFailures: [/planted crash/] });
  try {
    await blankPage(page);
    const texts = await catalogTexts();
    const before = requests.length;
    const outcome = await page.evaluate(crashingPool, { modelUrl: MODEL_URL, texts, always: false, evict: true });
    assert.equal(outcome.failure && outcome.failure.name, "WorkerFailed", JSON.stringify(outcome.failure));
    assert.match(outcome.failure.message, /cannot be replaced: the model is not on this device/);
    assert.equal(outcome.crashes, 1, "no replacement ran the share");
    assert.equal(outcome.rowsAfter, texts.length, "the next call embeds everything on the main worker");
    const modelRequests = requests.slice(before).filter(({ url }) => url.includes(".gguf"));
    assert.equal(modelRequests.length, 1, `the model was fetched once, by create(), never for a replacement (${modelRequests.map((r) => r.url)})`);
  } finally {
    await close();
  }
});
