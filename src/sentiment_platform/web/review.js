// Labelling: the Review panel (a random draw, one post at a time, keys 1/2/3, s, u), the
// quality card (macro-recall on the random labels) and the headline's counted-vs-estimated
// negative share. A random draw is what makes the labels measure the model on this feed, so
// the panel only ever asks for `strategy=random`, with the dashboard's source filter.

import { $, el, api, ApiError, apiKey, fieldsOf, fmtInt } from "./util.js";

const DRAW_SIZE = 20;
const QUALITY_REFRESH_MS = 30_000;
const LABELS = { 1: "negative", 2: "neutral", 3: "positive" };

const review = { items: [], index: 0, labelled: 0, history: [], busy: false, loading: false };

const pct = (n) => `${Number(n).toFixed(1)} %`;
const source = () => $("source-filter").value || undefined;

function message(text, kind = "info") {
  const node = $("review-msg");
  node.textContent = text;
  node.dataset.kind = kind;
}

function current() {
  return review.items[review.index] || null;
}

function render() {
  const post = current();
  const drawn = review.items.length;
  $("review-progress").textContent = drawn
    ? `${fmtInt(review.labelled)} labelled this session · ${fmtInt(Math.min(review.index, drawn))} of ${fmtInt(drawn)} in this draw`
    : `${fmtInt(review.labelled)} labelled this session`;
  const text = $("review-text");
  const meta = $("review-meta");
  if (post) {
    text.textContent = post.content;
    text.dataset.postId = post.post_id;
    meta.textContent = [post.source, post.sentiment ? `model: ${post.sentiment}` : null].filter(Boolean).join(" · ");
  } else {
    text.textContent = review.loading ? "Drawing posts…" : drawn ? "This draw is done. Draw again for more." : "No unlabelled analysed posts to review.";
    delete text.dataset.postId;
    meta.textContent = "";
  }
  for (const b of document.querySelectorAll("#review-actions button[data-action]")) {
    const action = b.dataset.action;
    b.disabled = review.busy || (action === "undo" ? !review.history.length : !post);
  }
}

function showError(err, verb) {
  const keyField = $("api-key");
  if (err instanceof ApiError && err.status === 401) {
    message(apiKey()
      ? `Not ${verb}: the API refused the key (401: ${err.message}). Check the API key field in Alert rules.`
      : `Not ${verb}: this server needs an API key (401: ${err.message}). Enter it in the API key field in Alert rules.`, "error");
    keyField.setAttribute("aria-invalid", "true");
  } else if (err instanceof ApiError && err.status === 422) {
    const fields = fieldsOf(err.body && err.body.detail);
    message(`Not ${verb} (422${fields.length ? `, ${fields.join(", ")}` : ""}): ${err.message}`, "error");
  } else {
    message(`Not ${verb}${err.status ? ` (${err.status})` : ""}: ${err.message}`, "error");
  }
}

export async function drawPosts() {
  if (review.loading) return;
  review.loading = true;
  review.items = [];
  review.index = 0;
  render();
  try {
    const q = new URLSearchParams({ strategy: "random", limit: String(DRAW_SIZE) });
    if (source()) q.set("source", source());
    const page = await api(`/api/review?${q}`);
    review.items = Array.isArray(page.items) ? page.items : [];
    message(review.items.length ? `Drew ${review.items.length} posts at random${source() ? ` from ${source()}` : ""}.` : "");
  } catch (err) {
    message(`Could not draw posts${err.status ? ` (${err.status})` : ""}: ${err.message}`, "error");
  } finally {
    review.loading = false;
    render();
  }
}

async function act(kind) {
  const post = current();
  if (!post || review.busy) return;
  review.busy = true;
  render();
  const id = encodeURIComponent(post.post_id);
  try {
    if (kind === "skip") {
      await api(`/api/review/${id}/skip`, { method: "POST" });
      review.history.push({ post, index: review.index, label: null });
      message("Skipped.", "ok");
    } else {
      await api(`/api/posts/${id}/label`, { method: "PUT", body: { sentiment: kind } });
      review.history.push({ post, index: review.index, label: kind });
      review.labelled += 1;
      message(`Labelled ${kind}.`, "ok");
    }
    $("api-key").removeAttribute("aria-invalid");
    review.index += 1;
    refreshQuality();
  } catch (err) {
    showError(err, kind === "skip" ? "skipped" : "labelled");
  } finally {
    review.busy = false;
    render();
  }
}

