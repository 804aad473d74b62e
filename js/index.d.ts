// Types of localrank's browser client (index.js). The records (Candidate, ShopperEvent, Ranked,
// RankOptions, ...) are the wasm core's own, declared once in src/wasm.rs and generated into
// localrank.d.ts; a test feeds every documented shape through the boundary.
import type { ShopperEvent, Ranked, RankOptions } from "./localrank.js";

export type {
  Candidate,
  ShopperEvent,
  EventKind,
  Reason,
  Ranked,
  RankOptions,
  RankContext,
  AdmittedRanking,
  ImportReport,
} from "./localrank.js";

/** The stable names of a `LocalRankError`, each with what it means. */
export declare const ERROR_NAMES: Readonly<{
  ModelFetch: string;
  ModelChecksum: string;
  ModelFormat: string;
  EncoderFormat: string;
  InvalidRecord: string;
  Tokenizer: string;
  Inference: string;
  SavedState: string;
  Storage: string;
  Quota: string;
  NotReady: string;
  WorkerFailed: string;
  Terminated: string;
  Internal: string;
}>;

export type LocalRankErrorName = keyof typeof ERROR_NAMES;

/** Every failure localrank reports. Branch on `name`; `message` is for people. */
export declare class LocalRankError extends Error {
  constructor(name: LocalRankErrorName, message: string, details?: { field?: string; cause?: unknown });
  readonly name: LocalRankErrorName;
  /** For `InvalidRecord`: the record and field, e.g. `candidates[3].title`. */
  readonly field?: string;
  toPlain(): { name: LocalRankErrorName; message: string; field?: string };
  static from(error: unknown): LocalRankError;
  /** An IndexedDB failure as `Quota` (storage full) or `Storage`. */
  static storage(message: string, cause: unknown): LocalRankError;
}

/** Which file is loading and where it is: fetch (bytes arriving), cache (found on the device),
 *  verify (sha256 against the manifest), compile (wasm and model), ready. */
export interface ProgressEvent {
  file: "model" | "encoder";
  phase: "fetch" | "cache" | "verify" | "compile" | "ready";
  loaded: number;
  total: number;
}

export interface CreateOptions {
  /** The GGUF model (`localrank convert`'s output, e.g. all-MiniLM-L6-v2.q8_0.gguf). */
  modelUrl: string | URL;
  /** The manifest with the model's sha256; default: manifest.json beside the model. */
  manifestUrl?: string | URL;
  /** The store's sequence encoder (`localrank train`'s encoder.gguf); optional. */
  encoderUrl?: string | URL;
  /** Its checksum summary; default: train.json beside the encoder. */
  encoderManifestUrl?: string | URL;
  /** Workers that embed (each a wasm instance with the model): default one per core, at most 4. */
  workers?: number;
  /** This package's worker.js, if not served beside index.js. */
  workerUrl?: string | URL;
  /** This package's embed-worker.js (the pool's helper), if not served beside worker.js. */
  embedWorkerUrl?: string | URL;
  /** This package's localrank_bg.wasm, if not served beside localrank.js. */
  wasmUrl?: string | URL;
  /**
   * Default true: the wasm is compiled on the page while the worker starts (about 80 ms sooner
   * ready). Set false on a page whose CSP does not allow 'wasm-unsafe-eval'; the worker then
   * compiles it (as it also does when compiling here fails).
   */
  compileOnPage?: boolean;
  /**
   * Default true. With false, `create()` resolves once the saved history and the vectors this
   * device kept are read, before the model has loaded: a returning shopper's first row is
   * ranked from them at once; rankings that need a text embedded wait for `modelReady`.
   */
  waitForModel?: boolean;
  onProgress?: (event: ProgressEvent) => void;
  /** Something went wrong that did not stop localrank (a product left out, a cache refused). */
  onWarning?: (message: string) => void;
}

