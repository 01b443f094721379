// The public surface: on()/off() and the options as they behave, and the module, its
// declarations (src/index.d.ts, read with TypeScript's parser), README.md and the protocol's
// list of error codes (docs/protocol.md) naming the same things.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import ts from "typescript";

import * as client from "../../src/index.js";
import { ChatSocket, ChatSocketError, DEFAULTS } from "../../src/index.js";
import { fakeJwt, fakeWebSocketClass } from "./fakes.js";
import { URL_, connected, settle, setup } from "./helpers.js";

const CLIENT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const read = (path) => readFileSync(join(CLIENT, path), "utf8");

describe("on() and off()", () => {
  it("on() returns a function that removes the listener; calling it again does nothing", async () => {
    const env = setup();
    const seen = [];
    const unsubscribe = env.socket.on("message", (frame) => seen.push(frame.n));
    const ws = await connected(env);
    ws.deliver({ type: "x", n: 1 });
    unsubscribe();
    unsubscribe();
    ws.deliver({ type: "x", n: 2 });
    assert.deepEqual(seen, [1]);
    assert.deepEqual(env.messages.map((m) => m.n), [1, 2], "the other listeners stay");
  });

  it("off() removes a listener of that event only; a listener never added is no error", async () => {
    const env = setup();
    const seen = [];
    const listener = (...args) => seen.push(args[0]);
    env.socket.on("state", listener);
    env.socket.on("error", listener);
    env.socket.off("state", listener);
    env.socket.off("state", listener);
    env.socket.off("message", () => undefined);
    const ws = await connected(env);
    ws.deliver({ type: "error", code: "forbidden", message: "no", retryable: false });
    assert.deepEqual(seen.map((f) => f.code), ["forbidden"], "no state event, the error event still heard");
  });

  it("a listener added twice runs once; on() refuses an unknown event or a listener that is no function", async () => {
    const env = setup();
    let calls = 0;
    const listener = () => (calls += 1);
    env.socket.on("state", listener);
    env.socket.on("state", listener);
    await connected(env);
    assert.equal(calls, 2, "connecting and open, once each");
    assert.throws(() => env.socket.on("open", listener), /unknown event open/);
    assert.throws(() => env.socket.on("message", "not a function"), /listener must be a function/);
  });

  it("state is read-only", () => {
    const env = setup();
    assert.equal(env.socket.state, "closed");
    assert.throws(() => {
      env.socket.state = "open";
    }, TypeError);
  });
});

describe("options that are not numbers", () => {
  const { FakeWebSocket } = fakeWebSocketClass();
  const base = { url: URL_, type: "chat", bookingId: "42", token: "t", WebSocket: FakeWebSocket };

  it("proactiveRefresh, messageKey, random and clock are checked", () => {
    assert.equal(DEFAULTS.proactiveRefresh, true);
    assert.throws(() => new ChatSocket({ ...base, proactiveRefresh: "no" }), /proactiveRefresh must be true or false/);
    assert.throws(() => new ChatSocket({ ...base, messageKey: "id" }), /messageKey must be a function/);
    assert.throws(() => new ChatSocket({ ...base, random: 4 }), /random must be a function/);
    assert.throws(() => new ChatSocket({ ...base, clock: { now: () => 0 } }), /clock must have/);
    assert.doesNotThrow(() => new ChatSocket({ ...base, proactiveRefresh: false, messageKey: () => undefined, random: () => 0 }));
  });

  it("proactiveRefresh false: no auth ahead of a JWT's exp", async () => {
    const start = 1_700_000_000;
    const tokens = [fakeJwt({ exp: start + 300 }), fakeJwt({ exp: start + 3600 })];
    const env = setup({ tokens, proactiveRefresh: false, pingIntervalMs: 60 * 60 * 1000 });
    const ws = await connected(env);
    await env.clock.advance(400 * 1000);
    await settle();
    assert.deepEqual(ws.frames(), [], "no auth sent");
    assert.equal(env.tokenCalls(), 1);
  });
});

// -- the declarations, the README and the module name the same things ---------------------

const dts = ts.createSourceFile("index.d.ts", read("src/index.d.ts"), ts.ScriptTarget.ES2022, true);
const README = read("README.md");

const exported = (node) => node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);

function declaredValues() {
  const names = [];
  for (const node of dts.statements) {
    if (!exported(node)) continue;
    if (ts.isVariableStatement(node)) names.push(...node.declarationList.declarations.map((d) => d.name.text));
    else if (ts.isFunctionDeclaration(node) || ts.isClassDeclaration(node)) names.push(node.name.text);
  }
  return names.sort();
}

