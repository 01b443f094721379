// The local stack (python -m local_gateway) as a child process on loopback ports, for the
// integration tests; development tokens; bounded waits.
import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { createServer } from "node:net";
import { createHmac, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { WebSocket } from "ws";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const PYTHON = process.env.WS_PROXY_PYTHON || join(ROOT, ".venv/bin/python");

export function pythonAvailable() {
  return existsSync(PYTHON);
}

/** Whether `port` can be listened on at 127.0.0.1 now. */
function portFree(port) {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once("error", () => resolvePort(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolvePort(true)));
  });
}

/**
 * Three free ports below the kernel's ephemeral range, for a stack that is restarted on the
 * ports it had ({gateway, backend, dynamodb}). A port the kernel hands out (port 0) may be
 * handed to another test's socket while the stack is down; one below that range is not.
 */
export async function quietPorts() {
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the common default
  }
  const ports = [];
  for (let tries = 0; ports.length < 3 && tries < 1000; tries++) {
    const port = 10_000 + Math.floor(Math.random() * (low - 10_000));
    if (!ports.includes(port) && (await portFree(port))) ports.push(port);
  }
  if (ports.length < 3) throw new Error("no three free ports below the ephemeral range");
  const [gateway, backend, dynamodb] = ports;
  return { gateway, backend, dynamodb };
}

export class Stack {
  /**
   * Start `python -m local_gateway` with `args`; on free ports unless `ports` gives them
   * ({gateway, backend, dynamodb}: a restart on the same ports).
   */
  static async start({ args = [], ports } = {}) {
    const dir = mkdtempSync(join(tmpdir(), "ws-proxy-client-"));
    const ready = join(dir, "ready.json");
    const command = [
      "-m", "local_gateway", "--ready-file", ready,
      "--port", String(ports?.gateway ?? 0),
      "--backend-port", String(ports?.backend ?? 0),
      "--dynamodb-port", String(ports?.dynamodb ?? 0),
      ...args,
    ];
    const child = spawn(PYTHON, command, {
      cwd: ROOT,
      env: { ...process.env, PYTHONUNBUFFERED: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const stack = new Stack(child, dir);
    const deadline = Date.now() + 60_000;
    while (!(existsSync(ready) && readFileSync(ready, "utf8"))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        await stack.stop();
        throw new Error(`the stack did not start:\n${stack.output}`);
      }
      await sleep(50);
    }
    stack.endpoints = JSON.parse(readFileSync(ready, "utf8"));
    return stack;
  }

  constructor(child, dir) {
    this.child = child;
    this.dir = dir;
    this.output = "";
    this.endpoints = {};
    child.stdout.on("data", (chunk) => (this.output += chunk));
    child.stderr.on("data", (chunk) => (this.output += chunk));
    this.exited = new Promise((resolveExit) => child.on("exit", (code) => resolveExit(code)));
  }

  get ws() {
    return this.endpoints.websocket;
  }

  get ports() {
    const port = (url) => Number(new URL(url).port);
    return {
      gateway: port(this.endpoints.gateway),
      backend: port(this.endpoints.backend),
      dynamodb: port(this.endpoints.dynamodb),
    };
  }

  /** Ctrl-C, as a user stops it: every socket is closed (1001), then the servers. */
  async stop() {
    if (this.child.exitCode === null) {
      this.child.kill("SIGINT");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 20_000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.child.exitCode;
  }

  /** A development token from the reference backend (12 hours, or ttlSeconds). */
  async token(user, ttlSeconds) {
    const response = await fetch(`${this.endpoints.backend}/dev/token`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(ttlSeconds === undefined ? { user_id: user } : { user_id: user, ttl_seconds: ttlSeconds }),
    });
    if (!response.ok) throw new Error(`/dev/token answered ${response.status}`);
    return (await response.json()).token;
  }

  /**
   * One call to the stack's DynamoDB (the embedded one listens on loopback) the way a Node
   * client on this machine makes it: Host 127.0.0.1:port, no Origin. Unsigned: the local
   * DynamoDB takes the region from the credential scope and checks no signature.
   */
  dynamodb(operation, body) {
    const url = new URL(this.endpoints.dynamodb);
    const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || "us-east-1";
    const payload = JSON.stringify({ TableName: this.endpoints.table, ...body });
    const headers = {
      Host: url.host,
      "Content-Type": "application/x-amz-json-1.0",
      "Content-Length": Buffer.byteLength(payload),
      "X-Amz-Target": `DynamoDB_20120810.${operation}`,
      Authorization: `AWS4-HMAC-SHA256 Credential=local/20260101/${region}/dynamodb/aws4_request, SignedHeaders=host;x-amz-target, Signature=0`,
    };
    return new Promise((resolveCall, rejectCall) => {
      const req = httpRequest({ host: url.hostname, port: url.port, path: "/", method: "POST", headers }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (chunk) => (text += chunk));
        res.on("end", () => {
          if (res.statusCode !== 200) rejectCall(new Error(`DynamoDB ${operation} answered ${res.statusCode}: ${text}`));
          else resolveCall(JSON.parse(text));
        });
      });
      req.setTimeout(10_000, () => req.destroy(new Error(`DynamoDB ${operation}: no answer within 10 s`)));
      req.on("error", rejectCall);
      req.end(payload);
    });
  }

  /** The stored connections of `user` on the chat of `booking`: [{channel, connectionId}]. */
  async chatConnections(booking, user) {
    const answer = await this.dynamodb("Query", {
      KeyConditionExpression: "#p = :p",
      FilterExpression: "#u = :u",
      ExpressionAttributeNames: { "#p": "booking_id", "#u": "user_id" },
      ExpressionAttributeValues: { ":p": { S: `booking#${booking}` }, ":u": { S: user } },
      ConsistentRead: true,
    });
    return answer.Items.map((item) => ({ channel: item.booking_id.S, connectionId: item.connection_id.S }));
  }

  /** Delete a connection's item: from then on the proxy has no record of it. */
  async deleteConnection({ channel, connectionId }) {
    await this.dynamodb("DeleteItem", { Key: { booking_id: { S: channel }, connection_id: { S: connectionId } } });
  }
}

/** A JWT for `user` signed with `secret`: with any secret but the backend's, a forged token. */
export function forgedToken(user, seconds, secret) {
  const enc = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const body = `${enc({ alg: "HS256", typ: "JWT" })}.${enc({ sub: user, iat: now, exp: now + seconds })}`;
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`;
}

/** The ws package's WebSocket, counting the sockets each client opens and what each sends. */
export function countingWebSocket() {
  const opened = [];
  class Counted extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      this.sentFrames = [];
      opened.push(this);
    }

    send(data, ...rest) {
      this.sentFrames.push(JSON.parse(data));
      return super.send(data, ...rest);
    }
  }
  return { Counted, opened };
}

export function newBooking() {
  return `client-${randomUUID().slice(0, 10)}`;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Wait until `condition()` is true, polling; fails after `timeoutMs` saying `what`. */
export async function until(condition, what, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(20);
  }
}
