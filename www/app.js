// The demo storefront. The server's lists (/api/candidates) never depend on the shopper's
// history, and neither does when or how often the page asks for them: a list is fetched once per
// page view (the home list when the page loads, a category or search list when the shopper opens
// that page), and everything the shopper does here (view, cart, dismiss, review) only re-ranks the
// lists the page already has, in the worker. The page the shopper is on (a product, a category, a
// search) is passed to the re-ranking as context, on the device too. Searches are the one thing
// sent: the typed words go to the store's search, as on any shop (the page and README say so).
//
// Degrade, don't die: the recommender starts on its own, whatever the lists do; a list that
// fails shows a message in its place; if the recommender cannot start, the store works in the
// server's order and "Your data on this device" still shows and erases what is stored.
import { LocalRank } from "/pkg/index.js";

const MODEL_URL = "/models/all-MiniLM-L6-v2.q8_0.gguf";
const HOME_LIST = 60;
const GRID = 24;
const RECOMMENDED = 8;
const $ = (id) => document.getElementById(id);
// `page`: the context of the grid on show ({category} or {query}; none on the home page).
const state = { rec: null, current: null, byId: new Map(), home: null, page: null, rankRequests: 0, rankPending: 0 };

/** A store list for a page view. Throws an error whose message a shopper can read. */
async function fetchList(slot, n) {
  let list;
  try {
    const response = await fetch(`/api/candidates?slot=${encodeURIComponent(slot)}&n=${n}`);
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    list = await response.json();
    if (!Array.isArray(list)) throw new Error("not a list");
  } catch (error) {
    console.warn(`localrank store: list ${slot}: ${error.message}`);
    throw new Error("The store could not load these products right now. Please try again later.", { cause: error });
  }
  const usable = list.filter((item) => item && typeof item === "object" && typeof item.id === "string" && typeof item.title === "string");
  for (const item of usable) if (!state.byId.has(item.id)) state.byId.set(item.id, item);
  return usable;
}

/** Each id once, first occurrence kept: what the page shows when it shows the server's order. */
function uniqueById(list) {
  const seen = new Set();
  return list.filter((item) => !seen.has(item.id) && seen.add(item.id));
}

