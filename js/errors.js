// localrank's one error type on the page. Failures happen in the wasm core, in the worker (a
// download, a checksum, IndexedDB) or in the workers themselves; they cross postMessage as plain
// `{ name, message, field? }` and reach the page as a `LocalRankError` whose `name` is stable,
// so a store's code branches on the name, never on the wording of the message.

/** Every name a `LocalRankError` can have, and what it means. */
export const ERROR_NAMES = Object.freeze({
  ModelFetch: "a file (model, manifest, encoder) could not be downloaded",
  ModelChecksum: "a downloaded file did not match its checksum, twice",
  ModelFormat: "the model file is not one localrank can run",
  EncoderFormat: "the store's encoder file is not one localrank can run",
  InvalidRecord: "a record (candidate, event, options) is malformed; `field` names it",
  Tokenizer: "a text could not be tokenized",
  Inference: "the model failed on a text (a bug, or a corrupt model)",
  SavedState: "a saved history could not be read",
  Storage: "the browser refused to store or read the history (IndexedDB)",
  Quota: "the device's storage for the site is full",
  NotReady: "a call came before `create()` finished",
  WorkerFailed: "a worker died or could not start",
  Terminated: "the recommender was closed",
  Internal: "anything else: a bug in localrank",
});

export class LocalRankError extends Error {
  /**
   * @param {keyof typeof ERROR_NAMES} name a stable name (see ERROR_NAMES)
   * @param {string} message what went wrong and, where known, what to do
   * @param {{ field?: string, cause?: unknown }} [details] `field`: the record and field of an
   *   `InvalidRecord` (`candidates[3].title`)
   */
  constructor(name, message, { field, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = name in ERROR_NAMES ? name : "Internal";
    if (field !== undefined) this.field = field;
  }

  /** An IndexedDB failure (`cause`) as a `Quota` error (storage full) or a `Storage` error. */
  static storage(message, cause) {
    return new LocalRankError(cause && cause.name === "QuotaExceededError" ? "Quota" : "Storage", message, { cause });
  }

  /** The plain shape that crosses postMessage. */
  toPlain() {
    return this.field === undefined ? { name: this.name, message: this.message } : { name: this.name, message: this.message, field: this.field };
  }

  /** Anything thrown (a LocalRankError, a wasm error with a name, a DOMException, a string) as a LocalRankError. */
  static from(error) {
    if (error instanceof LocalRankError) return error;
    if (error && typeof error === "object" && typeof error.name === "string" && error.name in ERROR_NAMES) {
      return new LocalRankError(error.name, String(error.message), { field: typeof error.field === "string" ? error.field : undefined });
    }
    if (error && error.name === "QuotaExceededError") return new LocalRankError("Quota", String(error.message), { cause: error });
    const message = error instanceof Error ? error.message : String(error);
    return new LocalRankError("Internal", message, { cause: error });
  }
}
