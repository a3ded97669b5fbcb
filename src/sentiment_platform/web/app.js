// Sentiment dashboard: REST for the initial state, then live updates over /ws.
// Plain ES2020, no build step. Chart.js (vendor/chart.umd.min.js) draws the charts.
// Untrusted text (posts, alert messages) only ever goes through textContent.
"use strict";

(() => {
  const SENTIMENTS = ["positive", "negative", "neutral"];
  const EMOTIONS = ["joy", "sadness", "anger", "fear", "surprise", "neutral"];
  const FEED_CAP = 50;
  const ALERTS_CAP = 20;
  const TIMELINE_MINUTES = 60;
  const MINUTE = 60_000;
  const STALE_MS = 15_000;       // metrics come every 2 s; silence this long on an open socket: reconnect
  const BACKOFF_BASE_MS = 1_000;
  const BACKOFF_MAX_MS = 30_000;
  const OFFLINE_AFTER = 5;       // failed attempts before we call it "offline"
  const DEFAULT_THRESHOLD = 0.4; // ALERT_THRESHOLD's default; alerts may carry the real one

  const params = new URLSearchParams(location.search);
  const state = {
    threshold: toFraction(params.get("threshold")) ?? DEFAULT_THRESHOLD,
    timeline: new Map(),  // minute start (ms) -> {positive, negative, neutral, total}
    serverNow: null,      // the `end` of the latest metrics, to align the timeline
    feedIds: new Set(),
    pendingPosts: [],
    alerts: new Map(),    // id -> alert
    firing: new Map(),    // alert_type -> firing alert
    lastMessageAt: 0,
    lastMetricsAt: 0,
    negative: { pct: null, count: 0 },  // last shown, to redraw when the threshold changes
  };
  const charts = {};

  // ---- small helpers ---------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "data") Object.assign(node.dataset, value);
      else if (key === "style") for (const [k, v] of Object.entries(value)) node.style.setProperty(k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`), v);
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, text) {
    const node = $(id);
    if (node && node.textContent !== text) node.textContent = text;
  }

  function toFraction(value) {
    const n = Number(value);
    if (value === null || value === undefined || value === "" || !Number.isFinite(n) || n <= 0) return null;
    return n > 1 ? n / 100 : n;
  }

  // ISO-8601; a timestamp without a zone is UTC (that is what the API sends).
  function parseTime(value) {
    if (!value) return null;
    let s = String(value);
    if (/^\d{4}-\d\d-\d\dT[\d:.]+$/.test(s)) s += "Z";
    const d = new Date(s);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  const intFmt = new Intl.NumberFormat();
  const fmtInt = (n) => intFmt.format(Math.round(Number(n) || 0));
  const fmtPct = (n, digits = 1) => `${(Number(n) || 0).toFixed(digits)}%`;
  const nPosts = (n) => `${fmtInt(n)} ${Math.round(Number(n) || 0) === 1 ? "post" : "posts"}`;
  const cap = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : "");
  const clockFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const minuteFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function relTime(date) {
    if (!date) return "";
    const s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return `${s}s ago`;
    if (s < 3600) return `${Math.floor(s / 60)}m ago`;
    if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
    return fullFmt.format(date);
  }

  function windowLabel(m) {
    const start = parseTime(m.start);
    const end = parseTime(m.end);
    if (!start || !end) return "";
    const minutes = Math.round((end - start) / MINUTE);
    return minutes >= 120 && minutes % 60 === 0 ? `last ${minutes / 60} h` : `last ${minutes} min`;
  }

  async function fetchJSON(url) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), 8000);
    try {
      const res = await fetch(url, { signal: ctrl.signal, headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
      return await res.json();
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- colours (read from CSS so light/dark stay in one place) ----------------

  function palette() {
    const cs = getComputedStyle(document.documentElement);
    const v = (name) => cs.getPropertyValue(name).trim();
    return {
      positive: v("--pos"), negative: v("--neg"), neutral: v("--neu"),
      text: v("--text"), muted: v("--muted"), grid: v("--grid"), card: v("--card"),
      emotion: {
        joy: v("--joy"), sadness: v("--sadness"), anger: v("--anger"),
        fear: v("--fear"), surprise: v("--surprise"), neutral: v("--emo-neutral"),
      },
    };
  }

  // ---- charts ------------------------------------------------------------------

  // Writes "23%" at the end of each horizontal bar.
  const barValueLabels = {
    id: "barValueLabels",
    afterDatasetsDraw(chart) {
      const ds = chart.data.datasets[0];
      if (!ds) return;
      const { ctx } = chart;
      ctx.save();
      ctx.font = `600 11px ${Chart.defaults.font.family}`;
      ctx.fillStyle = Chart.defaults.color;
      ctx.textBaseline = "middle";
      chart.getDatasetMeta(0).data.forEach((bar, i) => {
        ctx.fillText(fmtPct(ds.data[i], 0), bar.x + 6, bar.y);
      });
      ctx.restore();
    },
  };

  function createCharts() {
    if (typeof Chart === "undefined") {
      console.warn("Chart.js did not load; charts are disabled");
      return;
    }
    const p = palette();
    const reduceMotion = matchMedia("(prefers-reduced-motion: reduce)").matches;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.font.size = 12;
    Chart.defaults.color = p.muted;
    Chart.defaults.borderColor = p.grid;
    Chart.defaults.animation = reduceMotion ? false : { duration: 300 };
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.plugins.tooltip.cornerRadius = 6;
    Chart.defaults.plugins.tooltip.padding = 8;

    charts.sentiment = new Chart($("sentiment-chart"), {
      type: "doughnut",
      data: {
        labels: [...SENTIMENTS.map(cap), ""],
        datasets: [{
          data: [0, 0, 0, 1],
          backgroundColor: [p.positive, p.negative, p.neutral, p.grid],
          borderColor: p.card,
          // No seam when one slice is the whole ring.
          borderWidth: (ctx) => (ctx.raw && ctx.dataset.data.filter((v) => v > 0).length > 1 ? 2 : 0),
          hoverOffset: 4,
        }],
      },
      options: {
        cutout: "72%",
        plugins: {
          legend: { display: false },
          tooltip: {
            filter: (item) => item.dataIndex < 3,
            callbacks: {
              label: (item) => {
                const total = item.dataset.data.slice(0, 3).reduce((a, b) => a + b, 0);
                const pct = total ? (item.raw / total) * 100 : 0;
                return ` ${nPosts(item.raw)} (${fmtPct(pct)})`;
              },
            },
          },
        },
      },
    });

    charts.timeline = new Chart($("timeline-chart"), {
      type: "bar",
      data: {
        labels: [],
        datasets: SENTIMENTS.map((s) => ({
          label: cap(s), key: s, data: [], backgroundColor: p[s],
          borderRadius: 2, barPercentage: 0.9, categoryPercentage: 0.9,
        })),
      },
      options: {
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { precision: 0, maxTicksLimit: 6 }, border: { display: false } },
        },
        plugins: {
          legend: { position: "top", align: "end", labels: { boxWidth: 10, boxHeight: 10, useBorderRadius: true, borderRadius: 2 } },
          tooltip: {
            callbacks: {
              footer: (items) => `Total: ${fmtInt(items.reduce((a, i) => a + (i.raw || 0), 0))}`,
            },
          },
        },
      },
    });

    charts.emotion = new Chart($("emotion-chart"), {
      type: "bar",
      data: {
        labels: EMOTIONS.map(cap),
        datasets: [{
          label: "Share of posts", data: EMOTIONS.map(() => 0), counts: EMOTIONS.map(() => 0),
          backgroundColor: EMOTIONS.map((e) => p.emotion[e]), borderRadius: 3, barPercentage: 0.75,
        }],
      },
      options: {
        indexAxis: "y",
        scales: {
          x: { beginAtZero: true, grace: "18%", ticks: { display: false }, grid: { display: false }, border: { display: false } },
          y: { grid: { display: false }, border: { display: false } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => ` ${fmtPct(item.raw)} (${nPosts(item.dataset.counts[item.dataIndex])})`,
            },
          },
        },
      },
      plugins: [barValueLabels],
    });

    matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  }

  function applyTheme() {
    if (!charts.sentiment) return;
    const p = palette();
    Chart.defaults.color = p.muted;
    Chart.defaults.borderColor = p.grid;
    const donut = charts.sentiment.data.datasets[0];
    donut.backgroundColor = [p.positive, p.negative, p.neutral, p.grid];
    donut.borderColor = p.card;
    for (const ds of charts.timeline.data.datasets) ds.backgroundColor = p[ds.key];
    charts.emotion.data.datasets[0].backgroundColor = EMOTIONS.map((e) => p.emotion[e]);
    for (const chart of Object.values(charts)) {
      for (const scale of Object.values(chart.options.scales || {})) {
        scale.ticks = { ...scale.ticks, color: p.muted };
        scale.grid = { ...scale.grid, color: p.grid };
      }
      if (chart.options.plugins.legend) chart.options.plugins.legend.labels = { ...chart.options.plugins.legend.labels, color: p.muted };
      chart.update("none");
    }
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
    const label = windowLabel(m);

    // Headline numbers.
    setText("kpi-total", fmtInt(total));
    setText("kpi-window", label || "—");
    setText("kpi-positive", total ? fmtPct(sent.positive.pct) : "—");
    setText("kpi-positive-sub", nPosts(sent.positive.count));
    renderNegative(total ? sent.negative.pct : null, sent.negative.count);

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

    mergeTimeline(m.timeline, parseTime(m.start));
    renderTimeline();
    renderSources(m.by_source);
    setText("last-update", `Updated ${clockFmt.format(new Date())}`);
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
    // Only minute buckets belong on this chart: skip a timeline of hourly/daily buckets.
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

  function renderTimeline() {
    const ref = state.serverNow ? state.serverNow.getTime() : Date.now();
    const last = Math.floor(ref / MINUTE) * MINUTE;
    const first = last - (TIMELINE_MINUTES - 1) * MINUTE;
    for (const key of state.timeline.keys()) if (key < first) state.timeline.delete(key);
    if (!charts.timeline) return;
    const labels = [];
    const series = { positive: [], negative: [], neutral: [] };
    for (let t = first; t <= last; t += MINUTE) {
      labels.push(minuteFmt.format(new Date(t)));
      const row = state.timeline.get(t);
      for (const s of SENTIMENTS) series[s].push(row ? row[s] : 0);
    }
    charts.timeline.data.labels = labels;
    for (const ds of charts.timeline.data.datasets) ds.data = series[ds.key];
    charts.timeline.update("none");
  }

  function renderSources(bySource) {
    const entries = Object.entries(bySource || {})
      .map(([name, v]) => ({ name, total: +v.total || 0, positive: +v.positive || 0, negative: +v.negative || 0, neutral: +v.neutral || 0 }))
      .sort((a, b) => b.total - a.total)
      .slice(0, 8);
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

  // ---- feed --------------------------------------------------------------------

  function postNode(p, isNew) {
    const sentiment = SENTIMENTS.includes(p.sentiment) ? p.sentiment : null;
    const created = parseTime(p.created_at);
    const conf = p.confidence != null ? ` ${Math.round(Number(p.confidence) * 100)}%` : "";
    const emotionColor = EMOTIONS.includes(p.emotion) ? `var(--${p.emotion === "neutral" ? "emo-neutral" : p.emotion})` : null;
    return el("li", {
      class: `feed-item${isNew ? " is-new" : ""}`,
      data: { postId: p.post_id ?? "", sentiment: sentiment ?? "pending" },
    },
      el("span", { class: "bar", "aria-hidden": "true" }),
      el("div", { class: "body" },
        el("div", { class: "meta" },
          el("span", {
            class: `chip chip-${sentiment ?? "pending"}`,
            text: sentiment ? `${sentiment}${conf}` : "pending",
            title: sentiment ? `${sentiment}, confidence${conf || " n/a"}${p.model ? ` · ${p.model}` : ""}` : "not analysed yet",
          }),
          p.emotion ? el("span", { class: "emotion", text: p.emotion, style: emotionColor ? { "--emo": emotionColor } : {},
            title: p.emotion_confidence != null ? `emotion confidence ${Math.round(p.emotion_confidence * 100)}%` : null }) : null,
          el("span", { class: "source", text: p.source ?? "" }),
          p.author ? el("span", { class: "author", text: `@${String(p.author).replace(/^@/, "")}`, title: String(p.author) }) : null,
          el("time", {
            class: "time", datetime: p.created_at ?? "", data: { ts: created ? String(created.getTime()) : "" },
            title: created ? fullFmt.format(created) : null, text: relTime(created),
          })),
        el("p", { class: "text", text: p.content ?? "" })));
  }

  function updateFeedMeta() {
    const n = $("feed").children.length;
    $("feed-empty").hidden = n > 0;
    setText("feed-count", n ? `${n} shown` : "");
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
  function setFeed(items) {
    state.feedIds.clear();
    const nodes = [];
    for (const p of items.slice(0, FEED_CAP)) {
      if (p.post_id != null) {
        if (state.feedIds.has(String(p.post_id))) continue;
        state.feedIds.add(String(p.post_id));
      }
      nodes.push(postNode(p, false));
    }
    $("feed").replaceChildren(...nodes);
    updateFeedMeta();
  }

  // Live posts are queued and added once per frame, so a burst costs one layout.
  function queuePost(p) {
    if (!p || typeof p !== "object") return;
    state.pendingPosts.push(p);
    if (state.pendingPosts.length > FEED_CAP) state.pendingPosts.splice(0, state.pendingPosts.length - FEED_CAP);
    if (state.pendingPosts.length === 1) requestAnimationFrame(flushPosts);
  }

  function flushPosts() {
    const batch = state.pendingPosts;
    state.pendingPosts = [];
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

  function ingestAlert(a) {
    if (!a || typeof a !== "object") return;
    const key = alertKey(a);
    state.alerts.set(key, { ...(state.alerts.get(key) || {}), ...a });
    const threshold = toFraction(a.details && a.details.threshold);
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
      return el("li", {
        class: "alert-item",
        data: { alertId: a.id ?? "", state: resolved ? "resolved" : "firing", active: String(active), severity, type: a.alert_type ?? "" },
      },
        el("div", { class: "alert-top" },
          el("span", { class: "alert-state", text: resolved ? "Resolved" : active ? "Firing" : "Fired" }),
          el("span", { class: "alert-severity", text: severity }),
          el("time", { class: "alert-time", datetime: a.created_at ?? "", title: created ? fullFmt.format(created) : null,
            text: created ? clockFmt.format(created) : "" })),
        el("div", { class: "alert-msg", text: a.message || a.alert_type || "alert" }));
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
      el("span", { class: "banner-msg", text: a.message || a.alert_type || "Alert firing" }),
      el("span", { class: "banner-more", text: [
        since ? `since ${clockFmt.format(since)}` : "",
        active.length > 1 ? `+${active.length - 1} more firing` : "",
      ].filter(Boolean).join(" · ") }));
    banner.hidden = false;
  }

  // ---- REST: initial state -------------------------------------------------------

  async function loadInitial() {
    const [metrics, posts, alerts] = await Promise.allSettled([
      fetchJSON("/api/metrics?window_minutes=60&bucket=minute"),
      fetchJSON("/api/posts?limit=30"),
      fetchJSON("/api/alerts?limit=10"),
    ]);
    if (metrics.status === "fulfilled") {
      // Don't overwrite fresher live numbers with the 60-minute view; still take its timeline.
      if (Date.now() - state.lastMetricsAt > 3000) renderMetrics(metrics.value);
      else { mergeTimeline(metrics.value.timeline, parseTime(metrics.value.start)); renderTimeline(); }
    } else console.warn("metrics:", metrics.reason);
    if (posts.status === "fulfilled") setFeed(Array.isArray(posts.value.items) ? posts.value.items : []);
    else console.warn("posts:", posts.reason);
    if (alerts.status === "fulfilled") {
      const items = Array.isArray(alerts.value.items) ? alerts.value.items : [];
      for (const a of [...items].reverse()) ingestAlert(a);  // oldest first, so the latest state wins
      renderAlerts();
    } else console.warn("alerts:", alerts.reason);
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
      if (resumed) loadInitial();  // fill what we missed while away
    };
    ws.onmessage = (ev) => {
      state.lastMessageAt = Date.now();
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (!msg || typeof msg !== "object") return;
      if (msg.type === "metrics") { conn.sawMetrics = true; renderMetrics(msg.data); }
      else if (msg.type === "posts") msg.data.forEach(queuePost);
      else if (msg.type === "post") queuePost(msg.data);
      else if (msg.type === "alert") { ingestAlert(msg.data); renderAlerts(); }
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

  // ---- start -------------------------------------------------------------------

  function start() {
    createCharts();
    renderNegative(null, 0);
    renderTimeline();
    updateFeedMeta();
    renderAlerts();
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
})();
