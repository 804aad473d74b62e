// A small W3C WebDriver client, for the engines Playwright cannot drive here: Debian's Firefox
// ESR (geckodriver) and WebKitGTK, the engine of Safari (WebKitWebDriver, on an Xvfb display).
// Playwright only drives its own patched Firefox and WebKit builds, which are downloads.
import { spawn, execFileSync } from "node:child_process";

const which = (command) => {
  try {
    return execFileSync("sh", ["-c", `command -v ${command}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
};

/** The engines this machine can drive: [{ name, driver, capabilities, display? }]. */
export function availableEngines() {
  const engines = [];
  const gecko = process.env.GECKODRIVER || which("geckodriver");
  const firefox = which("firefox-esr") || which("firefox");
  if (gecko && firefox) {
    engines.push({ name: "Firefox", driver: gecko, capabilities: { browserName: "firefox", "moz:firefoxOptions": { binary: firefox, args: ["-headless"] } } });
  }
  const webkit = process.env.WEBKITWEBDRIVER || which("WebKitWebDriver");
  if (webkit && which("Xvfb")) engines.push({ name: "WebKit", driver: webkit, capabilities: {}, display: true });
  return engines;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Starts the engine's driver (and an Xvfb display for WebKit) and a session; `close()` ends all. */
export async function openSession(engine) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const children = [];
  const env = { ...process.env };
  if (engine.display) {
    const display = `:${100 + (process.pid % 400)}`;
    children.push(spawn("Xvfb", [display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"], { stdio: "ignore" }));
    env.DISPLAY = display;
    await sleep(500);
  }
  children.push(spawn(engine.driver, [`--port=${port}`], { stdio: "ignore", env }));
  const base = `http://127.0.0.1:${port}`;
  const call = async (method, path, body) => {
    const response = await fetch(`${base}${path}`, { method, headers: { "content-type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await response.json();
    if (!response.ok || (json.value && json.value.error)) throw new Error(`${engine.name} WebDriver ${method} ${path}: ${JSON.stringify(json.value)}`);
    return json.value;
  };
  let session;
  for (let attempt = 0; ; attempt++) {
    try {
      session = await call("POST", "/session", { capabilities: { alwaysMatch: engine.capabilities } });
      break;
    } catch (error) {
      if (attempt > 40) throw error;
      await sleep(250);
    }
  }
  const id = session.sessionId;
  return {
    version: `${session.capabilities.browserName} ${session.capabilities.browserVersion}`,
    goto: (url) => call("POST", `/session/${id}/url`, { url }),
    /** Runs `script` (a function body; `arguments[0..]` are `args`, the last is the callback). */
    evaluateAsync: async (script, ...args) => {
      await call("POST", `/session/${id}/timeouts`, { script: 180_000 });
      return call("POST", `/session/${id}/execute/async`, { script, args });
    },
    evaluate: (script, ...args) => call("POST", `/session/${id}/execute/sync`, { script, args }),
    /**
     * Polls `script` (returning a truthy value when done) until it is, or throws after `timeout`.
     * WebKit's driver now and then answers a poll with "Could not parse script result" (seen once
     * in a fresh-clone CI run, on `dialog.open`, not reproduced in three reruns): such a poll
     * counts as "not yet", and the timeout still bounds the wait.
     */
    async waitFor(script, timeout = 120_000) {
      const started = Date.now();
      for (;;) {
        let value;
        try {
          value = await call("POST", `/session/${id}/execute/sync`, { script, args: [] });
        } catch (error) {
          if (!String(error.message).includes("Could not parse script result") || Date.now() - started > timeout) throw error;
        }
        if (value) return value;
        if (Date.now() - started > timeout) throw new Error(`${engine.name}: timed out waiting for ${script}`);
        await sleep(200);
      }
    },
    async close() {
      await call("DELETE", `/session/${id}`).catch(() => {});
      for (const child of children.reverse()) child.kill();
    },
  };
}
