// Sentiment dashboard: REST for the initial state, then live updates over /ws.
// Plain ES modules, no build step. Chart.js (vendor/chart.umd.min.js) draws the charts.
// Untrusted text (posts, alert messages) only ever goes through textContent.
//
// What it shows follows the filters in the top bar: the time range (live 1 h over the
// WebSocket; 24 h, 7 d, 30 d fetched from /api/metrics every 30 s), the source and the
// language (metrics and posts), and "unique posts" (metrics count each group of copies once). The search box lists the posts matching `q`; the alert rules and an alert's
// explanation live in rules.js.

import {
  $, el, setText, toFraction, parseTime, api, query, debounce,
  SENTIMENTS, EMOTIONS, MINUTE, HOUR, DAY,
  fmtInt, fmtPct, nPosts, clockFmt, minuteFmt, hourFmt, dayFmt, fullFmt, relTime,
} from "./util.js";
import { charts, createCharts } from "./charts.js";
import { initRules, loadRules, alertsChanged, openAlert, setKnownSources } from "./rules.js";
import { initReview, renderHeadline } from "./review.js";

const FEED_CAP = 50;
const ALERTS_CAP = 20;
const TIMELINE_MINUTES = 60;
const STALE_MS = 15_000;       // metrics come every 2 s; silence this long on an open socket: reconnect
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const OFFLINE_AFTER = 5;       // failed attempts before we call it "offline"
const DEFAULT_THRESHOLD = 0.4; // ALERT_THRESHOLD's default; alerts may carry the real one
const RANGE_REFRESH_MS = 30_000;
const LIVE_SOURCE_REFRESH_MS = 5_000;
const SEARCH_DEBOUNCE_MS = 300;

// The ranges: how far back, and the bucket that keeps /api/metrics' timeline short.
const RANGES = {
  live: { span: HOUR, bucket: "minute", step: MINUTE, label: "last 60 min", unit: "minute" },
  "24h": { span: DAY, bucket: "hour", step: HOUR, label: "last 24 h", unit: "hour" },
  "7d": { span: 7 * DAY, bucket: "day", step: DAY, label: "last 7 days", unit: "day" },
  "30d": { span: 30 * DAY, bucket: "day", step: DAY, label: "last 30 days", unit: "day" },
};

const params = new URLSearchParams(location.search);
const state = {
  threshold: toFraction(params.get("threshold")) ?? DEFAULT_THRESHOLD,
  range: "live",
  source: "",
  language: "",         // one language's posts (ISO 639-1 or und); "" all
  unique: false,        // metrics count each group of copies once
  languages: new Set(), // every language the metrics have named so far
  search: "",
  liveWindowMinutes: 5,  // ALERT_WINDOW_MINUTES, learned from the live metrics
  timeline: new Map(),  // live: minute start (ms) -> {positive, negative, neutral, total}
  serverNow: null,      // the `end` of the latest metrics, to align the timeline
  feedIds: new Set(),
  pendingPosts: [],
  alerts: new Map(),    // id -> alert
  firing: new Map(),    // alert_type -> firing alert
  sources: new Set(),
  lastMessageAt: 0,
  lastMetricsAt: 0,
  negative: { pct: null, count: 0 },  // last shown, to redraw when the threshold changes
  pollTimer: null,
  metricsSeq: 0,        // a newer request makes an older answer stale
  searchSeq: 0,
};

// Live metrics over the WebSocket are for every post: with a source, a language or unique
// posts chosen they are polled.
const wsDrivesMetrics = () => state.range === "live" && !state.source && !state.language && !state.unique;

// What the metrics are filtered by, as /api/metrics takes it (beside the range).
const metricsFilters = () => ({
  source: state.source || undefined,
  language: state.language || undefined,
  unique: state.unique ? "true" : undefined,
});

// The filters after the window in a label: "last 24 h · twitter · FR · unique".
const filtersLabel = () => [state.source, state.language.toUpperCase(), state.unique ? "unique" : ""]
  .filter(Boolean).map((part) => ` · ${part}`).join("");