async function undo() {
  const last = review.history[review.history.length - 1];
  if (!last || review.busy) return;
  review.busy = true;
  render();
  try {
    if (last.label) {
      await api(`/api/posts/${encodeURIComponent(last.post.post_id)}/label`, { method: "DELETE" });
      review.labelled -= 1;
      message(`Undone: removed the ${last.label} label.`, "ok");
    } else {
      // A skip is recorded for quality's `skipped` count and has no API to take it back.
      message("Back to the skipped post; the skip stays recorded (there is nothing to remove).", "info");
    }
    review.history.pop();
    // Show the post again, where it was in this draw.
    if (review.items[last.index] !== last.post) review.items.splice(last.index, 0, last.post);
    review.index = last.index;
    refreshQuality();
  } catch (err) {
    showError(err, "undone");
  } finally {
    review.busy = false;
    render();
  }
}

// ---- quality -------------------------------------------------------------------

let qualitySeq = 0;
export async function refreshQuality() {
  const seq = ++qualitySeq;
  try {
    const q = await api(`/api/quality${source() ? `?source=${encodeURIComponent(source())}` : ""}`);
    if (seq !== qualitySeq) return;
    const node = $("quality-value");
    const interval = Array.isArray(q.macro_recall_interval) ? q.macro_recall_interval : null;
    if (q.macro_recall == null) node.textContent = "no random labels yet";
    else node.textContent = `${pct(q.macro_recall)}${interval ? ` ± ${((interval[1] - interval[0]) / 2).toFixed(1)}` : ""}`;
    node.title = interval ? `95 % interval ${pct(interval[0])} – ${pct(interval[1])}` : "";
    const counts = $("quality-counts");
    counts.dataset.randomLabels = String(q.random_labels ?? 0);
    counts.textContent = `${fmtInt(q.random_labels)} random labels · ${fmtInt(q.skipped)} skipped · ${fmtInt(q.labels)} labels in all`;
  } catch (err) {
    if (seq === qualitySeq) $("quality-counts").textContent = `Could not load quality: ${err.message}`;
  }
}

// ---- the headline: counted vs estimated ----------------------------------------

/** The negative share as counted and, when the metrics carry one, as estimated from labels. */
export function renderHeadline(m) {
  const node = $("kpi-negative-headline");
  if (!node) return;
  const neg = (m && m.sentiment && m.sentiment.negative) || {};
  if (neg.percentage == null || !Number(m.total)) {
    node.textContent = "";
    node.removeAttribute("title");
    return;
  }
  let text = `counted ${pct(neg.percentage)}`;
  const interval = Array.isArray(neg.estimated_interval) ? neg.estimated_interval : null;
  if (interval && neg.estimated_share != null) {
    text += ` · estimated ${pct(neg.estimated_share)} (± ${((interval[1] - interval[0]) / 2).toFixed(1)})`;
    node.removeAttribute("title");
  } else if (m.estimate && m.estimate.note) {
    node.title = m.estimate.note;
  } else {
    node.removeAttribute("title");
  }
  if (node.textContent !== text) node.textContent = text;
}

// ---- start ---------------------------------------------------------------------

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.isContentEditable || !!target.closest("input, textarea, select");
}

function onKey(ev) {
  if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) return;
  if (document.querySelector("dialog[open]")) return;
  const key = ev.key.toLowerCase();
  if (LABELS[key]) act(LABELS[key]);
  else if (key === "s") act("skip");
  else if (key === "u") undo();
  else return;
  ev.preventDefault();
}

export function initReview() {
  for (const b of document.querySelectorAll("#review-actions button[data-action]")) {
    const action = b.dataset.action;
    b.addEventListener("click", () => (action === "undo" ? undo() : act(action)));
  }
  $("review-draw").addEventListener("click", drawPosts);
  $("source-filter").addEventListener("change", () => { drawPosts(); refreshQuality(); });
  document.addEventListener("keydown", onKey);
  render();
  drawPosts();
  refreshQuality();
  setInterval(refreshQuality, QUALITY_REFRESH_MS);
}
