// Alert rules: the list with each rule's state, the form to create one, deleting one, and an
// alert's explanation (terms, example posts, webhook deliveries) in a dialog.

import {
  $, el, api, ApiError, apiKey, setApiKey, fieldsOf, parseTime, fullFmt, clockFmt, fmtPct, fmtInt, cap,
} from "./util.js";

const RULES_REFRESH_MS = 15_000;

const rulesState = { rules: [], status: new Map(), loading: false, postNode: null };

// ---- the list -----------------------------------------------------------------

function describeRule(r) {
  const what = r.metric === "volume"
    ? `volume > ${r.threshold}× its 24 h average`
    : r.metric === "emotion_share"
      ? `${r.emotion ?? "emotion"} share > ${fmtPct(r.threshold * 100, 0)}`
      : `negative share > ${fmtPct(r.threshold * 100, 0)}`;
  return `${what} · ${r.window_minutes} min · at least ${fmtInt(r.min_posts)} posts`;
}

function ruleNode(r) {
  const st = rulesState.status.get(r.id);
  const latest = st && st.latest;
  const firing = !!(latest && latest.state === "firing" && !latest.resolved_at);
  const stateName = st === undefined ? "unknown" : firing ? "firing" : "ok";
  const stateText = st === undefined ? "…" : firing ? "Firing" : latest ? "Not firing" : "Not fired yet";
  const keywords = r.keywords && r.keywords.length ? r.keywords : null;
  return el("li", { class: "rule", data: { ruleId: String(r.id), state: stateName } },
    el("div", { class: "rule-top" },
      el("span", { class: "rule-name", text: r.name }),
      r.builtin ? el("span", { class: "tag", text: "built-in" }) : null,
      el("span", { class: `rule-state state-${stateName}`, text: stateText, title: "The state of its latest alert" })),
    el("div", { class: "rule-desc muted small", text: describeRule(r) }),
    el("div", { class: "rule-meta small" },
      el("span", { class: "muted", text: "keywords: " }),
      keywords ? keywords.map((k) => el("span", { class: "kw", text: k })) : el("span", { class: "muted", text: "all posts" }),
      r.source ? [el("span", { class: "muted", text: " · source: " }), el("span", { text: r.source })] : null,
      r.language ? [el("span", { class: "muted", text: " · language: " }), el("span", { text: r.language })] : null,
      el("span", { class: "muted", text: r.unique ? " · each copy once" : " · every copy counted" }),
      // webhook_url is masked (https://host/…) unless the reader holds an API key: shown as is.
      (r.has_webhook ?? r.webhook_url) ? el("span", { class: "muted", text: ` · webhook${r.has_secret ? " (signed)" : ""}`, title: r.webhook_url || "" }) : null),
    el("div", { class: "rule-actions" },
      latest ? el("button", {
        type: "button", class: "btn btn-small", text: firing ? "Why is it firing?" : "Latest alert",
        "aria-label": `Open the latest alert of rule ${r.name}`, on: { click: () => openAlert(latest.id) },
      }) : null,
      r.builtin ? null : el("button", {
        type: "button", class: "btn btn-small btn-danger", text: "Delete",
        "aria-label": `Delete rule ${r.name}`, on: { click: () => deleteRule(r) },
      })));
}

function renderRules() {
  const list = $("rules");
  list.replaceChildren(...rulesState.rules.map(ruleNode));
  $("rules-empty").hidden = rulesState.rules.length > 0;
  const firing = [...rulesState.status.values()].filter((s) => s.latest && s.latest.state === "firing" && !s.latest.resolved_at).length;
  $("rules-count").textContent = rulesState.rules.length
    ? `${rulesState.rules.length} ${rulesState.rules.length === 1 ? "rule" : "rules"} · ${firing} firing`
    : "";
}

function message(id, text, kind = "info") {
  const node = $(id);
  node.textContent = text;
  node.dataset.kind = kind;
}

export async function loadRules() {
  if (rulesState.loading) return;
  rulesState.loading = true;
  try {
    const page = await api("/api/alert-rules");
    rulesState.rules = Array.isArray(page.items) ? page.items : [];
    const known = new Set(rulesState.rules.map((r) => r.id));
    for (const id of [...rulesState.status.keys()]) if (!known.has(id)) rulesState.status.delete(id);
    renderRules();
    // Each rule's state: its latest alert, firing or not.
    await Promise.all(rulesState.rules.map(async (r) => {
      try {
        const alerts = await api(`/api/alerts?limit=1&rule=${encodeURIComponent(r.id)}`);
        rulesState.status.set(r.id, { latest: (alerts.items && alerts.items[0]) || null });
      } catch (err) {
        console.warn("rule state:", err);
      }
    }));
    renderRules();
    if (!rulesState.rules.length) $("rules-empty").textContent = "No rules.";
  } catch (err) {
    $("rules-empty").textContent = `Could not load the rules: ${err.message}`;
    $("rules-empty").hidden = false;
  } finally {
    rulesState.loading = false;
  }
}

