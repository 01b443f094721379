// The module outside this repository, each way client/README.md describes: the tarball of
// `npm pack` installed offline into a scratch project, an install from the checkout's path,
// and a copy of the one file. Each is imported by Node (ESM, and import() from CommonJS) and
// type-checked by TypeScript; the installed tarball and the copy also run in a page in
// Chromium. npm gets a registry on a closed loopback port and an empty cache: an install
// that needed the registry would fail.
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { WebSocketServer } from "ws";

const CLIENT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TSC = join(CLIENT, "node_modules/typescript/bin/tsc");
const EXPORTS = ["ChatSocket", "ChatSocketError", "DEFAULTS", "MAX_FRAME_BYTES", "jwtExpiry"];
const CHROMIUM = "/usr/bin/chromium";

let tmp;
let npmEnv;

function run(command, args, cwd, env = process.env) {
  try {
    return execFileSync(command, args, { cwd, env, encoding: "utf8", timeout: 120_000, stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    throw new Error(`${command} ${args.join(" ")} failed in ${cwd}:\n${err.stdout ?? ""}${err.stderr ?? ""}`, { cause: err });
  }
}

function npm(args, cwd) {
  return run("npm", args, cwd, npmEnv);
}

/** A new project directory; its package.json has no "type" unless given (.mjs is ESM, .cjs CommonJS either way). */
function scratchProject(name, type) {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true, ...(type ? { type } : {}) }, null, 2));
  return dir;
}

/**
 * Scripts that load the module by `spec` and drive it a little: a feed socket on a fake
 * WebSocket opens, sends, closes. Each prints what it saw as JSON.
 */
function writeChecks(dir, spec) {
  const body = `
  const names = Object.keys(mod).sort();
  class FakeWebSocket {
    constructor(url) { this.url = url; this.readyState = 0; this.sent = []; this.listeners = {}; FakeWebSocket.last = this; }
    addEventListener(type, fn) { (this.listeners[type] ??= []).push(fn); }
    send(data) { this.sent.push(data); }
    close() { this.readyState = 3; }
  }
  const socket = new mod.ChatSocket({ url: "ws://127.0.0.1:9/development", type: "feed", WebSocket: FakeWebSocket });
  const states = [];
  const unsubscribe = socket.on("state", (state) => states.push(state));
  const opened = socket.connect();
  await new Promise((r) => setTimeout(r, 0));
  FakeWebSocket.last.readyState = 1;
  for (const fn of FakeWebSocket.last.listeners.open ?? []) fn({});
  await opened;
  socket.send({ type: "latest" });
  unsubscribe();
  socket.close();
  const error = new mod.ChatSocketError("timeout", "x", { retryable: true });
  console.log(JSON.stringify({
    names,
    url: FakeWebSocket.last.url,
    sent: FakeWebSocket.last.sent,
    states,
    state: socket.state,
    error: error instanceof Error && error.toFrame(),
    maxFrameBytes: mod.MAX_FRAME_BYTES,
  }));`;
  writeFileSync(join(dir, "check.mjs"), `const mod = await import(${JSON.stringify(spec)});\n${body}\n`);
  writeFileSync(join(dir, "check.cjs"), `(async () => {\n  const mod = await import(${JSON.stringify(spec)});\n${body}\n})();\n`);
  writeFileSync(
    join(dir, "check.mts"),
    `import { ChatSocket, ChatSocketError, DEFAULTS, type ChatSocketOptions, type ErrorFrame, type Frame, type SocketState } from ${JSON.stringify(spec)};

const options: ChatSocketOptions = { url: "ws://127.0.0.1:9/development", type: "chat", bookingId: "42", token: async () => "jwt" };
const socket = new ChatSocket(options);
const unsubscribe: () => void = socket.on("message", (frame: Frame) => void frame.type);
socket.on("state", (state: SocketState, detail) => void [state, detail.phase]);
socket.on("error", (frame: ErrorFrame) => void [frame.code, frame.retryable]);
unsubscribe();
const state: SocketState = socket.state;
const reply: Promise<Frame> = socket.request({ body: "hi" });
const failed = (err: unknown): string | undefined => (err instanceof ChatSocketError ? err.code : undefined);
// @ts-expect-error: not an event of the module
socket.on("opened", () => undefined);
// @ts-expect-error: the type is one of four
new ChatSocket({ url: "ws://127.0.0.1:9/development", type: "group" });
export { state, reply, failed, DEFAULTS };
`,
  );
  for (const [resolution, module] of [
    ["node16", "node16"],
    ["nodenext", "nodenext"],
    ["bundler", "esnext"],
  ]) {
    const compilerOptions = { target: "ES2022", module, moduleResolution: resolution, lib: ["ES2022"], strict: true, noEmit: true, types: [] };
    writeFileSync(join(dir, `tsconfig.${resolution}.json`), JSON.stringify({ compilerOptions, files: ["check.mts"] }, null, 2));
  }
}