function windowLabel(m) {
  const start = parseTime(m.start);
  const end = parseTime(m.end);
  if (!start || !end) return "";
  const minutes = Math.round((end - start) / MINUTE);
  if (minutes >= 2 * 24 * 60 && minutes % (24 * 60) === 0) return `last ${minutes / (24 * 60)} days`;
  return minutes >= 120 && minutes % 60 === 0 ? `last ${minutes / 60} h` : `last ${minutes} min`;
}

// ---- metrics -----------------------------------------------------------------

function renderMetrics(m) {
  if (!m || typeof m !== "object") return;
  state.lastMetricsAt = Date.now();
  const end = parseTime(m.end);
  if (end && (!state.serverNow || end > state.serverNow)) state.serverNow = end;
  const threshold = toFraction(m.alert_threshold ?? m.threshold);
  if (threshold) state.threshold = threshold;

  const total = Number(m.total) || 0;
  const sent = {};
  for (const s of SENTIMENTS) {
    const entry = (m.sentiment && m.sentiment[s]) || {};
    const count = Number(entry.count) || 0;
    sent[s] = { count, pct: entry.percentage != null ? Number(entry.percentage) : total ? (count / total) * 100 : 0 };
  }
  const label = windowLabel(m) + filtersLabel();

  // Headline numbers.
  setText("kpi-total", fmtInt(total));
  setText("kpi-window", label || "—");
  renderLeftOut(m);
  learnLanguages(Object.keys(m.by_language || {}));
  setText("kpi-positive", total ? fmtPct(sent.positive.pct) : "—");
  setText("kpi-positive-sub", nPosts(sent.positive.count));
  renderNegative(total ? sent.negative.pct : null, sent.negative.count);
  renderHeadline(m);

  // Sentiment donut + legend.
  setText("sentiment-window", label);
  setText("donut-total", fmtInt(total));
  if (charts.sentiment) {
    charts.sentiment.data.datasets[0].data = [...SENTIMENTS.map((s) => sent[s].count), total ? 0 : 1];
    charts.sentiment.update();
  }
  $("sentiment-chart").setAttribute("aria-label",
    `Sentiment, ${label}: ${SENTIMENTS.map((s) => `${s} ${fmtPct(sent[s].pct)}`).join(", ")}`);
  $("sentiment-legend").replaceChildren(...SENTIMENTS.map((s) => el("li", { data: { sentiment: s } },
    el("span", { class: "swatch", style: { background: `var(--${s.slice(0, 3)})` } }),
    el("span", { class: "name", text: s }),
    el("span", { class: "pct", text: total ? fmtPct(sent[s].pct) : "—" }),
    el("span", { class: "count", text: nPosts(sent[s].count) }),
  )));

  // Emotions.
  const emo = EMOTIONS.map((e) => {
    const entry = (m.emotion && m.emotion[e]) || {};
    const count = Number(entry.count) || 0;
    return { name: e, count, pct: entry.percentage != null ? Number(entry.percentage) : total ? (count / total) * 100 : 0 };
  });
  setText("emotion-window", label);
  if (charts.emotion) {
    const ds = charts.emotion.data.datasets[0];
    ds.data = emo.map((e) => e.pct);
    ds.counts = emo.map((e) => e.count);
    charts.emotion.update();
  }
  $("emotion-chart").setAttribute("aria-label",
    `Emotions, ${label}: ${emo.map((e) => `${e.name} ${fmtPct(e.pct)}`).join(", ")}`);
  const top = emo.reduce((a, b) => (b.count > a.count ? b : a), emo[0]);
  setText("kpi-emotion", top && top.count ? top.name : "—");
  setText("kpi-emotion-sub", top && top.count ? `${fmtPct(top.pct)} of posts` : "no posts yet");

  renderSources(m.by_source);
  setText("sources-window", label ? label.replace(/ · .*/, "") : "in window");
  setText("last-update", `Updated ${clockFmt.format(new Date())}`);
}

// What the shares leave out: posts no model read (or not read yet), and copies.
function renderLeftOut(m) {
  const unanalysed = Number(m.unanalysed) || 0;
  const copies = Number(m.duplicates) || 0;
  const parts = [];
  if (unanalysed) parts.push(`${fmtInt(unanalysed)} unanalysed`);
  if (copies) parts.push(`${fmtInt(copies)} ${copies === 1 ? "copy" : "copies"}${m.unique ? " left out" : ""}`);
  const node = $("kpi-left-out");
  node.dataset.unanalysed = String(unanalysed);
  node.dataset.duplicates = String(copies);
  node.textContent = parts.join(" · ");
}

