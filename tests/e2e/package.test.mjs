// The npm package as a web team uses it (issue 13 part 1): examples/vite, built by
// examples/vite/build from the packed tarball through Vite, served as plain static files (no
// localrank server, no COOP/COEP) with the model under /models/. It must load, rank and give a
// reason that comes from the shopper's history.
import { test } from "node:test";
import assert from "node:assert/strict";
import { shopper, useExampleServer } from "./harness.mjs";

const example = useExampleServer();

test("the Vite example built from the packed tarball loads, ranks, and shows a reason from the history", async () => {
  const { page, requests, close } = await shopper();
  try {
    const base = example.url;
    await page.goto(base);
    await page.waitForSelector("body[data-ready]", { timeout: 120_000 });
    assert.equal(await page.getAttribute("body", "data-ready"), "true", await page.textContent("#status"));
    assert.match(await page.textContent("#status"), /^Ready \(\d+ workers\)$/);
    // No history yet: the server's order, with its reason.
    const first = await page.$$eval("#recommended li", (items) => items.map((li) => li.textContent));
    assert.equal(first.length, 4);
    assert.ok(first.every((text) => text.endsWith("(Popular in the store)")), first.join(" | "));

    await page.click("text=View Trail running shoes");
    await page.waitForFunction(() => /Because you viewed Trail running shoes/.test(document.getElementById("recommended").textContent), null, { timeout: 60_000 });
    assert.ok(!first.some((text) => text.startsWith("GPS running watch")), "the watch is not in the server's top 4");
    const after = await page.$$eval("#recommended li", (items) => items.map((li) => li.textContent));
    assert.ok(after.includes("GPS running watch (Because you viewed Trail running shoes)"), after.join(" | "));

    // Every file came from the package's assets or /models/, and nothing carried the history.
    const ours = requests.filter((r) => r.url.startsWith(base));
    assert.ok(ours.some((r) => /\/assets\/localrank_bg-[\w-]+\.wasm$/.test(r.url)), "the wasm came through the bundler");
    assert.ok(ours.every((r) => r.method === "GET" && !r.body), "only GETs without a body");
  } finally {
    await close();
  }
});
