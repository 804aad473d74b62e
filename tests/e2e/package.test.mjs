// The npm package as a web team uses it (issue 13 part 1): examples/vite, built by
// examples/vite/build from the packed tarball through Vite, served as plain static files (no
// localrank server, no COOP/COEP) with the model under /models/. It must load, rank and give a
// reason that comes from the shopper's history.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join, extname, normalize } from "node:path";
import { ROOT, shopper } from "./harness.mjs";

const DIST = join(ROOT, "examples/vite/dist");
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json", ".gguf": "application/octet-stream" };
let server;
let base;

// A static file server: /models/* from models/, everything else from the example's dist/.
function serveStatic(request, response) {
  const path = normalize(decodeURIComponent(new URL(request.url, "http://x").pathname));
  const file = path.startsWith("/models/") ? join(ROOT, path) : join(DIST, path === "/" ? "index.html" : path);
  if (!file.startsWith(ROOT) || !existsSync(file) || !statSync(file).isFile()) {
    response.writeHead(404).end("not found");
    return;
  }
  response.writeHead(200, { "content-type": TYPES[extname(file)] || "application/octet-stream" }).end(readFileSync(file));
}

before(async () => {
  assert.ok(existsSync(join(DIST, "index.html")), "examples/vite/build has run (scripts/test runs it)");
  server = createServer(serveStatic);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}`;
});
after(() => server && server.close());

test("the Vite example built from the packed tarball loads, ranks, and shows a reason from the history", async () => {
  const { page, requests, close } = await shopper();
  try {
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