function renderNegative(pct, count) {
  state.negative = { pct, count };
  const thresholdPct = state.threshold * 100;
  const card = $("kpi-negative-card");
  setText("kpi-negative", pct === null ? "—" : fmtPct(pct));
  $("kpi-negative-meter").style.width = `${Math.min(100, pct || 0)}%`;
  $("kpi-threshold-mark").style.left = `calc(${Math.min(100, thresholdPct)}% - 1px)`;
  if (pct === null) {
    card.dataset.over = "false";
    setText("kpi-threshold", `threshold ${fmtPct(thresholdPct, 0)}`);
    return;
  }
  const diff = pct - thresholdPct;
  card.dataset.over = String(diff > 0);
  setText("kpi-threshold", `${nPosts(count)} · threshold ${fmtPct(thresholdPct, 0)} · ` +
    (diff > 0 ? `${diff.toFixed(1)} pts over` : `${(-diff).toFixed(1)} pts under`));
}

function mergeTimeline(buckets, windowStart) {
  if (!Array.isArray(buckets) || !buckets.length) return;
  const rows = buckets
    .map((b) => ({ t: parseTime(b.bucket_start), b }))
    .filter((r) => r.t)
    .sort((a, b) => a.t - b.t);
  // Only minute buckets belong on the live chart: skip a timeline of hourly/daily buckets.
  if (rows.length > 1 && rows.every((r, i) => i === 0 || r.t - rows[i - 1].t >= 60 * MINUTE)) return;
  const from = windowStart ? windowStart.getTime() : -Infinity;
  for (const { t, b } of rows) {
    const key = Math.floor(t.getTime() / MINUTE) * MINUTE;
    const row = { positive: +b.positive || 0, negative: +b.negative || 0, neutral: +b.neutral || 0 };
    row.total = b.total != null ? +b.total : row.positive + row.negative + row.neutral;
    const old = state.timeline.get(key);
    // A bucket that starts before the window was cut by it: keep the fuller count we had.
    if (key < from && old && old.total > row.total) continue;
    state.timeline.set(key, row);
  }
}

function drawTimeline(labels, series, unit, rangeLabel) {
  setText("timeline-sub", `posts per ${unit}, ${rangeLabel}${filtersLabel()}`);
  const canvas = $("timeline-chart");
  canvas.dataset.bucket = unit;
  canvas.dataset.points = String(labels.length);
  canvas.setAttribute("aria-label", `Posts per ${unit} by sentiment, ${rangeLabel}`);
  if (!charts.timeline) return;
  charts.timeline.data.labels = labels;
  for (const ds of charts.timeline.data.datasets) ds.data = series[ds.key];
  charts.timeline.update("none");
}

function renderTimeline() {
  if (state.range !== "live") return;
  const ref = state.serverNow ? state.serverNow.getTime() : Date.now();
  const last = Math.floor(ref / MINUTE) * MINUTE;
  const first = last - (TIMELINE_MINUTES - 1) * MINUTE;
  for (const key of state.timeline.keys()) if (key < first) state.timeline.delete(key);
  const labels = [];
  const series = { positive: [], negative: [], neutral: [] };
  for (let t = first; t <= last; t += MINUTE) {
    labels.push(minuteFmt.format(new Date(t)));
    const row = state.timeline.get(t);
    for (const s of SENTIMENTS) series[s].push(row ? row[s] : 0);
  }
  drawTimeline(labels, series, "minute", RANGES.live.label);
}

// A longer range: one bar per hour or day (UTC-aligned, as the API buckets), gaps as zero.
function renderRangeTimeline(m, range) {
  const r = RANGES[range];
  const rows = new Map();
  for (const b of Array.isArray(m.timeline) ? m.timeline : []) {
    const t = parseTime(b.bucket_start);
    if (t) rows.set(Math.floor(t.getTime() / r.step) * r.step, b);
  }
  const end = (parseTime(m.end) || new Date()).getTime();
  const start = (parseTime(m.start) || new Date(end - r.span)).getTime();
  const labels = [];
  const series = { positive: [], negative: [], neutral: [] };
  const fmt = r.bucket === "hour" ? hourFmt : dayFmt;
  for (let t = Math.floor(start / r.step) * r.step; t < end; t += r.step) {
    labels.push(fmt.format(new Date(t)));
    const b = rows.get(t);
    for (const s of SENTIMENTS) series[s].push(b ? +b[s] || 0 : 0);
  }
  drawTimeline(labels, series, r.unit, r.label);
}