export interface Info {
  modelId: string;
  sha256: string;
  /** The store's encoder in use, or null (ranking by text and the server's order). */
  encoder: { sha256: string; dim: number } | null;
  /** Events restored from this device. */
  events: number;
  /** History vectors restored from this device (not embedded again). */
  restoredVectors: number;
  /** Workers asked for (the main worker and its helpers). */
  workers: number;
  /** Whether the model was attached when `create()` resolved (false only with `waitForModel: false`). */
  modelLoaded: boolean;
  /**
   * When each step of the start finished, in ms after `create()` was called (the steps overlap:
   * points in time, not durations). A step that did not run is absent.
   */
  startup: StartupTimes;
}

export interface StartupTimes {
  /** The worker's module began running (its files fetched and compiled). */
  workerScript: number;
  /** The worker received the start message. */
  initCalled: number;
  /** The model manifest was read. */
  manifest: number;
  /** The wasm was compiled and instantiated. */
  wasm: number;
  /** The model file was read and checked (absent when that finished after `create()` answered). */
  modelRead?: number;
  /** The model was attached (`waitForModel: true` only). */
  model?: number;
  /** The saved history was read. */
  history: number;
  /** The history's saved vectors were read. */
  historyVectors: number;
  /** The store encoder was read and checked (or found unusable, or none was given). */
  encoder: number;
  /** `create()`'s answer was sent. */
  ready: number;
}

export interface StoredData {
  /** The saved history as JSON text ("" when there is none). */
  history: string;
  /** Saved copies that could not be read, kept aside for the shopper. */
  setAside: SetAsideCopy[];
}

export interface SetAsideCopy {
  key: number;
  reason: string;
  at: number;
  text: string;
}

export declare class LocalRank {
  /** Starts the workers and loads the model and the saved history. */
  static create(options: CreateOptions): Promise<LocalRank>;
  /** What is stored on this device, readable without a running recommender. */
  static storedData(): Promise<StoredData>;
  /** Erases everything stored on this device, without a running recommender. */
  static eraseStoredData(): Promise<void>;
  /** The server's order, exactly as localrank ranks for an empty history; needs nothing loaded. */
  static serverOrder(candidates: unknown[], options?: { limit?: number }): Ranked[];

  readonly info: Info;
  /** Settles when the model is attached: the store encoder in use (or null). Rejects with the model's failure. */
  readonly modelReady: Promise<{ encoder: { sha256: string; dim: number } | null }>;

  /** `now`: the server's order at once; `personalised`: the re-ranked order when ready. */
  rerankProgressively(candidates: unknown[], options?: RankOptions): { now: Ranked[]; personalised: Promise<Ranked[]> };
  /** Re-ranks the server's candidates for this shopper; unusable candidates are left out. */
  rerank(candidates: unknown[], options?: RankOptions): Promise<Ranked[]>;
  /** The model's vectors of `texts`: texts.length rows of 384, row-major, each L2-normalised. */
  embed(texts: string[]): Promise<Float32Array>;
  /** Resolves when every embedding worker has started or given up: how many are working. */
  poolReady(): Promise<number>;
  record(event: ShopperEvent): Promise<void>;
  history(): Promise<ShopperEvent[]>;
  /** Removes every event about a product; resolves to how many. */
  forget(itemId: string): Promise<number>;
  /**
   * Erases the history on this device, any copy kept aside, and the products' vectors (on disk
   * and in memory; only the store encoder's probe sentence's vector is kept).
   */
  clear(): Promise<void>;
  exportHistory(): Promise<string>;
  setAside(): Promise<SetAsideCopy[]>;
  /** Cache hits and misses since start, the history vectors kept on the device, and the main
   *  worker's wasm memory in bytes (its peak so far). */
  stats(): Promise<{ hits: number; misses: number; storedVectors: number; memoryBytes: number }>;
  /** Stops every worker; later calls reject with `Terminated`. */
  close(): Promise<void>;
  /** Stops at once. */
  terminate(): void;
}
