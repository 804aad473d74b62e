// Turns wasm-pack's output in pkg/ into the npm package a web team installs: adds the client
// (js/: LocalRank, its worker, the pool's helper, storage, errors, their .d.ts and the package
// README) beside the wasm and its glue, and writes package.json with the exports a bundler and a
// plain <script type="module"> both resolve. Run by scripts/build-web after wasm-pack; pkg/ is
// never edited by hand.
import { copyFileSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const PKG = join(ROOT, "pkg");
const CLIENT = join(ROOT, "js");

const generated = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));
const clientFiles = readdirSync(CLIENT).filter((f) => /\.(js|d\.ts|md)$/.test(f));
for (const file of clientFiles) copyFileSync(join(CLIENT, file), join(PKG, file));

const wasmFiles = ["localrank.js", "localrank.d.ts", "localrank_bg.wasm", "localrank_bg.wasm.d.ts"];
const manifest = {
  name: generated.name,
  version: generated.version,
  description: generated.description,
  license: generated.license,
  type: "module",
  main: "index.js",
  module: "index.js",
  types: "index.d.ts",
  exports: {
    ".": { types: "./index.d.ts", default: "./index.js" },
    // The bare wasm core (Embedder, Recommender) for pages that run their own worker.
    "./core": { types: "./localrank.d.ts", default: "./localrank.js" },
    "./localrank_bg.wasm": "./localrank_bg.wasm",
    "./worker.js": "./worker.js",
    "./package.json": "./package.json",
  },
  files: [...new Set([...wasmFiles, ...clientFiles.filter((f) => f !== "README.md")])].sort(),
  // Workers and the wasm are loaded by URL, not imported for effect: safe to tree-shake.
  sideEffects: false,
  keywords: ["recommender", "privacy", "webassembly", "embeddings", "minilm", "on-device"],
};
writeFileSync(join(PKG, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
console.error(`pkg/: ${manifest.name}@${manifest.version}, ${manifest.files.length} files`);
