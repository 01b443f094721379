// The module outside this repository, each way client/README.md describes: the tarball of
// `npm pack` installed offline into a scratch project, an install from the checkout's path,
// and a copy of the one file. Each is imported by Node (ESM, and import() from CommonJS) and
// type-checked by TypeScript. npm gets a registry on a closed loopback port and an empty
// cache: an install that needed the registry would fail.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { copyFileSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

const CLIENT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const TSC = join(CLIENT, "node_modules/typescript/bin/tsc");
const EXPORTS = ["ChatSocket", "ChatSocketError", "DEFAULTS", "MAX_FRAME_BYTES", "jwtExpiry"];

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

/** A new project directory with a package.json that has no "type" (.mjs is ESM, .cjs CommonJS). */
function scratchProject(name) {
  const dir = join(tmp, name);
  mkdirSync(dir);
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name, version: "1.0.0", private: true }, null, 2));
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
    const dir = scratchProject("from-copy");
    mkdirSync(join(dir, "vendor"));
    copyFileSync(join(CLIENT, "src/index.js"), join(dir, "vendor/ws-proxy-client.mjs"));
    copyFileSync(join(CLIENT, "src/index.d.ts"), join(dir, "vendor/ws-proxy-client.d.mts"));
    writeChecks(dir, "./vendor/ws-proxy-client.mjs");
    assertWorks(dir);
  });

  it("the checks fail when the module is missing (they can fail)", () => {
    const dir = scratchProject("without-module");
    writeChecks(dir, "@ws-proxy/client");
    assert.throws(() => assertWorks(dir), /Cannot find package '@ws-proxy\/client'/);
  });
});