function renderSources(bySource) {
  const entries = Object.entries(bySource || {})
    .map(([name, v]) => ({ name, total: +v.total || 0, positive: +v.positive || 0, negative: +v.negative || 0, neutral: +v.neutral || 0 }))
    .sort((a, b) => b.total - a.total)
    .slice(0, 8);
  learnSources(entries.map((e) => e.name));
  $("sources-empty").hidden = entries.length > 0;
  $("sources").replaceChildren(...entries.map((src) => {
    const w = (n) => `${src.total ? (n / src.total) * 100 : 0}%`;
    return el("li", { data: { source: src.name } },
      el("span", { class: "src-name", text: src.name, title: src.name }),
      el("span", { class: "src-total", text: fmtInt(src.total) }),
      el("div", { class: "stack", title: `positive ${src.positive} · neutral ${src.neutral} · negative ${src.negative}` },
        el("span", { class: "s-pos", style: { width: w(src.positive) } }),
        el("span", { class: "s-neu", style: { width: w(src.neutral) } }),
        el("span", { class: "s-neg", style: { width: w(src.negative) } })));
  }));
}

// The source filter offers every source seen so far (metrics, posts).
function learnSources(names) {
  const fresh = names.filter((n) => n && !state.sources.has(n));
  if (!fresh.length) return;
  for (const n of fresh) state.sources.add(n);
  const select = $("source-filter");
  const chosen = select.value;
  const sorted = [...state.sources].sort((a, b) => a.localeCompare(b));
  select.replaceChildren(el("option", { value: "", text: "All sources" }),
    ...sorted.map((n) => el("option", { value: n, text: n })));
  select.value = chosen;
  setKnownSources(sorted);
}

// The language filter offers every language the metrics have named so far.
function learnLanguages(codes) {
  const fresh = codes.filter((c) => c && !state.languages.has(c));
  if (!fresh.length) return;
  for (const c of fresh) state.languages.add(c);
  const select = $("language-filter");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "All languages" }),
    ...[...state.languages].sort().map((c) => el("option", { value: c, text: c === "und" ? "undetermined" : c.toUpperCase() })));
  select.value = chosen;
}

// Fetches the metrics the current filters ask for (everything the WebSocket does not push).
async function loadMetrics() {
  const seq = ++state.metricsSeq;
  const range = state.range;
  const filters = metricsFilters();
  try {
    if (range === "live") {
      const [windowed, hour] = await Promise.all([
        api(`/api/metrics${query({ window_minutes: state.liveWindowMinutes, bucket: "minute", ...filters })}`),
        api(`/api/metrics${query({ window_minutes: TIMELINE_MINUTES, bucket: "minute", ...filters })}`),
      ]);
      if (seq !== state.metricsSeq) return;
      renderMetrics(windowed);
      state.timeline.clear();
      mergeTimeline(hour.timeline, parseTime(hour.start));
      renderTimeline();
    } else {
      const end = new Date();
      const start = new Date(end.getTime() - RANGES[range].span);
      const m = await api(`/api/metrics${query({ start: start.toISOString(), end: end.toISOString(), bucket: RANGES[range].bucket, ...filters })}`, { timeoutMs: 20_000 });
      if (seq !== state.metricsSeq) return;
      renderMetrics(m);
      renderRangeTimeline(m, range);
    }
  } catch (err) {
    if (seq === state.metricsSeq) setText("last-update", `Metrics failed: ${err.message}`);
    console.warn("metrics:", err);
  }
}

function schedulePolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
  if (wsDrivesMetrics()) return;
  state.pollTimer = setInterval(loadMetrics, state.range === "live" ? LIVE_SOURCE_REFRESH_MS : RANGE_REFRESH_MS);
}

