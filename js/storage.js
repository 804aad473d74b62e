// The shopper's data on this device, in IndexedDB: the saved history, any saved copy that
// could not be read (kept aside, never deleted silently, so the shopper can export or erase it),
// and the model's vectors of the history's texts (so a reload does not embed the history again;
// they mirror the history: erased with it, and dropped when their event is forgotten).
// Used by the worker (which owns the recommender) and by the page's client, so erasing and
// exporting work even when the recommender could not start.

export const DB_NAME = "localrank";
const DB_VERSION = 3;
const STATE = "state";
const SET_ASIDE = "set-aside";
const VECTORS = "vectors";
const PRODUCT_VECTORS = "product-vectors";
const HISTORY_KEY = "history";

let database = null;

/**
 * One connection per context. Version 2 added the set-aside store, version 3 the history's
 * vectors and the product vectors (a bounded cache of what ranking embedded, used most recently
 * kept).
 */
export function openDb() {
  database ||= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STATE)) db.createObjectStore(STATE);
      if (!db.objectStoreNames.contains(SET_ASIDE)) db.createObjectStore(SET_ASIDE, { autoIncrement: true });
      if (!db.objectStoreNames.contains(VECTORS)) db.createObjectStore(VECTORS);
      if (!db.objectStoreNames.contains(PRODUCT_VECTORS)) db.createObjectStore(PRODUCT_VECTORS);
    };
    request.onsuccess = () => {
      const db = request.result;
      // Another tab upgrading or deleting the database: let it, reconnect next time.
      db.onversionchange = () => {
        db.close();
        database = null;
      };
      resolve(db);
    };
    request.onerror = () => {
      database = null;
      reject(request.error);
    };
    request.onblocked = () => reject(new Error("the history store is held open by another tab"));
  });
  return database;
}

/** Runs `run(stores)` in one transaction; resolves with its result when the transaction commits. */
function transaction(names, mode, run) {
  return openDb().then(
    (db) =>
      new Promise((resolve, reject) => {
        const tx = db.transaction(names, mode);
        const stores = Object.fromEntries(names.map((name) => [name, tx.objectStore(name)]));
        const request = run(stores);
        tx.oncomplete = () => resolve(request && request.result);
        tx.onabort = tx.onerror = () => reject(tx.error || (request && request.error) || new Error("transaction aborted"));
      }),
  );
}

/** The saved history's bytes, or undefined. */
export const loadHistory = () => transaction([STATE], "readonly", (s) => s.state.get(HISTORY_KEY));

/** Saves the whole history in one put: the copy on disk is the old one or the new one, never half. */
export const saveHistory = (bytes) => transaction([STATE], "readwrite", (s) => s.state.put(bytes, HISTORY_KEY));

/** Keeps a saved copy that could not be read, with why and when, and removes it as the history. */
export const setAside = (bytes, reason) =>
  transaction([STATE, SET_ASIDE], "readwrite", (s) => {
    s["set-aside"].add({ bytes, reason, at: Date.now() });
    return s.state.delete(HISTORY_KEY);
  });

/** The copies kept aside: [{ key, reason, at, text }]. */
export async function setAsideCopies() {
  const entries = [];
  await transaction([SET_ASIDE], "readonly", (s) => {
    const request = s["set-aside"].openCursor();
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) return;
      const { bytes, reason, at } = cursor.value;
      entries.push({ key: cursor.key, reason, at, text: new TextDecoder().decode(bytes) });
      cursor.continue();
    };
    return request;
  });
  return entries;
}

/** Erases the history, every copy kept aside, the history's vectors and the product vectors. */
export const eraseAll = () =>
  transaction([STATE, SET_ASIDE, VECTORS, PRODUCT_VECTORS], "readwrite", (s) => {
    s["set-aside"].clear();
    s.vectors.clear();
    s["product-vectors"].clear();
    return s.state.delete(HISTORY_KEY);
  });

/** The stored vectors under `keys`: a Map from key to Float32Array (missing keys left out). */
export async function loadVectors(keys) {
  const found = new Map();
  await transaction([VECTORS], "readonly", (s) => {
    for (const key of keys) {
      const request = s.vectors.get(key);
      request.onsuccess = () => request.result instanceof Float32Array && found.set(key, request.result);
    }
  });
  return found;
}

/**
 * Makes the vectors store hold exactly `keep` (a Set of keys): puts `added` ([key, Float32Array]
 * pairs) and deletes every other key, in one transaction.
 */
export const syncVectors = (added, keep) =>
  transaction([VECTORS], "readwrite", (s) => {
    for (const [key, vector] of added) s.vectors.put(vector, key);
    const request = s.vectors.openKeyCursor();
    request.onsuccess = () => {
      const cursor = request.result;
      if (!cursor) return;
      if (!keep.has(cursor.key)) s.vectors.delete(cursor.key);
      cursor.continue();
    };
    return request;
  });

/** Product vectors stored under `keys` (a Map from key to Float32Array), each marked used now. */
export async function loadProductVectors(keys) {
  const found = new Map();
  const used = Date.now();
  await transaction([PRODUCT_VECTORS], "readwrite", (s) => {
    for (const key of keys) {
      const request = s["product-vectors"].get(key);
      request.onsuccess = () => {
        const entry = request.result;
        if (!entry || !(entry.vector instanceof Float32Array)) return;
        found.set(key, entry.vector);
        s["product-vectors"].put({ vector: entry.vector, used }, key);
      };
    }
  });
  return found;
}

/** Stores product vectors ([key, Float32Array] pairs); beyond `cap` the least recently used go. */
export async function saveProductVectors(entries, cap) {
  const used = Date.now();
  const count = await transaction([PRODUCT_VECTORS], "readwrite", (s) => {
    for (const [key, vector] of entries) s["product-vectors"].put({ vector, used }, key);
    return s["product-vectors"].count();
  });
  if (count <= cap) return;
  const ages = [];
  await transaction([PRODUCT_VECTORS], "readwrite", (s) => {
    const request = s["product-vectors"].openCursor();
    request.onsuccess = () => {
      const cursor = request.result;
      if (cursor) {
        ages.push([cursor.value.used, cursor.key]);
        cursor.continue();
        return;
      }
      ages.sort((a, b) => a[0] - b[0]);
      for (const [, key] of ages.slice(0, ages.length - cap)) s["product-vectors"].delete(key);
    };
    return request;
  });
}

/** How many product vectors are stored. */
export const storedProductVectorCount = () => transaction([PRODUCT_VECTORS], "readonly", (s) => s["product-vectors"].count());

/** How many vectors are stored (for tests and the data dialog). */
export const storedVectorCount = () => transaction([VECTORS], "readonly", (s) => s.vectors.count());

/** The saved history as text (for an export when the recommender is not running), or "". */
export async function savedHistoryText() {
  const bytes = await loadHistory();
  return bytes ? new TextDecoder().decode(bytes) : "";
}

/** A storage error in words for a shopper, with the browser's name for it. */
export function storageProblem(error) {
  const name = (error && error.name) || "Error";
  if (name === "QuotaExceededError") return "this device's storage for the site is full";
  return `the browser refused to store it (${name}${error && error.message ? `: ${error.message}` : ""})`;
}
