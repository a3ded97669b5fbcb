// The three Chart.js charts (vendor/chart.umd.min.js, loaded as a classic script before the
// modules, sets the global `Chart`). Colours are read from CSS so light/dark stay in one place.

import { $, SENTIMENTS, EMOTIONS, cap, nPosts, fmtPct, fmtInt } from "./util.js";

export const charts = {};

// ---- colours (read from CSS so light/dark stay in one place) ----------------

export function palette() {
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

export function createCharts() {
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