async function applyFilters() {
  setText("mode-label", state.range === "live" ? "live" : RANGES[state.range].label);
  document.title = `Sentiment · ${state.range === "live" ? "live" : RANGES[state.range].label}${filtersLabel()}`;
  schedulePolling();
  const jobs = [loadPosts()];
  if (wsDrivesMetrics()) {
    // Back to live for every source: the 60-minute view now, the WebSocket from here on.
    jobs.push(loadLiveAll());
  } else {
    jobs.push(loadMetrics());
  }
  await Promise.all(jobs);
}

// ---- feed --------------------------------------------------------------------

function postNode(p, isNew) {
  const sentiment = SENTIMENTS.includes(p.sentiment) ? p.sentiment : null;
  const created = parseTime(p.created_at);
  const conf = p.confidence != null ? ` ${Math.round(Number(p.confidence) * 100)}%` : "";
  const emotionColor = EMOTIONS.includes(p.emotion) ? `var(--${p.emotion === "neutral" ? "emo-neutral" : p.emotion})` : null;
  const unread = !sentiment && p.analysis === "unsupported_language";
  const pending = unread ? "unread" : "pending";
  return el("li", {
    class: `feed-item${isNew ? " is-new" : ""}`,
    data: { postId: p.post_id ?? "", sentiment: sentiment ?? pending, source: p.source ?? "", language: p.language ?? "", copyOf: p.duplicate_of ?? "" },
  },
    el("span", { class: "bar", "aria-hidden": "true" }),
    el("div", { class: "body" },
      el("div", { class: "meta" },
        el("span", {
          class: `chip chip-${sentiment ?? "pending"}`,
          text: sentiment ? `${sentiment}${conf}` : unread ? "no model" : "pending",
          title: sentiment ? `${sentiment}, confidence${conf || " n/a"}${p.model ? ` · ${p.model}` : ""}`
            : unread ? "no model reads this language: counted, not labelled" : "not analysed yet",
        }),
        p.emotion ? el("span", { class: "emotion", text: p.emotion, style: emotionColor ? { "--emo": emotionColor } : {},
          title: p.emotion_confidence != null ? `emotion confidence ${Math.round(p.emotion_confidence * 100)}%` : null }) : null,
        el("span", { class: "source", text: p.source ?? "" }),
        p.language ? el("span", { class: "lang", text: p.language, title: `language: ${p.language === "und" ? "undetermined" : p.language}` }) : null,
        p.duplicate_of ? el("span", { class: "copy-of", text: `copy of ${p.duplicate_of}`, title: `a copy of post ${p.duplicate_of}: counted once with “unique posts”` }) : null,
        p.author ? el("span", { class: "author", text: `@${String(p.author).replace(/^@/, "")}`, title: String(p.author) }) : null,
        el("time", {
          class: "time", datetime: p.created_at ?? "", data: { ts: created ? String(created.getTime()) : "" },
          title: created ? fullFmt.format(created) : null, text: relTime(created),
        })),
      el("p", { class: "text", text: p.content ?? "" })));
}

function updateFeedMeta(total) {
  const n = $("feed").children.length;
  const searching = !!state.search;
  $("feed-empty").hidden = n > 0;
  $("feed-empty").textContent = searching ? `No posts match “${state.search}”.` : "No posts yet.";
  setText("feed-title", searching ? "Search results" : "Latest posts");
  $("feed").dataset.mode = searching ? "search" : "live";
  if (searching) setText("feed-count", total != null ? `${fmtInt(total)} ${total === 1 ? "match" : "matches"}${total > n ? `, ${n} shown` : ""}` : `${n} shown`);
  else setText("feed-count", n ? `${n} shown` : "");
}

function trimFeed() {
  const feed = $("feed");
  while (feed.children.length > FEED_CAP) {
    const last = feed.lastElementChild;
    state.feedIds.delete(last.dataset.postId);
    last.remove();
  }
}

// Initial/refresh load: the list is newest first.
function setFeed(items, total) {
  state.feedIds.clear();
  const nodes = [];
  for (const p of items.slice(0, FEED_CAP)) {
    if (p.post_id != null) {
      if (state.feedIds.has(String(p.post_id))) continue;
      state.feedIds.add(String(p.post_id));
    }
    nodes.push(postNode(p, false));
  }
  learnSources(items.map((p) => p.source));
  $("feed").replaceChildren(...nodes);
  updateFeedMeta(total);
}

