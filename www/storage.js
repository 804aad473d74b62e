// The shopper's data on this device, in IndexedDB: the saved history, and any saved copy that
// could not be read (kept aside, never deleted silently, so the shopper can export or erase it).
// Used by the worker (which owns the recommender) and by the page's client, so erasing and
// exporting work even when the recommender could not start.

export const DB_NAME = "localrank";
const DB_VERSION = 2;
const STATE = "state";
const SET_ASIDE = "set-aside";
const HISTORY_KEY = "history";

let database = null;

/** One connection per context. Version 2 added the set-aside store. */
export function openDb() {
  database ||= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains(STATE)) db.createObjectStore(STATE);
      if (!db.objectStoreNames.contains(SET_ASIDE)) db.createObjectStore(SET_ASIDE, { autoIncrement: true });
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

/** Erases the history and every copy kept aside. */
export const eraseAll = () =>
  transaction([STATE, SET_ASIDE], "readwrite", (s) => {
    s["set-aside"].clear();
    return s.state.delete(HISTORY_KEY);
  });

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