// ---- create and delete --------------------------------------------------------

function needKey(err, msgId) {
  const field = $("api-key");
  message(msgId, apiKey()
    ? `The API refused the key (401: ${err.message}). Check the API key field.`
    : `This server needs an API key (401: ${err.message}). Enter it in the API key field and try again.`, "error");
  field.setAttribute("aria-invalid", "true");
  field.focus();
}

const FIELD_IDS = {
  name: "rule-name", keywords: "rule-keywords", source: "rule-source", metric: "rule-metric", emotion: "rule-emotion",
  threshold: "rule-threshold", window_minutes: "rule-window", min_posts: "rule-min-posts",
  webhook_url: "rule-webhook-url", webhook_secret: "rule-webhook-secret",
  language: "rule-language", unique: "rule-unique",
};

function clearInvalid() {
  for (const id of [...Object.values(FIELD_IDS), "api-key"]) $(id).removeAttribute("aria-invalid");
}

function readForm() {
  const value = (id) => $(id).value.trim();
  const number = (id) => (value(id) === "" ? null : Number(value(id)));
  const keywords = value("rule-keywords")
    ? value("rule-keywords").split(",").map((k) => k.trim()).filter(Boolean)
    : [];
  const metric = value("rule-metric");
  const body = {
    name: value("rule-name"),
    keywords,
    metric,
    threshold: number("rule-threshold"),
    window_minutes: number("rule-window"),
    min_posts: number("rule-min-posts"),
  };
  if (value("rule-source")) body.source = value("rule-source");
  if (value("rule-language")) body.language = value("rule-language");
  body.unique = $("rule-unique").checked;
  if (metric === "emotion_share") body.emotion = value("rule-emotion");
  if (value("rule-webhook-url")) body.webhook_url = value("rule-webhook-url");
  if ($("rule-webhook-secret").value) body.webhook_secret = $("rule-webhook-secret").value;
  return body;
}

async function createRule(ev) {
  ev.preventDefault();
  clearInvalid();
  const body = readForm();
  if (!body.name) {
    message("rule-form-msg", "name: give the rule a name.", "error");
    $("rule-name").setAttribute("aria-invalid", "true");
    $("rule-name").focus();
    return;
  }
  const button = $("rule-submit");
  button.disabled = true;
  message("rule-form-msg", "Creating…");
  try {
    const rule = await api("/api/alert-rules", { method: "POST", body });
    message("rule-form-msg", `Created rule “${rule.name}” (id ${rule.id}). It watches posts analysed from now on.`, "ok");
    $("rule-form").reset();
    syncMetric();
    await loadRules();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) needKey(err, "rule-form-msg");
    else if (err instanceof ApiError && err.status === 422) {
      const fields = fieldsOf(err.body && err.body.detail);
      message("rule-form-msg", `Not created (422): ${err.message}`, "error");
      const first = fields.map((f) => FIELD_IDS[f]).find(Boolean);
      for (const f of fields) if (FIELD_IDS[f]) $(FIELD_IDS[f]).setAttribute("aria-invalid", "true");
      if (first) $(first).focus();
    } else {
      message("rule-form-msg", `Not created${err.status ? ` (${err.status})` : ""}: ${err.message}`, "error");
    }
  } finally {
    button.disabled = false;
  }
}

async function deleteRule(rule) {
  if (!confirm(`Delete the rule “${rule.name}”? Its past alerts stay.`)) return;
  message("rules-msg", `Deleting “${rule.name}”…`);
  try {
    await api(`/api/alert-rules/${encodeURIComponent(rule.id)}`, { method: "DELETE" });
    message("rules-msg", `Deleted rule “${rule.name}”.`, "ok");
    await loadRules();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) needKey(err, "rules-msg");
    else message("rules-msg", `Not deleted${err.status ? ` (${err.status})` : ""}: ${err.message}`, "error");
  }
}

function syncMetric() {
  const metric = $("rule-metric").value;
  $("rule-emotion-field").hidden = metric !== "emotion_share";
  $("threshold-hint").textContent = metric === "volume" ? "factor, above 1" : "share, 0–1";
  const t = $("rule-threshold");
  if (metric === "volume" && Number(t.value) <= 1) t.value = "3";
  if (metric !== "volume" && Number(t.value) >= 1) t.value = "0.5";
}

// ---- an alert's explanation ---------------------------------------------------