// The feed for the filters: the latest posts, or the search's matches.
async function loadPosts() {
  const seq = ++state.searchSeq;
  const q = state.search || undefined;
  try {
    const page = await api(`/api/posts${query({ limit: q ? FEED_CAP : 30, q, source: state.source || undefined, language: state.language || undefined })}`);
    if (seq !== state.searchSeq) return;
    setFeed(Array.isArray(page.items) ? page.items : [], q ? page.total : null);
  } catch (err) {
    if (seq !== state.searchSeq) return;
    $("feed").replaceChildren();
    updateFeedMeta();
    $("feed-empty").textContent = `Could not load posts: ${err.message}`;
  }
}

// Live posts are queued and added once per frame, so a burst costs one layout.
function queuePost(p) {
  if (!p || typeof p !== "object") return;
  if (p.source) learnSources([p.source]);
  if (state.search) return;  // the list shows search results; they are not live
  if (state.source && p.source !== state.source) return;
  if (state.language && p.language !== state.language) return;
  state.pendingPosts.push(p);
  if (state.pendingPosts.length > FEED_CAP) state.pendingPosts.splice(0, state.pendingPosts.length - FEED_CAP);
  if (state.pendingPosts.length === 1) requestAnimationFrame(flushPosts);
}

function flushPosts() {
  const batch = state.pendingPosts;
  state.pendingPosts = [];
  if (state.search) return;
  const feed = $("feed");
  const fresh = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) {  // newest first
    const p = batch[i];
    const id = String(p.post_id ?? "");
    if (id && state.feedIds.has(id)) {
      // Already shown (e.g. a re-send once analysed): replace it in place.
      const old = [...feed.children].find((n) => n.dataset.postId === id);
      if (old) { old.replaceWith(postNode(p, false)); continue; }
    }
    if (id) state.feedIds.add(id);
    fresh.append(postNode(p, true));
  }
  feed.prepend(fresh);
  trimFeed();
  updateFeedMeta();
}

function refreshTimes() {
  for (const node of document.querySelectorAll("time[data-ts]")) {
    const ts = Number(node.dataset.ts);
    if (ts) node.textContent = relTime(new Date(ts));
  }
}

// ---- alerts ------------------------------------------------------------------

function alertKey(a) {
  return String(a.id ?? `${a.alert_type}:${a.created_at}`);
}

function alertTitle(a) {
  const rule = a.rule_id && a.rule_name ? `${a.rule_name}: ` : "";
  return `${rule}${a.message || a.alert_type || "alert"}`;
}

function ingestAlert(a) {
  if (!a || typeof a !== "object") return;
  const key = alertKey(a);
  state.alerts.set(key, { ...(state.alerts.get(key) || {}), ...a });
  const threshold = !a.rule_id ? toFraction(a.details && a.details.threshold) : null;
  if (threshold && threshold !== state.threshold) {
    state.threshold = threshold;
    renderNegative(state.negative.pct, state.negative.count);
  }
  const type = a.alert_type ?? "alert";
  if (a.state === "resolved" || a.resolved_at) state.firing.delete(type);
  else state.firing.set(type, a);
}

function renderAlerts() {
  const items = [...state.alerts.values()]
    .sort((a, b) => (parseTime(b.created_at) || 0) - (parseTime(a.created_at) || 0))
    .slice(0, ALERTS_CAP);
  // Forget what scrolled off the list (the banner keeps its own map of firing alerts).
  const keep = new Set(items.map(alertKey));
  for (const key of [...state.alerts.keys()]) if (!keep.has(key)) state.alerts.delete(key);

  $("alerts").replaceChildren(...items.map((a) => {
    const resolved = a.state === "resolved" || !!a.resolved_at;
    // A firing record that a later one superseded is history, not an open alert.
    const active = !resolved && alertKey(state.firing.get(a.alert_type ?? "alert") || {}) === alertKey(a);
    const created = parseTime(a.created_at);
    const severity = a.severity === "critical" ? "critical" : "warning";
    const stateText = resolved ? "Resolved" : active ? "Firing" : "Fired";
    return el("li", {
      class: "alert-item",
      data: { alertId: a.id ?? "", state: resolved ? "resolved" : "firing", active: String(active), severity, type: a.alert_type ?? "", ruleId: String(a.rule_id ?? 0) },
    },
      el("button", {
        type: "button", class: "alert-open", disabled: a.id == null,
        "aria-label": `${stateText} ${severity} alert: ${alertTitle(a)}. Open its explanation`,
        on: { click: () => openAlert(a.id) },
      },
        el("div", { class: "alert-top" },
          el("span", { class: "alert-state", text: stateText }),
          el("span", { class: "alert-severity", text: severity }),
          a.rule_id ? el("span", { class: "alert-rule", text: a.rule_name ?? `rule ${a.rule_id}` }) : null,
          el("time", { class: "alert-time", datetime: a.created_at ?? "", title: created ? fullFmt.format(created) : null,
            text: created ? clockFmt.format(created) : "" })),
        el("div", { class: "alert-msg", text: a.message || a.alert_type || "alert" })));
  }));
  $("alerts-empty").hidden = items.length > 0;
  const firing = state.firing.size;
  setText("alerts-count", firing ? `${firing} firing` : items.length ? "none firing" : "");
  renderBanner();
}

