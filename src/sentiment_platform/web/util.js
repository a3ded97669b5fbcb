// Small helpers shared by the dashboard's modules: DOM building, time and number formats,
// and the API client (with the API key kept in sessionStorage for the write endpoints).
// Untrusted text (posts, alert messages, rule names) only ever goes through textContent.

export const SENTIMENTS = ["positive", "negative", "neutral"];
export const EMOTIONS = ["joy", "sadness", "anger", "fear", "surprise", "neutral"];
export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const $ = (id) => document.getElementById(id);

export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else if (key === "on") for (const [name, fn] of Object.entries(value)) node.addEventListener(name, fn);
    else if (key === "style") for (const [k, v] of Object.entries(value)) node.style.setProperty(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function setText(id, text) {
  const node = $(id);
  if (node && node.textContent !== text) node.textContent = text;
}

export function toFraction(value) {
  const n = Number(value);
  if (value === null || value === undefined || value === "" || !Number.isFinite(n) || n <= 0) return null;
  return n > 1 ? n / 100 : n;
}

// ISO-8601; a timestamp without a zone is UTC (that is what the API sends).
export function parseTime(value) {
  if (!value) return null;
  let s = String(value);
  if (/^\d{4}-\d\d-\d\dT[\d:.]+$/.test(s)) s += "Z";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? null : d;
}

const intFmt = new Intl.NumberFormat();
export const fmtInt = (n) => intFmt.format(Math.round(Number(n) || 0));
export const fmtPct = (n, digits = 1) => `${(Number(n) || 0).toFixed(digits)}%`;
export const nPosts = (n) => `${fmtInt(n)} ${Math.round(Number(n) || 0) === 1 ? "post" : "posts"}`;
export const cap = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : "");
export const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
export const minuteFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
export const hourFmt = new Intl.DateTimeFormat(undefined, { weekday: "short", hour: "2-digit", minute: "2-digit" });
export const dayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });
export const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function relTime(date) {
  if (!date) return "";
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  if (s < 5) return "just now";
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return fullFmt.format(date);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// ---- API client ----------------------------------------------------------------

const KEY_STORAGE = "sentiment.apiKey";

export function apiKey() {
  try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

export function setApiKey(value) {
  try {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  } catch { /* storage disabled: the key lives only in the field */ }
}

/** An API error: `status` (0 when the request did not get an answer) and a readable message. */
export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// FastAPI's 422: detail is a list of {loc, msg}; name the field ("threshold: …").
export function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => {
      const loc = Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body" && p !== "query") : [];
      const msg = String(d.msg ?? "invalid").replace(/^Value error, /, "");
      return loc.length ? `${loc.join(".")}: ${msg}` : msg;
    }).join("; ");
  }
  return detail ? JSON.stringify(detail) : "";
}

export function fieldsOf(detail) {
  if (!Array.isArray(detail)) return [];
  return detail.map((d) => (Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body")[0] : null)).filter(Boolean);
}

export async function api(path, { method = "GET", body, timeoutMs = 8000, signal } = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeoutMs);
  if (signal) signal.addEventListener("abort", () => ctrl.abort(), { once: true });
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const key = apiKey();
  if (key && method !== "GET") headers["X-API-Key"] = key;
  let res;
  try {
    res = await fetch(path, { method, headers, signal: ctrl.signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, ctrl.signal.aborted ? "the request timed out or was cancelled" : "the server could not be reached", null);
  } finally {
    clearTimeout(timer);
  }
  if (res.status === 204) return null;
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const detail = data && data.detail !== undefined ? describeDetail(data.detail) : res.statusText;
    throw new ApiError(res.status, detail || `HTTP ${res.status}`, data);
  }
  return data;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
