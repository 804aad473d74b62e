// The demo store for shoppers who use assistive technology or the keyboard: axe-core (from npm)
// finds no serious or critical violation on the store, a product dialog or the data dialog, and
// a shopper can open a product, add it to the cart and erase their history with the keyboard.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { useStoreServer, shopper, loadStore, recommendedRow, waitForSaved, dataDialogLines } from "./harness.mjs";

useStoreServer();

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical violations on the page as it is now, one line each. */
async function seriousViolations(page) {
  // Evaluated through the DevTools protocol, so the store's CSP (script-src 'self') is untouched.
  if (!(await page.evaluate(() => typeof window.axe === "object"))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations);
  return violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

/** Presses Tab (or Shift+Tab) until `matches(document.activeElement)` holds; fails after 200. */
async function tabTo(page, matches, { backwards = false } = {}) {
  for (let press = 0; press < 200; press++) {
    if (await page.evaluate(matches)) return;
    await page.keyboard.press(backwards ? "Shift+Tab" : "Tab");
  }
  throw new Error(`never reached by ${backwards ? "Shift+Tab" : "Tab"}: ${matches}`);
}

test("axe-core finds no serious or critical violation on the store and its dialogs", async () => {
  const { page, close } = await shopper();
  await loadStore(page);
  await recommendedRow(page);
  const found = { store: await seriousViolations(page) };
  await page.locator("#grid .card").first().click();
  found.product = await seriousViolations(page);
  await page.click("#close-product");
  await page.click("#open-data");
  await page.waitForFunction(() => document.querySelector("#events").children.length > 0);
  found.data = await seriousViolations(page);
  await page.click("#close-data");
  console.log(`axe-core serious/critical violations: ${JSON.stringify(found)}`);
  assert.deepEqual(found, { store: [], product: [], data: [] });
  await close();
});

test("by keyboard alone: open a product, add it to the cart, erase the history", async () => {
  const { page, close } = await shopper();
  await loadStore(page);
  await recommendedRow(page);
  await tabTo(page, () => document.activeElement.matches("#grid .card"));
  const title = await page.evaluate(() => document.activeElement.querySelector(".title").textContent);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("product").open);
  assert.equal(await page.textContent("#product-title"), title);
  await tabTo(page, () => document.activeElement.id === "add-to-cart");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => !document.getElementById("product").open);
  await waitForSaved(page, 2);
  const lines = await dataDialogLines(page);
  assert.ok(lines.some((line) => line.includes(`cart ${title}`)), `the cart event is stored: ${JSON.stringify(lines)}`);

  await page.evaluate(() => document.activeElement.blur());
  await tabTo(page, () => document.activeElement.id === "open-data");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.getElementById("data").open);
  await tabTo(page, () => document.activeElement.id === "erase");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#events").textContent.includes("Nothing is stored."));
  await page.keyboard.press("Escape");
  await page.waitForFunction(() => !document.getElementById("data").open);
  await close();
});