function renderBanner() {
  const banner = $("alert-banner");
  const active = [...state.firing.values()].sort((a, b) =>
    (b.severity === "critical") - (a.severity === "critical") ||
    (parseTime(b.created_at) || 0) - (parseTime(a.created_at) || 0));
  if (!active.length) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  const a = active[0];
  const severity = a.severity === "critical" ? "critical" : "warning";
  const since = parseTime(a.created_at);
  banner.dataset.severity = severity;
  banner.dataset.alertId = a.id ?? "";
  banner.replaceChildren(
    el("span", { class: "banner-tag", text: severity }),
    el("span", { class: "banner-msg", text: alertTitle(a) }),
    el("span", { class: "banner-more", text: [
      since ? `since ${clockFmt.format(since)}` : "",
      active.length > 1 ? `+${active.length - 1} more firing` : "",
    ].filter(Boolean).join(" · ") }),
    a.id != null ? el("button", { type: "button", class: "btn btn-small", text: "Why?", "aria-label": "Open the alert's explanation", on: { click: () => openAlert(a.id) } }) : null);
  banner.hidden = false;
}

// ---- REST: initial state -------------------------------------------------------

// Live, every source: the last 60 minutes by minute (the WebSocket keeps it going).
async function loadLiveAll() {
  const seq = ++state.metricsSeq;
  try {
    const m = await api("/api/metrics?window_minutes=60&bucket=minute");
    if (seq !== state.metricsSeq || !wsDrivesMetrics()) return;
    // Don't overwrite fresher live numbers with the 60-minute view; still take its timeline.
    if (Date.now() - state.lastMetricsAt > 3000) renderMetrics(m);
    state.timeline.clear();
    mergeTimeline(m.timeline, parseTime(m.start));
    renderTimeline();
  } catch (err) {
    console.warn("metrics:", err);
  }
}

async function loadAlerts() {
  try {
    const page = await api("/api/alerts?limit=10");
    const items = Array.isArray(page.items) ? page.items : [];
    for (const a of [...items].reverse()) ingestAlert(a);  // oldest first, so the latest state wins
    renderAlerts();
  } catch (err) {
    console.warn("alerts:", err);
  }
}

async function loadInitial() {
  await Promise.all([
    wsDrivesMetrics() ? loadLiveAll() : loadMetrics(),
    state.search ? Promise.resolve() : loadPosts(),
    loadAlerts(),
  ]);
}

// ---- WebSocket with reconnect ----------------------------------------------------

// sawMetrics: this socket has delivered a metrics push, so silence now means it is dead.
const conn = { ws: null, attempt: 0, timer: null, retryAt: 0, everConnected: false, sawMetrics: false };

function setConnState(name, text) {
  const node = $("connection-state");
  node.dataset.state = name;
  node.querySelector(".conn-text").textContent = text;
  node.title = name === "connected" ? "Live updates connected" : "Live updates unavailable; retrying automatically";
}

function showRetry() {
  if (!conn.retryAt) return;
  const secs = Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000));
  const offline = !navigator.onLine || conn.attempt > OFFLINE_AFTER;
  setConnState(offline ? "offline" : "reconnecting",
    secs ? `${offline ? "Offline" : "Reconnecting"} · retry in ${secs}s` : `${offline ? "Offline" : "Reconnecting"}…`);
}