// Product text is always set as text, never parsed as HTML.
function card(item, reason) {
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  button.className = "card";
  button.dataset.id = item.id;
  const categories = Array.isArray(item.categories) ? item.categories.join(", ") : "";
  const parts = [["title", item.title], ["meta", categories]];
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

function notice(text) {
  const li = document.createElement("li");
  li.className = "notice";
  li.textContent = text;
  return li;
}


/** A page view of a list: one request, then the grid; the recommended row leans toward it. */
async function showGrid(title, slot, page) {
  $("grid-title").textContent = title;
  state.page = page;
  showRecommended();
  try {
    const list = uniqueById(await fetchList(slot, GRID));
    $("grid").replaceChildren(...list.map((item) => card(item)));
  } catch (error) {
    $("grid").replaceChildren(notice(error.message));
  }
  $("grid").dataset.page = title; // which page is on show (tests wait on it)
}

/** What the shopper is looking at now: the open product, else the grid's category or search. */
function pageContext() {
  if (state.current) return { item: withoutScore(state.current) };
  return state.page || undefined;
}

/** A product as the shopper's history keeps it: the server's score is not part of it. */
function withoutScore(item) {
  // eslint-disable-next-line no-unused-vars -- dropped on purpose
  const { score, ...product } = item;
  return product;
}

/**
 * Re-ranks the home list the page already has; never asks the server, and never leaves the row
 * empty while the model works: an empty row gets the server's order at once, then the
 * personalised one. Only the newest request is shown (a view then a close can overlap);
 * `body[data-rank-pending]` counts those in flight, so a test can wait for the row to settle.
 */
async function showRecommended() {
  if (!state.home) return;
  const request = ++state.rankRequests;
  document.body.dataset.rankPending = String(++state.rankPending);
  const options = { limit: RECOMMENDED, context: pageContext() };
  try {
    if (!state.rec) return showRow(LocalRank.serverOrder(state.home, options));
    const { now, personalised } = state.rec.rerankProgressively(state.home, options);
    if (!$("recommended").children.length) showRow(now);
    let ranked = now;
    try {
      ranked = await personalised;
    } catch (error) {
      console.warn(`localrank store: re-ranking failed: ${error.message}`);
      // A recommender that stopped (its model failed to load) is told in the status line.
      if (state.rec) showWarning("Personal recommendations are unavailable for now; showing the store's picks.");
    }
    if (request === state.rankRequests) showRow(ranked);
  } finally {
    document.body.dataset.rankPending = String(--state.rankPending);
  }
}

function showRow(ranked) {
  const cards = ranked.filter((r) => state.byId.has(r.id)).map((r) => card(state.byId.get(r.id), r.reason.text));
  $("recommended").replaceChildren(...cards);
}

async function loadHome() {
  try {
    state.home = await fetchList("home", HOME_LIST);
    $("grid").replaceChildren(...uniqueById(state.home).slice(0, GRID).map((item) => card(item)));
    await showRecommended();
  } catch (error) {
    $("grid").replaceChildren(notice(error.message));
    $("recommended").replaceChildren(notice(error.message));
  }
}

/** Records a shopper event on this device, then re-ranks locally. Never throws. */
async function record(kind, item, details = {}) {
  if (!state.rec || !item) return;
  try {
    await state.rec.record({ kind, at: Date.now(), item: withoutScore(item), ...details });
  } catch (error) {
    showWarning(shopperMessage(error));
  }
  await showRecommended();
}

function openProduct(item) {
  state.current = item;
  $("product-title").textContent = item.title;
  $("product-categories").textContent = Array.isArray(item.categories) ? item.categories.join(", ") : "";
  $("product").showModal();
  record("view", item);
}

/** Shows a message to the shopper (the latest one), and keeps every one in the console. */
function showWarning(message) {
  console.warn(`localrank store: ${message}`);
  $("warning").textContent = message;
  $("warning").classList.remove("hidden");
}

/** An error from the recommender in words for a shopper (details go to the console as a warning). */
function shopperMessage(error) {
  const text = (error && error.message) || String(error);
  console.warn(`localrank store: ${text}`);
  if (/could not save|could not erase/.test(text)) return text.charAt(0).toUpperCase() + text.slice(1);
  return "Something went wrong with personal recommendations; the store works as usual.";
}

/** Why the recommender did not start, for a shopper. */
// Why the recommender did not start, in the shopper's words, from the error's stable name.
function startFailure(error) {
  console.warn(`localrank store: the recommender did not start: ${error && error.name}: ${(error && error.message) || error}`);
  switch (error && error.name) {
    case "ModelFetch":
      return "the recommendation model could not be downloaded";
    case "ModelChecksum":
    case "ModelFormat":
      return "the downloaded model was damaged";
    case "Storage":
    case "Quota":
      return "this browser's storage is not available";
    default:
      return "it could not start in this browser";
  }
}

function eventLine(event) {
  const li = document.createElement("li");
  let what = event.item ? event.item.title : `"${event.query}"`;
  if (event.kind === "review") what += `: "${event.text}"${event.rating ? ` (${event.rating} star${event.rating === 1 ? "" : "s"})` : ""}`;
  li.textContent = `${new Date(event.at).toLocaleString()}: ${event.kind} ${what} `;
  if (event.item && state.rec) {
    const forget = document.createElement("button");
    forget.type = "button";
    forget.textContent = "Forget";
    forget.addEventListener("click", async () => {
      try {
        await state.rec.forget(event.item.id);
      } catch (error) {
        showWarning(shopperMessage(error));
      }
      await Promise.all([showData(), showRecommended()]);
    });
    li.append(forget);
  }
  return li;
}

function setAsideLine(copy) {
  const li = document.createElement("li");
  li.className = "set-aside";
  li.textContent = `A saved history that could not be read, kept ${new Date(copy.at).toLocaleString()} (${copy.reason}) `;
  const exportButton = Object.assign(document.createElement("button"), { type: "button", textContent: "Export this copy" });
  exportButton.addEventListener("click", () => download(copy.text, `localrank-unreadable-${copy.key}.json`));
  li.append(exportButton);
  return li;
}

/** What is stored on this device: from the recommender, or straight from storage without it. */
async function storedData() {
  if (state.rec) return { events: await state.rec.history(), setAside: await state.rec.setAside() };
  const { history, setAside } = await LocalRank.storedData();
  let events;
  try {
    events = history ? JSON.parse(history).events || [] : [];
  } catch {
    events = [];
  }
  return { events: Array.isArray(events) ? events.filter((e) => e && typeof e === "object") : [], setAside };
}

async function showData() {
  let data;
  try {
    data = await storedData();
  } catch (error) {
    $("events").replaceChildren(notice(`This browser's storage could not be read (${(error && error.name) || error}).`));
    return;
  }
  const lines = [...data.setAside.map(setAsideLine), ...data.events.map(eventLine)];
  $("events").replaceChildren(...(lines.length ? lines : [notice("Nothing is stored.")]));
}

function download(text, name) {
  const blob = new Blob([text], { type: "application/json" });
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(blob), download: name });
  link.click();
  URL.revokeObjectURL(link.href);
}

async function eraseEverything() {
  try {
    if (state.rec) await state.rec.clear();
    else await LocalRank.eraseStoredData();
  } catch (error) {
    showWarning(shopperMessage(error));
  }
  await Promise.all([showData(), showRecommended()]);
}

