// HTTP client of the public API: the token lives in memory and sessionStorage only, never in a URL.
import { config } from "./config.js";

const KEY = "sparkgate.session";
let session = JSON.parse(sessionStorage.getItem(KEY) || "null");
const listeners = [];

/** The signed-in user ({user, token}) or null. */
export const current = () => session;
/** Call fn(session) whenever the user signs in or out. */
export const onSession = (fn) => listeners.push(fn);

function setSession(value) {
  session = value;
  if (value) sessionStorage.setItem(KEY, JSON.stringify(value));
  else sessionStorage.removeItem(KEY);
  listeners.forEach((fn) => fn(value));
}

/** One request; answers {status, body, headers}. A 401 signs the user out. */
export async function request(method, path, body, extraHeaders = {}) {
  const headers = { ...extraHeaders };
  if (session) headers.Authorization = `Token ${session.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(config.api + path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "omit",
  });
  const text = await resp.text();
  let parsed = null;
  try { parsed = text ? JSON.parse(text) : null; } catch { parsed = text; }
  if (resp.status === 401 && session && path !== "/token") setSession(null);
  return { status: resp.status, body: parsed, headers: resp.headers };
}

export class ApiError extends Error {
  constructor(message, status, body) { super(message); this.status = status; this.body = body; }
}

/** A Linkis-surface call (/api/rest_j/v1/...): its data, or an ApiError with the message. */
export async function linkis(method, path, body) {
  const r = await request(method, "/api/rest_j/v1" + path, body);
  if (!r.body || r.body.status !== 0) throw new ApiError(r.body?.message || `HTTP ${r.status}`, r.status, r.body);
  return r.body.data;
}

/** A works-surface call (/api/v1/...): {data, total, etag}. */
export async function works(method, path, body, headers) {
  const r = await request(method, "/api/v1" + path, body, headers);
  if (!r.body || r.body.code !== 0) throw new ApiError(r.body?.msg || `HTTP ${r.status}`, r.status, r.body);
  return { data: r.body.data, total: Number(r.headers.get("X-Total-Count") || 0), etag: r.headers.get("ETag") };
}

/** A geo call; a 202 (a Spark session still starting) is followed to its end and the call repeated. */
export async function geo(method, path, body, onWait = () => {}) {
  for (let attempt = 0; attempt < 20; attempt++) {
    const r = await request(method, path, body);
    if (r.status === 202 && r.body?.execID) {
      onWait(r.body.jobStatus || "Scheduled");
      const final = await waitFinal(r.body.execID, onWait);
      if (final !== "Succeed") throw new ApiError(`the Job ended ${final}`, 400, r.body);
      continue;
    }
    if (!r.body || r.body.status !== "success") throw new ApiError(r.body?.message || `HTTP ${r.status}`, r.status, r.body);
    return r.body;
  }
  throw new ApiError("the Spark session did not start", 503, null);
}

export const FINAL = ["Succeed", "Failed", "Cancelled", "Timeout"];
export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

async function waitFinal(execID, onWait) {
  for (;;) {
    const { status } = await linkis("GET", `/entrance/${execID}/status`);
    if (FINAL.includes(status)) return status;
    onWait(status);
    await sleep(700);
  }
}

export async function signIn(username, password) {
  const r = await request("POST", "/token", { username, password });
  if (r.status !== 200 || r.body?.status !== "success") throw new ApiError(r.body?.message || `HTTP ${r.status}`, r.status);
  setSession({ user: username, token: r.body.data.token });
}

export async function signOut() {
  if (session) await request("POST", "/api/rest_j/v1/user/logout").catch(() => {});
  setSession(null);
}

/** Download an authenticated answer as a file (the token goes in a header, so no plain link). */
export async function download(path, filename) {
  const resp = await fetch(config.api + path, { headers: { Authorization: `Token ${session.token}` } });
  if (!resp.ok) throw new ApiError(`download failed: HTTP ${resp.status}`, resp.status);
  const url = URL.createObjectURL(await resp.blob());
  const a = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