/** Run the checks of `dir` and assert what they saw; the resolved module file is returned. */
function assertWorks(dir) {
  for (const script of ["check.mjs", "check.cjs"]) {
    const seen = JSON.parse(run(process.execPath, [script], dir));
    assert.deepEqual(seen.names, EXPORTS, `${script}: the exports`);
    assert.equal(seen.url, "ws://127.0.0.1:9/development?type=feed", `${script}: the connect URL`);
    assert.deepEqual(seen.sent, ['{"type":"latest"}'], `${script}: a frame sent`);
    assert.deepEqual(seen.states, ["connecting", "open"], `${script}: the state events`);
    assert.equal(seen.state, "closed");
    assert.deepEqual(seen.error, { type: "error", code: "timeout", message: "x", retryable: true, source: "client" });
    assert.equal(seen.maxFrameBytes, 128 * 1024);
  }
  for (const resolution of ["node16", "nodenext", "bundler"]) run(process.execPath, [TSC, "-p", `tsconfig.${resolution}.json`], dir);
}

/**
 * Serve `dir` to Chromium on loopback with a page that connects through the installed
 * package and through the copy to a WebSocket server here (the browser's own WebSocket);
 * the page posts what it saw. Bounded: Chromium is stopped after 60 s at most.
 */
async function inChromium(dir) {
  const handshakes = [];
  let report;
  const reported = new Promise((resolveReport) => (report = resolveReport));
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://127.0.0.1").pathname;
    if (req.method === "POST" && path === "/result") {
      let body = "";
      req.setEncoding("utf8");
      req.on("data", (chunk) => (body += chunk));
      req.on("end", () => {
        res.end("ok");
        report(JSON.parse(body));
      });
      return;
    }
    const files = {
      "/": ["page.html", "text/html"],
      "/node_modules/@ws-proxy/client/src/index.js": ["node_modules/@ws-proxy/client/src/index.js", "text/javascript"],
      "/vendor/ws-proxy-client.js": ["vendor/ws-proxy-client.js", "text/javascript"],
    };
    const file = files[path];
    if (!file) {
      res.statusCode = 404;
      res.end();
      return;
    }
    res.setHeader("Content-Type", file[1]);
    res.end(readFileSync(join(dir, file[0])));
  });
  const wss = new WebSocketServer({ server });
  wss.on("connection", (ws, req) => {
    handshakes.push(req.url);
    ws.send(JSON.stringify({ type: "hello" }));
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data));
      if (frame.id !== undefined) ws.send(JSON.stringify({ type: "echo", ref: frame.id, got: frame }));
    });
  });
  await new Promise((resolveListen) => server.listen(0, "127.0.0.1", resolveListen));
  const origin = `http://127.0.0.1:${server.address().port}`;
  writeFileSync(
    join(dir, "page.html"),
    `<!doctype html>
<script type="importmap">{"imports": {"@ws-proxy/client": "/node_modules/@ws-proxy/client/src/index.js"}}</script>
<script type="module" onerror="fetch('/result', { method: 'POST', body: JSON.stringify({ error: 'a module did not load' }) })">
  import { ChatSocket } from "@ws-proxy/client";
  import * as copy from "/vendor/ws-proxy-client.js";
  const seen = {};
  try {
    for (const [way, Socket] of [["installed", ChatSocket], ["copy", copy.ChatSocket]]) {
      const socket = new Socket({ url: "ws://127.0.0.1:${server.address().port}/development", bookingId: way, token: async () => "token-" + way });
      const frames = [];
      const states = [];
      socket.on("message", (frame) => frames.push(frame.type));
      socket.on("state", (state) => states.push(state));
      await socket.connect();
      const reply = await socket.request({ body: "hi from " + way });
      socket.close();
      seen[way] = { frames, states, reply };
    }
  } catch (err) {
    seen.error = String(err && err.stack || err);
  }
  await fetch("/result", { method: "POST", body: JSON.stringify(seen) });
</script>
`,
  );
  const profile = mkdtempSync(join(tmp, "chromium-"));
  const args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", `--user-data-dir=${profile}`, `${origin}/`];
  const browser = spawn(CHROMIUM, args, { stdio: "ignore", detached: true });
  const exited = new Promise((resolveExit) => browser.on("exit", resolveExit));
  let timer;
  try {
    const timeout = new Promise((_, rejectTimeout) => {
      timer = setTimeout(() => rejectTimeout(new Error("the page reported nothing within 60 s")), 60_000);
    });
    const seen = await Promise.race([reported, timeout, exited.then(() => Promise.reject(new Error("Chromium exited")))]);
    return { ...seen, handshakes };
  } finally {
    clearTimeout(timer);
    if (browser.exitCode === null && browser.signalCode === null) {
      process.kill(-browser.pid, "SIGTERM"); // Chromium and the processes it started
      const killer = setTimeout(() => process.kill(-browser.pid, "SIGKILL"), 10_000);
      await exited;
      clearTimeout(killer);
    }
    for (const client of wss.clients) client.terminate();
    wss.close();
    await new Promise((resolveClose) => server.close(resolveClose));
  }
}