function wire() {
  $("close-product").addEventListener("click", () => $("product").close());
  $("product").addEventListener("close", () => {
    state.current = null;
    showRecommended();
  });
  $("review").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("review-text").value.trim();
    if (!text) return;
    const rating = $("review-rating").value;
    await record("review", state.current, rating ? { text, rating: Number(rating) } : { text });
    $("review-text").value = "";
    $("review-rating").value = "";
    $("product").close();
  });
  $("add-to-cart").addEventListener("click", () => record("cart", state.current).then(() => $("product").close()));
  $("not-interested").addEventListener("click", () => record("dismiss", state.current).then(() => $("product").close()));
  $("open-data").addEventListener("click", async () => {
    $("data").showModal();
    await showData();
  });
  $("close-data").addEventListener("click", () => $("data").close());
  $("erase").addEventListener("click", eraseEverything);
  $("export").addEventListener("click", async () => {
    try {
      const text = state.rec ? await state.rec.exportHistory() : (await LocalRank.storedData()).history;
      download(text || '{"version": 1, "events": []}', "localrank-history.json");
    } catch (error) {
      showWarning(shopperMessage(error));
    }
  });
  $("search").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    if (!query) return;
    await showGrid(`Results for "${query}"`, `search:${query}`, { query });
    if (!state.rec) return;
    try {
      await state.rec.record({ kind: "search", at: Date.now(), query });
    } catch (error) {
      showWarning(shopperMessage(error));
    }
    await showRecommended();
  });
}

async function showCategories() {
  let names = [];
  try {
    const response = await fetch("/api/categories");
    names = response.ok ? await response.json() : [];
  } catch (error) {
    console.warn(`localrank store: categories: ${error.message}`);
  }
  if (!Array.isArray(names)) names = [];
  $("categories").replaceChildren(
    ...names.filter((name) => typeof name === "string").map((name) => {
      const button = Object.assign(document.createElement("button"), { type: "button", textContent: name });
      button.dataset.category = name;
      button.addEventListener("click", () => showGrid(name, `category:${name}`, { category: name }));
      return button;
    }),
  );
}

// Progress of each file localrank loads: fetch (bytes), cache, verify, compile, ready.
function onProgress({ file, phase, loaded, total }) {
  if (file === "encoder") {
    if (phase === "fetch") $("status").textContent = `Loading the store's ranking model: ${(loaded / 1e3).toFixed(0)} of ${(total / 1e3).toFixed(0)} kB`;
    return;
  }
  if (phase === "fetch" || phase === "cache") {
    document.body.dataset.modelBytes = loaded;
    $("progress").max = total || 1;
    $("progress").value = loaded;
  }
  const words = { fetch: "Downloading the model", cache: "Found the model on this device", verify: "Checking the model", compile: "Starting the model", ready: "Model ready" };
  $("status").textContent = phase === "fetch" ? `${words.fetch}: ${(loaded / 1e6).toFixed(1)} of ${(total / 1e6).toFixed(1)} MB` : `${words[phase] || phase}…`;
}

// Where the store publishes its trained ranking model, if it has one (the same answer for every
// shopper). Without one, or if asking fails, ranking is by product text only.
async function fetchStoreModel() {
  try {
    const response = await fetch("/api/store-model");
    if (!response.ok) return {};
    const { encoderUrl, encoderManifestUrl } = await response.json();
    return encoderUrl ? { encoderUrl, encoderManifestUrl } : {};
  } catch {
    return {};
  }
}

async function startRecommender() {
  try {
    const storeModel = await fetchStoreModel();
    // Not waiting for the model: on a return visit the first row is ranked from the vectors
    // this device saved while the model is still being read.
    const rec = await LocalRank.create({ modelUrl: MODEL_URL, ...storeModel, waitForModel: false, onProgress, onWarning: showWarning });
    state.rec = rec;
    document.body.dataset.restoredVectors = String(rec.info.restoredVectors);
    const firstRow = showRecommended();
    let encoder;
    try {
      ({ encoder } = await rec.modelReady);
    } catch (error) {
      // The store goes on in the server's order, as when the recommender cannot start at all.
      state.rec = null;
      rec.terminate();
      throw error;
    }
    $("progress").value = $("progress").max;
    $("status").textContent = "Ready: recommendations are computed on this device.";
    document.body.dataset.encoder = encoder ? "store" : "none";
    document.body.dataset.ready = "true";
    await firstRow;
    // The embedding workers start once the first row is shown (their files are fetched then, on
    // every visit alike, never on a shopper's action).
    state.rec.poolReady().then((working) => (document.body.dataset.workers = String(working)), () => {});
    // How many texts the first row embedded (0 when every product's vector was saved before).
    document.body.dataset.embeddedAtStart = String((await state.rec.stats()).misses);
  } catch (error) {
    $("status").textContent = `Personal recommendations are off on this device: ${startFailure(error)}. The store works as usual.`;
    document.body.dataset.ready = "failed";
  }
}

function main() {
  wire();
  // Independent of each other: no response (or its absence) holds up the recommender.
  showCategories();
  loadHome();
  startRecommender();
}

main();
