// The WebSocket: the token rides in Sec-WebSocket-Protocol ("sparkgate", "token.<jwt>"), never in the URL.
// Answers are matched to requests by websocketTag; everything else is a push, handed on by execID.
import { config } from "./config.js";

let counter = 0;
const newTag = () => `c${Date.now().toString(36)}${(counter++).toString(36)}`;

export class Socket {
  constructor() {
    this.ws = null; this.state = "off"; this.pending = new Map(); this.token = null;
    this.pushListeners = []; this.stateListeners = []; this.retry = 0; this.timer = null;
  }
  get live() { return this.state === "live"; }
  onPush(fn) { this.pushListeners.push(fn); }
  onState(fn) { this.stateListeners.push(fn); }
  setState(state) { this.state = state; this.stateListeners.forEach((fn) => fn(state)); }

  /** Connect (and keep reconnecting) as the holder of ``token``; null disconnects for good. */
  start(token) {
    this.token = token; clearTimeout(this.timer);
    if (this.ws) { const old = this.ws; this.ws = null; old.close(); }
    if (!token || !config.ws) { this.setState("off"); return; }
    this.open();
  }

  open() {
    const ws = new WebSocket(config.ws, ["sparkgate", `token.${this.token}`]);
    this.ws = ws;
    this.setState(this.retry ? "lost" : "connecting");
    ws.onopen = () => { if (this.ws === ws) { this.retry = 0; this.setState("live"); } };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const { reject } of this.pending.values()) reject(new Error("socket closed"));
      this.pending.clear();
      this.retry += 1;
      this.setState("lost");
      this.timer = setTimeout(() => this.token && this.open(), Math.min(1500 * 2 ** (this.retry - 1), 15000));
    };
  }

  receive(frame) {
    const waiting = this.pending.get(frame.websocketTag);
    if (waiting && waiting.method === frame.method) {
      this.pending.delete(frame.websocketTag);
      if (frame.status === 0) waiting.resolve(frame.data); else waiting.reject(new Error(frame.message || "refused"));
      return;
    }
    this.pushListeners.forEach((fn) => fn(frame));
  }

  /** Send one request frame; resolves with its answer's data (rejects on an error frame or a drop). */
  send(method, data = {}, tag = newTag()) {
    return new Promise((resolve, reject) => {
      if (!this.live) { reject(new Error("socket not connected")); return; }
      this.pending.set(tag, { method, resolve, reject });
      this.ws.send(JSON.stringify({ method, data, websocketTag: tag }));
    });
  }
}

export const socket = new Socket();