/** The file Node loads for `spec` from `dir`. */
function resolvedFrom(dir, spec) {
  const out = run(process.execPath, ["--input-type=module", "-e", `console.log(import.meta.resolve(${JSON.stringify(spec)}))`], dir);
  return realpathSync(fileURLToPath(out.trim()));
}

describe("the package outside this repository", () => {
  let packed;

  before(() => {
    tmp = realpathSync(mkdtempSync(join(tmpdir(), "ws-proxy-client-package-")));
    npmEnv = {
      ...process.env,
      npm_config_registry: "http://127.0.0.1:9/",
      npm_config_cache: join(tmp, "npm-cache"),
      npm_config_update_notifier: "false",
      npm_config_loglevel: "error",
    };
    mkdirSync(join(tmp, "pack"));
    const [result] = JSON.parse(npm(["pack", "--json", "--pack-destination", join(tmp, "pack")], CLIENT));
    packed = { ...result, tarball: join(tmp, "pack", result.filename) };
  });

  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it("npm pack holds the module, its declarations, package.json and the README: nothing else", () => {
    assert.equal(packed.name, "@ws-proxy/client");
    assert.deepEqual(packed.files.map((f) => f.path).sort(), ["README.md", "package.json", "src/index.d.ts", "src/index.js"]);
    const manifest = JSON.parse(readFileSync(join(CLIENT, "package.json"), "utf8"));
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies", "bundleDependencies"]) {
      assert.equal(manifest[field], undefined, `no ${field}: nothing to fetch at install`);
    }
    assert.deepEqual(Object.keys(manifest.scripts).filter((s) => /^(pre|post)?(install|pack|prepare)$/.test(s)), [], "no install scripts");
    const shipped = new Set(packed.files.map((f) => `./${f.path}`));
    for (const target of [manifest.main, manifest.types, manifest.exports["."].types, manifest.exports["."].default]) {
      assert.ok(shipped.has(target), `${target} is in the tarball`);
    }
  });

  it("the tarball installs offline into a scratch project and works from there", () => {
    const dir = scratchProject("from-tarball");
    npm(["install", "--offline", "--no-audit", "--no-fund", packed.tarball], dir);
    const installed = join(dir, "node_modules/@ws-proxy/client");
    assert.ok(lstatSync(installed).isDirectory(), "a copy in node_modules, not a link");
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    assert.match(manifest.dependencies["@ws-proxy/client"], /^file:.*\.tgz$/);
    writeChecks(dir, "@ws-proxy/client");
    assertWorks(dir);
    assert.equal(resolvedFrom(dir, "@ws-proxy/client"), join(installed, "src/index.js"), "the installed copy, not the checkout");
  });

  it("an install from the checkout's path links it and works the same", () => {
    const dir = scratchProject("from-path");
    npm(["install", "--offline", "--no-audit", "--no-fund", CLIENT], dir);
    assert.ok(lstatSync(join(dir, "node_modules/@ws-proxy/client")).isSymbolicLink(), "a link to the checkout");
    writeChecks(dir, "@ws-proxy/client");
    assertWorks(dir);
    assert.equal(resolvedFrom(dir, "@ws-proxy/client"), join(realpathSync(CLIENT), "src/index.js"));
  });

  it("a copy of the one file (and its declarations beside it) works without any install", () => {
    const dir = scratchProject("from-copy", "module");
    mkdirSync(join(dir, "vendor"));
    copyFileSync(join(CLIENT, "src/index.js"), join(dir, "vendor/ws-proxy-client.js"));
    copyFileSync(join(CLIENT, "src/index.d.ts"), join(dir, "vendor/ws-proxy-client.d.ts"));
    writeChecks(dir, "./vendor/ws-proxy-client.js");
    assertWorks(dir);
  });

  it("a copy named .mjs and .d.mts works in a package that is not \"type\": \"module\"", () => {
    const dir = scratchProject("from-copy-mjs");
    mkdirSync(join(dir, "vendor"));
    copyFileSync(join(CLIENT, "src/index.js"), join(dir, "vendor/ws-proxy-client.mjs"));
    copyFileSync(join(CLIENT, "src/index.d.ts"), join(dir, "vendor/ws-proxy-client.d.mts"));
    writeChecks(dir, "./vendor/ws-proxy-client.mjs");
    assertWorks(dir);
  });

  it("in Chromium, a page loads the installed tarball (an import map) and the copied file, and each chats", { skip: existsSync(CHROMIUM) ? false : `${CHROMIUM} is missing` }, async () => {
    const dir = scratchProject("in-browser", "module");
    npm(["install", "--offline", "--no-audit", "--no-fund", packed.tarball], dir);
    mkdirSync(join(dir, "vendor"));
    copyFileSync(join(CLIENT, "src/index.js"), join(dir, "vendor/ws-proxy-client.js"));
    const seen = await inChromium(dir);
    assert.equal(seen.error, undefined, seen.error);
    for (const way of ["installed", "copy"]) {
      assert.deepEqual(seen[way].states, ["connecting", "open", "closed"], `${way}: the states`);
      assert.deepEqual(seen[way].frames, ["hello", "echo"], `${way}: the frames`);
      assert.equal(seen[way].reply.got.body, `hi from ${way}`, `${way}: request() resolved with the answer`);
    }
    assert.deepEqual(seen.handshakes, [
      "/development?type=chat&booking_id=installed&token=token-installed",
      "/development?type=chat&booking_id=copy&token=token-copy",
    ]);
  });

  it("the checks fail when the module is missing (they can fail)", () => {
    const dir = scratchProject("without-module");
    writeChecks(dir, "@ws-proxy/client");
    assert.throws(() => assertWorks(dir), /Cannot find package '@ws-proxy\/client'/);
  });
});
