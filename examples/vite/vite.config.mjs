// The only localrank-specific line: workers as ES modules, because localrank's worker imports
// the wasm glue and starts helper workers of its own.
import { defineConfig } from "vite";

export default defineConfig({
  worker: { format: "es" },
  build: { target: "es2022" },
});