function table(caption, headers, rows) {
  return el("table", { class: "table" },
    el("caption", { class: "sr-only", text: caption }),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))));
}

function timeText(value) {
  const d = parseTime(value);
  return d ? fullFmt.format(d) : "—";
}

export async function openAlert(id) {
  const dialog = $("alert-dialog");
  const body = $("alert-dialog-body");
  $("alert-dialog-title").textContent = `Alert ${id}`;
  body.replaceChildren(el("p", { class: "muted", text: "Loading…" }));
  if (!dialog.open) dialog.showModal();
  let a;
  try {
    a = await api(`/api/alerts/${encodeURIComponent(id)}`);
  } catch (err) {
    body.replaceChildren(el("p", { class: "form-msg", data: { kind: "error" }, text: `Could not load alert ${id}: ${err.message}` }));
    return;
  }
  const resolved = a.state === "resolved" || !!a.resolved_at;
  $("alert-dialog-title").textContent = `${a.rule_name || "built-in"} · ${resolved ? "resolved" : a.state}`;
  const terms = Array.isArray(a.terms) ? a.terms : [];
  const examples = Array.isArray(a.examples) ? a.examples : [];
  const deliveries = Array.isArray(a.deliveries) ? a.deliveries : [];
  body.replaceChildren(
    el("p", { class: "alert-detail-msg", text: a.message || a.alert_type }),
    el("dl", { class: "facts" },
      el("dt", { text: "Severity" }), el("dd", { text: cap(a.severity || "") }),
      el("dt", { text: "Fired" }), el("dd", { text: timeText(a.created_at) }),
      el("dt", { text: "Resolved" }), el("dd", { text: a.resolved_at ? timeText(a.resolved_at) : "not yet" }),
      el("dt", { text: "Rule" }), el("dd", { text: `${a.rule_name ?? "built-in"} (id ${a.rule_id ?? 0})` })),
    el("section", { class: "detail-section", "aria-labelledby": "terms-title" },
      el("h3", { id: "terms-title", text: "What distinguishes it" }),
      terms.length
        ? table("Terms that distinguish the window's negative posts", ["Term", "In the window's negative posts", "In the previous 24 h", "Score"],
          terms.map((t) => [el("span", { class: "kw", text: t.term }), fmtInt(t.count), fmtInt(t.background_count), Number(t.score).toFixed(2)]))
        : el("p", { class: "muted", text: "No distinguishing terms recorded for this alert." })),
    el("section", { class: "detail-section", "aria-labelledby": "examples-title" },
      el("h3", { id: "examples-title", text: "Example posts" }),
      examples.length
        ? el("ol", { class: "feed feed-static", id: "alert-examples" }, examples.map((p) => rulesState.postNode(p, false)))
        : el("p", { class: "muted", text: "No example posts." })),
    el("section", { class: "detail-section", "aria-labelledby": "deliveries-title" },
      el("h3", { id: "deliveries-title", text: "Webhook deliveries" }),
      deliveries.length
        ? table("Webhook deliveries", ["Event", "Created", "Attempts", "Last result", "Outcome"],
          deliveries.map((d) => [
            d.event, timeText(d.created_at), String(d.attempt),
            d.status != null ? `HTTP ${d.status}` : d.error || "—",
            d.delivered ? "delivered" : d.done ? "given up" : d.next_attempt_at ? `retry at ${clockFmt.format(parseTime(d.next_attempt_at))}` : "pending",
          ]))
        : el("p", { class: "muted", text: "No webhook for this alert." })));
  $("alert-dialog-close").focus();
}

// ---- start ----------------------------------------------------------------------

export function initRules({ postNode }) {
  rulesState.postNode = postNode;
  const keyField = $("api-key");
  keyField.value = apiKey();
  keyField.addEventListener("input", () => { setApiKey(keyField.value.trim()); keyField.removeAttribute("aria-invalid"); });
  $("rule-metric").addEventListener("change", syncMetric);
  $("rule-form").addEventListener("submit", createRule);
  $("rule-form").addEventListener("reset", () => setTimeout(() => { keyField.value = apiKey(); syncMetric(); }));
  // A click on the backdrop closes the dialog.
  $("alert-dialog").addEventListener("click", (ev) => { if (ev.target === ev.currentTarget) ev.currentTarget.close(); });
  syncMetric();
  loadRules();
  setInterval(loadRules, RULES_REFRESH_MS);
}

// An `alert` event: refresh the states soon (several may arrive together).
let refreshTimer = null;
export function alertsChanged() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(loadRules, 300);
}

export function setKnownSources(names) {
  const list = $("known-sources");
  const have = new Set([...list.options].map((o) => o.value));
  for (const n of names) if (!have.has(n)) list.append(el("option", { value: n }));
}

