// Drives the dashboard in headless Chromium over the DevTools protocol (no npm packages: node's
// WebSocket, behind --experimental-websocket on node 20). Usage: node dashboard.mjs BASE KEY SKU
// EXPECTED. Types the key and the SKU, clicks Connect, waits for the availability number.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [base, key, sku, expected] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "conductor-chromium-"));
const chromium = spawn(process.env.CHROMIUM || "chromium", [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
  "--disable-dev-shm-usage", "--remote-debugging-port=0", `--user-data-dir=${profile}`, "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });
chromium.stderr.on("data", () => {});
const fail = (message) => { console.error("dashboard test: " + message); chromium.kill("SIGKILL"); process.exit(1); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
setTimeout(() => fail("timed out"), 60000);

let port;
for (let i = 0; i < 200 && !port; i++) {
  const file = join(profile, "DevToolsActivePort");
  if (existsSync(file)) port = readFileSync(file, "utf8").split("\n")[0];
  else await sleep(100);
}
if (!port) fail("chromium did not open its debugging port");
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const page = targets.find((t) => t.type === "page");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
let next = 1;
const waiting = new Map();
ws.onmessage = (m) => {
  const msg = JSON.parse(m.data);
  if (msg.id && waiting.has(msg.id)) { waiting.get(msg.id)(msg); waiting.delete(msg.id); }
};
const send = (method, params = {}) => new Promise((resolve) => {
  const id = next++; waiting.set(id, resolve); ws.send(JSON.stringify({ id, method, params }));
});
const evaluate = async (expression) => {
  const r = await send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
  return r.result && r.result.result ? r.result.result.value : undefined;
};

await send("Page.enable");
await send("Page.navigate", { url: base + "/" });
for (let i = 0; i < 100 && (await evaluate("document.readyState")) !== "complete"; i++) await sleep(50);
// Type into the inputs as a person would, then click.
await evaluate(`document.getElementById("key").focus()`);
await send("Input.insertText", { text: key });
await evaluate(`document.getElementById("skus").focus()`);
await send("Input.insertText", { text: sku });
await evaluate(`document.getElementById("connect").click()`);

let seen;
for (let i = 0; i < 200; i++) {
  seen = await evaluate(`(document.querySelector('#avail-${sku} .available') || {}).textContent`);
  if (seen === expected) break;
  await sleep(50);
}
if (seen !== expected) fail(`availability shows ${seen}, expected ${expected}; status: ${await evaluate('document.getElementById("status").textContent')}`);
const map = await evaluate(`document.querySelectorAll("#map circle").length`);
if (!(map >= 1)) fail("the network map has no stock points");
const stored = await evaluate(`localStorage.getItem("conductor.key")`);
if (stored !== key) fail("the key was not kept in localStorage");
// A change made over the API arrives through the stream.
if (process.argv[6]) {
  await fetch(base + "/v1/reservations", { method: "POST", headers: { Authorization: "Bearer " + key, "content-type": "application/json" },
    body: JSON.stringify({ channel: "web", lines: [{ sku, qty: 1 }] }) }).then((r) => { if (r.status !== 201) fail("reserve " + r.status); });
  for (let i = 0; i < 200; i++) {
    seen = await evaluate(`(document.querySelector('#avail-${sku} .available') || {}).textContent`);
    if (seen === process.argv[6]) break;
    await sleep(50);
  }
  if (seen !== process.argv[6]) fail(`after a hold the page shows ${seen}, expected ${process.argv[6]}`);
}
console.log("dashboard ok: availability " + seen + ", " + map + " stock points on the map");
ws.close();
chromium.kill("SIGKILL");
try { rmSync(profile, { recursive: true, force: true }); } catch {}
process.exit(0);