function onLiveMetrics(m) {
  if (!m || typeof m !== "object") return;
  const start = parseTime(m.start);
  const end = parseTime(m.end);
  if (start && end) state.liveWindowMinutes = Math.max(1, Math.round((end - start) / MINUTE));
  if (Object.keys(m.by_source || {}).length) learnSources(Object.keys(m.by_source));
  learnLanguages(Object.keys(m.by_language || {}));
  if (!wsDrivesMetrics()) return;
  renderMetrics(m);
  mergeTimeline(m.timeline, start);
  renderTimeline();
}

function connect() {
  clearTimeout(conn.timer);
  conn.retryAt = 0;
  if (conn.ws) return;
  if (conn.attempt > 0) setConnState(navigator.onLine ? "reconnecting" : "offline", navigator.onLine ? "Reconnecting…" : "Offline");
  // batch=1: one `posts` frame per flush instead of a frame per post (cheaper at volume).
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws?batch=1`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (err) {
    console.warn("websocket:", err);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  ws.onopen = () => {
    const resumed = conn.everConnected;
    conn.attempt = 0;
    conn.everConnected = true;
    conn.sawMetrics = false;
    state.lastMessageAt = Date.now();
    setConnState("connected", "Connected");
    if (resumed) { loadInitial(); loadRules(); }  // fill what we missed while away
  };
  ws.onmessage = (ev) => {
    state.lastMessageAt = Date.now();
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "metrics") { conn.sawMetrics = true; onLiveMetrics(msg.data); }
    else if (msg.type === "posts") { if (Array.isArray(msg.data)) msg.data.forEach(queuePost); }
    else if (msg.type === "post") queuePost(msg.data);
    else if (msg.type === "alert") { ingestAlert(msg.data); renderAlerts(); alertsChanged(); }
  };
  ws.onclose = () => dropSocket(ws);
  ws.onerror = () => {};  // a close event always follows
}

function dropSocket(ws) {
  if (conn.ws !== ws) return;
  conn.ws = null;
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  try { ws.close(); } catch { /* already closed */ }
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(conn.timer);
  conn.attempt += 1;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** (conn.attempt - 1));
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));  // ±20% jitter
  conn.retryAt = Date.now() + delay;
  showRetry();
  conn.timer = setTimeout(connect, delay);
}

function retryNow() {
  if (conn.ws) return;
  connect();
}

// ---- filters -----------------------------------------------------------------------

function initFilters() {
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  for (const radio of document.querySelectorAll('input[name="range"]')) {
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      state.range = radio.value;
      applyFilters();
    });
  }
  $("source-filter").addEventListener("change", (ev) => {
    state.source = ev.target.value;
    applyFilters();
  });
  $("language-filter").addEventListener("change", (ev) => {
    state.language = ev.target.value;
    applyFilters();
  });
  $("unique-toggle").addEventListener("change", (ev) => {
    state.unique = ev.target.checked;
    applyFilters();
  });
  const search = $("search");
  const runSearch = debounce(() => {
    const q = search.value.trim();
    if (q === state.search) return;
    state.search = q;
    setText("feed-count", q ? "Searching…" : "");
    loadPosts();
  }, SEARCH_DEBOUNCE_MS);
  search.addEventListener("input", runSearch);
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && search.value) { search.value = ""; runSearch(); }
  });
}

// ---- start -------------------------------------------------------------------

function start() {
  createCharts();
  renderNegative(null, 0);
  renderTimeline();
  updateFeedMeta();
  renderAlerts();
  initFilters();
  initRules({ postNode });
  initReview();
  loadInitial();
  connect();

  setInterval(() => {
    showRetry();
    // A socket that says "open" but has been silent for a while is dead.
    if (conn.ws && conn.ws.readyState === WebSocket.OPEN && conn.sawMetrics && Date.now() - state.lastMessageAt > STALE_MS) {
      console.warn("websocket silent, reconnecting");
      dropSocket(conn.ws);
    }
  }, 1000);
  setInterval(refreshTimes, 10_000);
  addEventListener("online", retryNow);
  addEventListener("offline", showRetry);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) retryNow(); });
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
