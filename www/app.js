// The demo storefront. The server's lists (/api/candidates) never depend on the shopper: the
// "Recommended for you" row is the same popular list for everyone, re-ranked in the worker.
import { LocalRank } from "/localrank.js";

const MODEL_URL = "/models/all-MiniLM-L6-v2.q8_0.gguf";
const RECOMMENDED = 8;
const $ = (id) => document.getElementById(id);
const state = { rec: null, current: null, byId: new Map() };

const api = async (slot, n) => {
  const response = await fetch(`/api/candidates?slot=${encodeURIComponent(slot)}&n=${n}`);
  if (!response.ok) throw new Error(`${slot}: ${await response.text()}`);
  const list = await response.json();
  for (const item of list) state.byId.set(item.id, item);
  return list;
};

// Product text is always set as text, never parsed as HTML.
function card(item, reason) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = item.id;
  const parts = [["title", item.title], ["meta", (item.categories || []).join(", ")]];
  if (reason) parts.push(["reason", reason]);
  for (const [cls, text] of parts) {
    const span = document.createElement("span");
    span.className = cls;
    span.textContent = text;
    button.append(span);
  }
  button.addEventListener("click", () => openProduct(item));
  li.append(button);
  return li;
}

function reasonText(reason) {
  if (reason.kind === "similar") return `because you viewed ${reason.title}`;
  if (reason.kind === "search") return `because you searched "${reason.title}"`;
  return "popular in the store";
}

async function showGrid(title, slot) {
  $("grid-title").textContent = title;
  const list = await api(slot, 24);
  $("grid").replaceChildren(...list.map((item) => card(item)));
}

async function showRecommended() {
  const candidates = await api("home", 60);
  const ranked = state.rec ? await state.rec.rerank(candidates, { limit: RECOMMENDED }) : candidates.slice(0, RECOMMENDED).map((c) => ({ id: c.id, reason: { kind: "server" } }));
  $("recommended").replaceChildren(...ranked.map((r) => card(state.byId.get(r.id), reasonText(r.reason))));
}

async function record(kind, item) {
  const { score, ...product } = item; // the server's score is not part of the shopper's history
  try {
    await state.rec.record({ kind, at: Date.now(), item: product });
  } catch (error) {
    showWarning(error.message);
  }
  await showRecommended();
}

function openProduct(item) {
  state.current = item;
  $("product-title").textContent = item.title;
  $("product-categories").textContent = (item.categories || []).join(", ");
  $("product").showModal();
  if (state.rec) record("view", item);
}

function showWarning(message) {
  $("warning").textContent = message;
  $("warning").classList.remove("hidden");
}

async function showData() {
  const events = await state.rec.history();
  $("events").replaceChildren(
    ...events.map((event) => {
      const li = document.createElement("li");
      const what = event.item ? event.item.title : `"${event.query}"`;
      li.textContent = `${new Date(event.at).toLocaleString()}: ${event.kind} ${what} `;
      if (event.item) {
        const forget = document.createElement("button");
        forget.type = "button";
        forget.textContent = "Forget";
        forget.addEventListener("click", async () => {
          await state.rec.forget(event.item.id);
          await Promise.all([showData(), showRecommended()]);
        });
        li.append(forget);
      }
      return li;
    }),
  );
}

function wire() {
  $("close-product").addEventListener("click", () => $("product").close());
  $("add-to-cart").addEventListener("click", () => record("cart", state.current).then(() => $("product").close()));
  $("not-interested").addEventListener("click", () => record("dismiss", state.current).then(() => $("product").close()));
  $("open-data").addEventListener("click", async () => {
    await showData();
    $("data").showModal();
  });
  $("close-data").addEventListener("click", () => $("data").close());
  $("erase").addEventListener("click", async () => {
    await state.rec.clear();
    await Promise.all([showData(), showRecommended()]);
  });
  $("export").addEventListener("click", async () => {
    const blob = new Blob([await state.rec.exportHistory()], { type: "application/json" });
    const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: "localrank-history.json" });
    link.click();
    URL.revokeObjectURL(link.href);
  });
  $("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    await showGrid(`Results for "${query}"`, `search:${query}`);
    if (state.rec) {
      await state.rec.record({ kind: "search", at: Date.now(), query }).catch((e) => showWarning(e.message));
      await showRecommended();
    }
  });
}

async function showCategories() {
  const names = await (await fetch("/api/categories")).json();
  $("categories").replaceChildren(
    ...names.map((name) => {
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: name });
      button.dataset.category = name;
      button.addEventListener("click", () => showGrid(name, `category:${name}`));
      return button;
    }),
  );
}

async function main() {
  wire();
  await Promise.all([showCategories(), showGrid("Popular now", "home"), showRecommended()]);
  const onProgress = ({ phase, loaded, total }) => {
    if (phase !== "compile") document.body.dataset.modelBytes = loaded;
    $("progress").max = total || 1;
    $("progress").value = loaded;
    $("status").textContent = phase === "compile" ? "Starting the model…" : `Loading the model (${phase}): ${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB`;
  };
  try {
    state.rec = await LocalRank.create({ modelUrl: MODEL_URL, onProgress, onWarning: showWarning });
    $("progress").value = $("progress").max;
    $("status").textContent = "Ready: recommendations are computed on this device.";
    document.body.dataset.ready = "true";
    await showRecommended();
  } catch (error) {
    $("status").textContent = `The recommender could not start: ${error.message}`;
    document.body.dataset.ready = "failed";
  }
}

main();