function declaredTypes() {
  return dts.statements
    .filter((node) => exported(node) && (ts.isInterfaceDeclaration(node) || ts.isTypeAliasDeclaration(node)))
    .map((node) => node.name.text)
    .sort();
}

function declaration(name) {
  const node = dts.statements.find((n) => n.name?.text === name);
  assert.ok(node, `${name} is declared`);
  return node;
}

/** The member names of an interface or class, without constructors. */
function members(name) {
  return declaration(name)
    .members.filter((m) => m.name)
    .map((m) => m.name.text)
    .filter((n, i, all) => all.indexOf(n) === i)
    .sort();
}

/** The string literals of a union type alias (other members, like `string & {}`, skipped). */
function literals(name) {
  const node = declaration(name);
  return node.type.types
    .filter((t) => ts.isLiteralTypeNode(t) && ts.isStringLiteral(t.literal))
    .map((t) => t.literal.text)
    .sort();
}

/** The text of a markdown section, from its heading to the next heading of its level or above. */
function section(markdown, heading) {
  const lines = markdown.split("\n");
  const start = lines.findIndex((line) => line === heading);
  assert.ok(start >= 0, `a section "${heading}"`);
  const level = heading.indexOf(" ");
  const end = lines.findIndex((line, i) => i > start && /^#+ /.test(line) && line.indexOf(" ") <= level);
  return lines.slice(start + 1, end < 0 ? undefined : end).join("\n");
}

/** The first column's `names` of the table rows in `text`. */
function tableNames(text, { where = () => true } = {}) {
  const rows = [...text.matchAll(/^\| `([A-Za-z_]+)` \|(.*)$/gm)].filter((m) => where(m[2]));
  return [...new Set(rows.map((m) => m[1]))].sort();
}

/** The `names` of a "- `name`..." bullet list. */
function bulletNames(text) {
  return [...text.matchAll(/^- `([A-Za-z]+)[`(]/gm)].map((m) => m[1]).sort();
}

describe("the declarations, the README and the module agree", () => {
  it("on the exports", () => {
    const values = Object.keys(client).sort();
    assert.deepEqual(declaredValues(), values, "index.d.ts declares what index.js exports");
    const listed = /^Everything is exported by name:([\s\S]*?)\n\n/m.exec(section(README, "## API"));
    assert.ok(listed, "the README's list of exports");
    const [valuesText, typesText] = listed[1].split("; the types are");
    const names = (text) => [...text.matchAll(/`([A-Za-z_]+)`/g)].map((m) => m[1]).sort();
    assert.deepEqual(names(valuesText), values, "the README lists every export");
    assert.deepEqual(names(typesText), declaredTypes(), "the README lists every type");
  });

  it("on the options and their defaults", () => {
    const table = section(README, "### `new ChatSocket(options)`");
    assert.deepEqual(tableNames(table), members("ChatSocketOptions"), "README's table has every option");
    assert.deepEqual(Object.keys(DEFAULTS).sort(), members("Defaults"), "Defaults declares every default");
    for (const [name, value] of Object.entries(DEFAULTS)) {
      const row = new RegExp(`^\\| \`${name}\` \\| \`([^\`]+)\``, "m").exec(table);
      assert.ok(row, `README gives ${name}'s default`);
      assert.equal(row[1], typeof value === "string" ? JSON.stringify(value) : String(value), `README: ${name}'s default`);
    }
    for (const name of Object.keys(DEFAULTS)) assert.ok(members("ChatSocketOptions").includes(name), `${name} is an option`);
  });

  it("on the events", () => {
    const events = members("ChatSocketEvents");
    assert.deepEqual(events, ["error", "message", "state"]);
    assert.deepEqual(tableNames(section(README, "### Events"), { where: (rest) => /^ `\(/.test(rest) }), events);
    const socket = new ChatSocket({ url: URL_, type: "feed", WebSocket: fakeWebSocketClass().FakeWebSocket });
    for (const event of events) assert.equal(typeof socket.on(event, () => undefined), "function", `on("${event}")`);
    const detail = section(README, "### Events").split("`detail` of the `state` event")[1];
    for (const name of members("StateDetail")) assert.match(detail, new RegExp(`\`${name}\``), `README explains detail.${name}`);
  });

  it("on the methods and properties", () => {
    const publicMembers = Object.getOwnPropertyNames(ChatSocket.prototype)
      .filter((n) => n !== "constructor" && !n.startsWith("_"))
      .sort();
    assert.deepEqual(members("ChatSocket"), publicMembers, "index.d.ts declares every public member");
    const documented = [...bulletNames(section(README, "### Properties")), ...bulletNames(section(README, "### Methods"))].sort();
    assert.deepEqual(documented, publicMembers, "README documents every public member");
    const errorTable = section(README, "### Errors").split("The client's own codes")[0];
    for (const name of members("ChatSocketError")) assert.match(errorTable, new RegExp(`\\| \`${name}(\\(\\))?\` \\|`), `README: ChatSocketError.${name}`);
    const error = new ChatSocketError("timeout", "x");
    for (const name of members("ChatSocketError")) assert.ok(name in error, `a ChatSocketError has ${name}`);
  });

  it("on the subscriptions: their members, events and subscribe()'s options", async () => {
    const env = setup({ bookingId: undefined });
    const ws = await connected(env);
    const promise = env.socket.subscribe({ bookingId: "42" });
    ws.deliver({ type: "subscribed", booking_id: "42", connection_type: "chat", ref: ws.frames()[0].id });
    const sub = await promise;
    const publicMembers = Object.getOwnPropertyNames(Object.getPrototypeOf(sub))
      .filter((n) => n !== "constructor" && !n.startsWith("_"))
      .sort();
    assert.deepEqual(members("Subscription"), publicMembers, "index.d.ts declares every member of a subscription");
    const text = section(README, "### Subscriptions");
    assert.deepEqual(bulletNames(text), publicMembers, "README documents every member of a subscription");
    const events = members("SubscriptionEvents");
    assert.deepEqual(events, ["error", "message"]);
    assert.deepEqual(tableNames(text, { where: (rest) => /^ `\(/.test(rest) }), events, "README's table of a subscription's events");
    for (const event of events) assert.equal(typeof sub.on(event, () => undefined), "function", `sub.on("${event}")`);
    const states = literals("SubscriptionState");
    for (const state of states) assert.match(text, new RegExp(`\`"${state}"\``), `README explains the state ${state}`);
    assert.ok(states.includes(sub.state));
    const signature = /^- `subscribe\(\{([^}]*)\}\)`/m.exec(section(README, "### Methods"));
    assert.ok(signature, "README shows subscribe()'s options");
    assert.deepEqual(signature[1].split(",").map((n) => n.trim()).sort(), members("SubscribeOptions"), "README: subscribe()'s options");
    const presence = members("PresenceFrame");
    for (const field of ["users", "connections", "booking_id", "connection_type"]) assert.ok(presence.includes(field), `PresenceFrame.${field}`);
  });

  it("on the error codes, the client's and the proxy's", () => {
    const clientCodes = literals("ClientErrorCode");
    const proxyCodes = literals("ProxyErrorCode");
    const errors = section(README, "### Errors");
    assert.deepEqual(tableNames(errors, { where: (rest) => /^ (yes|no) \|/.test(rest) }), clientCodes, "README's table: the client's codes");
    const proxyList = errors.split("The proxy's codes (")[1].split(")")[0];
    assert.deepEqual([...proxyList.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]).sort(), proxyCodes, "README: the proxy's codes");
    const protocol = readFileSync(join(CLIENT, "../docs/protocol.md"), "utf8");
    const tabled = tableNames(section(protocol, "## Errors"), { where: (rest) => /^ (yes|no)/.test(rest) });
    for (const code of tabled) assert.ok(proxyCodes.includes(code), `${code}, in the protocol's table, is a ProxyErrorCode`);
    // A code the client already handles may reach the protocol's table after the client:
    // until then its client section names it.
    const clientSection = section(protocol, "## The client module");
    for (const code of proxyCodes) {
      assert.ok(tabled.includes(code) || clientSection.includes(`\`${code}\``), `${code} is in the protocol's table or its client section`);
    }
    const source = read("src/index.js");
    const made = [...source.matchAll(/new ChatSocketError\("([a-z_]+)"/g)].map((m) => m[1]);
    for (const code of made) assert.ok(clientCodes.includes(code) || proxyCodes.includes(code), `${code} is a declared code`);
    for (const code of clientCodes) assert.match(source, new RegExp(`"${code}"`), `index.js makes ${code}`);
  });
});
