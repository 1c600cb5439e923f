/* The dashboard: reads the service's own JSON routes every 10 s and draws them.
 *
 * Nothing here computes a model metric: every number is one the routes return (see
 * docs/dashboard.md). Values that came from clients (countries, sources) are written with
 * textContent, never as HTML. The API key, when the service needs one, is asked for in the
 * page, kept in sessionStorage and sent as X-API-Key: never in a URL.
 */
"use strict";
(function () {
  const REFRESH_MS = 10000;
  const KEY_STORE = "revenue-dashboard-api-key";
  const WINDOW_STORE = "revenue-dashboard-window";
  // Card colours: the thresholds are in docs/dashboard.md.
  const ERROR_RATE = { warn: 0.01, bad: 0.05 };
  const LATENCY_P95_MS = { warn: 250, bad: 1000 };
  const GINI_DROP = { warn: 0.05, bad: 0.10 };
  const TOTAL_RATIO_OFF = { warn: 0.10, bad: 0.25 };
  const STATUS_CLASS = { ok: "ok", warn: "warn", drift: "bad", insufficient_data: "nodata" };
  const COLOURS = ["#2563eb", "#c62828", "#7c3aed", "#0d9488", "#b35900", "#db2777"];
  const PREDICTION_ROUTES = ["/predict", "/batch_predict", "/invocations"];
  // A route that answered 404 is asked again only after this long: each miss is a row in the log.
  const ABSENT_RETRY_MS = 5 * 60 * 1000;
  const absentSince = {};

  const $ = (selector, root) => (root || document).querySelector(selector);
  const charts = {};
  let timer = null;

  // ---------- formatting ----------
  const num = (x) => typeof x === "number" && isFinite(x);
  const fmtInt = (x) => num(x) ? Math.round(x).toLocaleString("en-US") : "–";
  function fmtUsd(x, digits) {
    if (!num(x)) return "–";
    const a = Math.abs(x);
    if (a >= 1e6) return "$" + (x / 1e6).toFixed(2) + "M";
    if (a >= 1e4) return "$" + (x / 1e3).toFixed(1) + "k";
    return "$" + x.toLocaleString("en-US", { minimumFractionDigits: digits ?? 2, maximumFractionDigits: digits ?? 2 });
  }
  const fmtPct = (x, d) => num(x) ? (100 * x).toFixed(d ?? 1) + "%" : "–";
  const fmtMs = (x) => num(x) ? (x < 10 ? x.toFixed(1) : Math.round(x).toLocaleString("en-US")) + " ms" : "–";
  const fmtNum = (x, d) => num(x) ? x.toFixed(d ?? 2) : "–";
  const fmtTime = (iso) => iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "short", timeStyle: "short" }) : "–";
  const level = (x, t) => !num(x) ? "nodata" : x >= t.bad ? "bad" : x >= t.warn ? "warn" : "ok";

  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") node.textContent = v; else if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const child of children || []) node.append(child);
    return node;
  }

  // ---------- fetching ----------
  async function getJson(path) {
    const route = path.split("?")[0];
    if (Date.now() - (absentSince[route] || -Infinity) < ABSENT_RETRY_MS) return { status: 404, body: null };
    const headers = { Accept: "application/json" };
    const key = sessionStorage.getItem(KEY_STORE);
    if (key) headers["X-API-Key"] = key;
    let response;
    try {
      response = await fetch(path, { headers, cache: "no-store" });
    } catch (error) {
      return { status: 0, body: null };
    }
    let body = null;
    try { body = await response.json(); } catch (error) { /* not JSON: the status says enough */ }
    // Only a route this service lacks is asked again later; a 404 of a route that exists (GET /drift's
    // no_reference) says something about the data and is shown.
    if (routeAbsent(response.status, body)) absentSince[route] = Date.now(); else delete absentSince[route];
    return { status: response.status, body };
  }

  const routeAbsent = (status, body) => status === 404 && (!body || !body.error || body.error === "not_found");

  /** Why a panel has nothing to show, from its route's answer. */
  function whyEmpty(answer, what) {
    if (answer.status === 0) return "The service did not answer.";
    if (routeAbsent(answer.status, answer.body)) return `No data yet: this service has no ${what} route.`;
    if (answer.status === 404) return "No data yet: " + (answer.body.message || answer.body.error) + ".";
    if (answer.status === 503) return `No data yet: ${what} is not available right now` +
      (answer.body && answer.body.message ? ` (${answer.body.message})` : "") + ".";
    if (answer.status !== 200) return `No data: ${what} answered ${answer.status}` +
      (answer.body && answer.body.message ? ` (${answer.body.message})` : "") + ".";
    return null;
  }

  // ---------- panels ----------
  function panel(id) { return document.getElementById(id); }

  function showEmpty(id, message) {
    const p = panel(id);
    const empty = $(".empty", p);
    empty.textContent = message;
    empty.hidden = false;
    for (const c of p.querySelectorAll(".chart, .bars, .table")) c.hidden = true;
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  }

  function showContent(id) {
    const p = panel(id);
    $(".empty", p).hidden = true;
    for (const c of p.querySelectorAll(".chart, .bars, .table")) c.hidden = false;
    return p;
  }

  function card(id, big, sub, status) {
    const c = document.getElementById(id);
    $(".big", c).textContent = big;
    $(".sub", c).textContent = sub || "";
    c.className = "card " + (status || "nodata");
  }

  /** Horizontal bars as HTML: [{label, value, text, status}] sized against the largest value. */
  function bars(id, rows, scaleMax) {
    const box = $(".bars", showContent(id));
    const max = Math.max(scaleMax || 0, ...rows.map((r) => r.value || 0)) || 1;
    box.replaceChildren(...rows.map((r) => el("div", { class: "bar-row", title: r.title || r.label }, [
      el("span", { class: "label", text: r.label }),
      el("span", { class: "track" }, [el("span", {
        class: "fill " + (r.status || ""), style: `display:block;width:${Math.max(0, Math.min(100, 100 * (r.value || 0) / max))}%`,
      })]),
      el("span", { class: "value", text: r.text }),
      ...(r.detail ? [el("span", { class: "detail", text: r.detail })] : []),
    ])));
  }

  function table(container, headers, rows) {
    const head = el("tr", {}, headers.map((h) => el("th", { text: h })));
    const body = rows.map((r) => el("tr", {}, r.map((v) => {
      if (v instanceof Node) return el("td", {}, [v]);
      return el("td", { text: v });
    })));
    container.append(el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]));
  }

  function badge(status, text) {
    return el("span", { class: "badge " + (STATUS_CLASS[status] || status || "nodata"), text: text || status });
  }

  /** A uPlot chart in panel `id`, redrawn in place when only its numbers changed. */
  function plot(id, options, data) {
    const box = $(".chart", showContent(id));
    const width = Math.max(280, box.clientWidth || 560);
    const shape = JSON.stringify([options.series.map((s) => s.label), options.shapeKey || ""]);
    const existing = charts[id];
    if (existing && existing._shape === shape) {
      existing.setData(data);
      return existing;
    }
    if (existing) existing.destroy();
    box.replaceChildren();
    const chart = new uPlot({ width, height: options.height || 220, ...options }, data, box);
    chart._shape = shape;
    charts[id] = chart;
    return chart;
  }

  const barsPath = (size, align) => uPlot.paths.bars({ size: [size, 80], align: align || 0 });

  /** x positions 0..n-1 labelled by `labels`, every k-th one so that labels never overlap. */
  function categoryAxis(labels, label) {
    return {
      label,
      splits: (u) => {
        const every = Math.max(1, Math.ceil(labels.length * 44 / Math.max(1, u.bbox.width / devicePixelRatio)));
        return labels.map((_, i) => i).filter((i) => i % every === 0);
      },
      values: (u, splits) => splits.map((i) => labels[i] ?? ""),
      gap: 4, size: 44,
    };
  }

  /** Solid points on a line only when it has few of them: a lone value between gaps is otherwise invisible. */
  const sparsePoints = (colour) => ({ size: 8, fill: colour, show: (u, si) => u.data[si].filter((v) => v != null).length < 40 });

  function renderTraffic(answer) {
    const why = whyEmpty(answer, "/stats/timeseries");
    if (why) return showEmpty("panel-traffic", why), showEmpty("panel-latency", why);
    const buckets = answer.body.buckets || [];
    if (!buckets.some((b) => b.requests > 0)) {
      const msg = "No data yet: no requests in this window.";
      return showEmpty("panel-traffic", msg), showEmpty("panel-latency", msg);
    }
    const t = buckets.map((b) => Date.parse(b.t) / 1000);
    const step = answer.body.step_s;
    const per = step >= 86400 ? "day" : step >= 3600 ? `${step / 3600} h` : step >= 60 ? `${step / 60} min` : `${step} s`;
    plot("panel-traffic", {
      shapeKey: per,
      series: [{}, { label: `users scored per ${per}`, stroke: COLOURS[0], fill: "rgba(37,99,235,.18)", width: 2, scale: "users" },
               { label: "failed predictions, % of requests", stroke: "rgba(198,40,40,.75)", width: 1, scale: "pct",
                 spanGaps: false, points: sparsePoints(COLOURS[1]), value: (u, v) => (v == null ? "–" : v.toFixed(1) + "%") }],
      scales: { users: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] },
                // 5 % at least: a handful of failures in a quiet interval is not drawn as a wall of red
                pct: { range: (u, lo, hi) => [0, Math.max(5, Math.min(100, hi * 1.1))] } },
      axes: [{}, { scale: "users", label: "users", size: 60 },
             { scale: "pct", side: 1, label: "% failed", grid: { show: false }, size: 50, values: (u, v) => v.map((x) => x + "%") }],
    }, [t, buckets.map((b) => b.users), buckets.map((b) => (b.requests ? 100 * b.errors / b.requests : 0))]);
    const ms = (k) => buckets.map((b) => (num(b[k]) ? b[k] : null));
    plot("panel-latency", {
      series: [{}, { label: "p50 ms", stroke: COLOURS[0], width: 2, spanGaps: true, points: sparsePoints(COLOURS[0]) },
               { label: "p95 ms", stroke: COLOURS[4], width: 2, spanGaps: true, points: sparsePoints(COLOURS[4]) },
               { label: "p99 ms", stroke: COLOURS[1], width: 1.5, dash: [6, 4], spanGaps: true, points: sparsePoints(COLOURS[1]) }],
      scales: { y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
      axes: [{}, { label: "ms", size: 60 }],
    }, [t, ms("p50_ms"), ms("p95_ms"), ms("p99_ms")]);
  }

  /** counts[i] users have edges[i] <= value < edges[i + 1]; the last bin is edges[-1] and above. */
  function renderHistogram(id, histogram, fmt, colour, unit) {
    if (!histogram || !histogram.counts || !histogram.counts.some((c) => c > 0)) {
      return showEmpty(id, "No data yet: no successful predictions in this window.");
    }
    const edges = histogram.edges;
    const labels = edges.map((e, i) => fmt.edge(e) + (i === edges.length - 1 ? "+" : ""));
    const ranges = edges.map((e, i) => fmt.range(e, edges[i + 1]));
    plot(id, {
      shapeKey: labels.join("|"),
      series: [{ label: unit, value: (u, i) => (i == null ? "–" : ranges[i]) },
               { label: "users", fill: colour, stroke: colour, paths: barsPath(0.8), points: { show: false } }],
      scales: { x: { time: false, range: [-0.6, labels.length - 0.4] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi * 1.1)] } },
      axes: [categoryAxis(labels, unit), { label: "users", size: 60 }],
    }, [labels.map((_, i) => i), histogram.counts]);
  }

  const usdEdge = (x) => x === 0 ? "$0" : x < 1 ? Math.round(100 * x) + "¢" : "$" + x;
  const USD_BINS = { edge: usdEdge, range: (lo, hi) => hi == null ? `$${lo} and above` : `$${lo} to $${hi}` };
  const PCT_BINS = { edge: (x) => Math.round(100 * x) + "%",
                     range: (lo, hi) => `${Math.round(100 * lo)}% to ${hi == null ? 100 : Math.round(100 * hi)}%` };

  function renderStats(answer) {
    const why = whyEmpty(answer, "/stats");
    if (why) {
      for (const id of ["card-users", "card-revenue", "card-payer", "card-latency", "card-errors"]) card(id, "–", why, "nodata");
      for (const id of ["panel-revenue-dist", "panel-payer-dist", "panel-countries", "panel-sources", "panel-errors"]) showEmpty(id, why);
      return;
    }
    const s = answer.body;
    const users = s.total_predictions || 0;
    // Failed predictions: what a client asking to be scored saw. Other routes' errors (a mistyped URL)
    // are in the errors panel, not in this rate.
    const byRoute = s.by_route || {};
    const errorsByRoute = s.errors_by_route || {};
    const predictionRequests = PREDICTION_ROUTES.reduce((a, r) => a + ((byRoute[r] || {}).requests || 0), 0);
    const failedPredictions = PREDICTION_ROUTES.reduce(
      (a, r) => a + Object.values(errorsByRoute[r] || {}).reduce((x, y) => x + y, 0), 0);
    const rate = predictionRequests ? failedPredictions / predictionRequests : null;
    const last = s.last_prediction ? "last at " + fmtTime(s.last_prediction) : "none yet in this window";
    card("card-users", fmtInt(users), `${fmtInt(predictionRequests)} prediction requests; ${last}`, "neutral");
    card("card-revenue", fmtUsd(s.total_predicted_revenue, 0),
      users ? `mean ${fmtUsd(s.avg_predicted_revenue)} per user` : "no predictions yet", "neutral");
    card("card-payer", fmtPct(s.avg_payer_probability),
      users && num(s.avg_payer_probability) ? `≈ ${fmtInt(users * s.avg_payer_probability)} payers expected` : "", "neutral");
    const lat = s.latency_ms || {};
    card("card-latency", fmtMs(lat.p95),
      num(lat.p50) ? `median ${fmtMs(lat.p50)} · p99 ${fmtMs(lat.p99)}` : "no requests yet", level(lat.p95, LATENCY_P95_MS));
    card("card-errors", num(rate) ? fmtPct(rate, 2) : "–",
      num(rate) ? `${fmtInt(failedPredictions)} of ${fmtInt(predictionRequests)} prediction requests` : "no prediction requests yet",
      level(rate, ERROR_RATE));

    const errors = Object.entries(s.errors || {}).map(([code, e]) => {
      const routes = Object.entries(errorsByRoute).filter(([, codes]) => codes[code])
        .sort((a, b) => b[1][code] - a[1][code]).map(([route, codes]) => `${route} ${fmtInt(codes[code])}`);
      return { code, requests: e.requests || 0, routes };
    });
    if (errors.length) {
      bars("panel-errors", errors.map((e) => ({
        label: e.code, value: e.requests, text: `${fmtInt(e.requests)} requests`,
        title: e.routes.length ? `${e.code}: ${e.routes.join(", ")}` : e.code,
        status: +e.code >= 500 ? "bad" : "warn",
        detail: e.routes.slice(0, 3).join(" · "),
      })));
    } else {
      showEmpty("panel-errors", s.total_requests ? "No errors in this window." : "No data yet: no requests in this window.");
    }
    const dist = s.distributions || {};
    if (!s.distributions) {
      const msg = "No data yet: this service's /stats has no distributions.";
      showEmpty("panel-revenue-dist", msg); showEmpty("panel-payer-dist", msg);
    } else {
      renderHistogram("panel-revenue-dist", dist.predicted_revenue, USD_BINS, COLOURS[0], "predicted D7 revenue, from");
      renderHistogram("panel-payer-dist", dist.payer_probability, PCT_BINS, COLOURS[2], "payer probability, from");
    }
    topList("panel-countries", s.top_countries, "country");
    topList("panel-sources", s.top_sources, "source");
  }

  function topList(id, rows, key) {
    if (!rows) return showEmpty(id, `No data yet: this service's /stats has no top_${key === "country" ? "countries" : "sources"}.`);
    if (!rows.length) return showEmpty(id, "No data yet: no successful predictions in this window.");
    bars(id, rows.map((r) => ({
      label: r[key] || "(missing)", value: r.predictions,
      text: `${fmtInt(r.predictions)} · ${fmtUsd(r.avg_predicted_revenue)}`,
    })));
  }

  function renderDrift(answer) {
    const why = whyEmpty(answer, "/drift");
    if (why) { card("card-drift", "–", why, "nodata"); return showEmpty("panel-drift", why); }
    const d = answer.body;
    const cols = Object.entries(d.columns || {});
    const measured = cols.filter(([, c]) => num(c.psi));
    const rows = `${fmtInt(d.n)} rows of v${d.model_version} in this window`;
    if (d.status === "insufficient_data" || !measured.length) {
      // Too few rows: a PSI of a handful of users would be noise, so /drift gives none.
      const msg = `No data yet: ${rows}; drift is measured from ${fmtInt(d.min_rows || 500)} rows on.`;
      card("card-drift", "too few rows", msg.replace("No data yet: ", ""), "nodata");
      return showEmpty("panel-drift", msg);
    }
    card("card-drift", d.status, `${rows} vs ${fmtInt(d.reference_n)} in training`, STATUS_CLASS[d.status] || "nodata");
    cols.sort((a, b) => (b[1].psi ?? -1) - (a[1].psi ?? -1));
    bars("panel-drift", cols.map(([name, c]) => ({
      label: name, value: c.psi ?? 0, status: STATUS_CLASS[c.status] || "nodata",
      text: c.psi == null ? "too few rows" : `${fmtNum(c.psi, 3)} ${c.status}`,
      title: `${name}: PSI ${c.psi ?? "n/a"}, status ${c.status}` +
        (num(c.unseen_share) ? `, unseen categories ${fmtPct(c.unseen_share)}` : "") +
        (num(c.missing_share) ? `, missing ${fmtPct(c.missing_share)}` : ""),
      detail: num(c.unseen_share) && c.unseen_share >= 0.01 ? `${fmtPct(c.unseen_share)} in categories training never had` : "",
    })), 0.3);
  }

  function renderPerformance(answer, byDay, info) {
    const why = whyEmpty(answer, "/performance");
    const serving = info && info.model_version;
    const shadowVersion = info && info.shadow ? info.shadow.model_version : null;
    if (why) {
      card("card-quality", "–", why, "nodata");
      for (const id of ["panel-performance", "panel-deciles", "panel-cohorts"]) showEmpty(id, why);
      return;
    }
    const groups = (answer.body.groups || []).filter((g) => !g.by);
    if (!groups.length) {
      const msg = "No data yet: no predictions with labels. Realised revenue arrives through POST /labels " +
        "(or the ingest_labels entry point), seven days after install.";
      card("card-quality", "–", "no labels yet", "nodata");
      for (const id of ["panel-performance", "panel-deciles"]) showEmpty(id, msg);
    } else {
      const box = $(".table", showContent("panel-performance"));
      box.replaceChildren();
      table(box, ["version", "predicted", "labelled", "norm. Gini", "total ratio", "payer AUC", "≤ p90"],
        groups.map((g) => {
          const m = g.metrics;
          // null when the group's users spent nothing (no ratio to a total of 0)
          const ratio = m && num(m.total_ratio)
            ? el("span", { class: "badge " + level(Math.abs(m.total_ratio - 1), TOTAL_RATIO_OFF), text: fmtNum(m.total_ratio) }) : "–";
          const role = g.model_version === serving ? " (serving)" : g.model_version === shadowVersion ? " (shadow)" : "";
          return [`v${g.model_version}${role}`, fmtInt(g.n_predicted),
            fmtInt(g.n_labelled), m ? fmtNum(m.norm_gini, 3) : (g.reason || "not enough labels"), ratio,
            m ? fmtNum(m.payer_auc, 3) : "", m ? fmtPct(m.p90_coverage, 0) : ""];
        }));
      const current = groups.find((g) => g.model_version === serving && g.metrics) || groups.find((g) => g.metrics);
      if (current) {
        const trained = info && info.test_metrics ? info.test_metrics.normalized_gini : null;
        const drop = num(trained) && num(current.metrics.norm_gini) ? trained - current.metrics.norm_gini : null;
        card("card-quality", fmtNum(current.metrics.norm_gini, 3),
          `v${current.model_version}, ${fmtInt(current.n_labelled)} labelled` + (num(trained) ? ` · ${fmtNum(trained, 3)} at training` : ""),
          num(drop) ? level(drop, GINI_DROP) : "neutral");
        renderDeciles(current);
      } else {
        card("card-quality", "–", "fewer labelled users than min_labelled", "nodata");
        showEmpty("panel-deciles", "No data yet: " + (groups[0].reason || "not enough labelled users") + ".");
      }
    }
    renderCohorts(byDay);
  }

  function renderDeciles(group) {
    const deciles = group.metrics.deciles || [];
    if (!deciles.length) return showEmpty("panel-deciles", "No deciles in /performance.");
    const labels = deciles.map((d) => String(d.decile));
    plot("panel-deciles", {
      shapeKey: `v${group.model_version}:${labels.length}`,
      series: [{ label: "decile", value: (u, i) => (i == null ? "–" : labels[i]) },
               { label: `predicted (v${group.model_version})`, fill: COLOURS[0], stroke: COLOURS[0], paths: barsPath(0.4, -1), points: { show: false } },
               { label: "realised", fill: COLOURS[3], stroke: COLOURS[3], paths: barsPath(0.4, 1), points: { show: false } }],
      // Revenue per decile spans four orders of magnitude (cents at the bottom, tens of dollars at the
      // top): a log-like scale (asinh: linear below 1 cent, so 0 stays 0) keeps every bar readable.
      scales: { x: { time: false, range: [-0.6, labels.length - 0.4] },
                y: { distr: 4, asinh: 0.01, range: (u, lo, hi) => [0, Math.max(0.1, hi * 1.5)] } },
      axes: [categoryAxis(labels, "decile of predicted revenue (1 = highest)"),
             { label: "USD per user (log)", size: 60, values: (u, splits) => splits.map((v) => (v > 0 ? usdEdge(v) : "$0")),
               splits: (u) => [0, 0.01, 0.1, 1, 10, 100, 1000, 10000].filter((v) => v <= u.scales.y.max) }],
    }, [labels.map((_, i) => i), deciles.map((d) => d.mean_predicted), deciles.map((d) => d.mean_actual)]);
  }

  function renderCohorts(answer) {
    const why = whyEmpty(answer, "/performance?by=day");
    if (why) return showEmpty("panel-cohorts", why);
    const groups = (answer.body.groups || []).filter((g) => g.metrics && num(g.metrics.total_ratio));
    if (!groups.length) return showEmpty("panel-cohorts", "No data yet: no day with 200 labelled users of one version.");
    const days = [...new Set(groups.map((g) => g.value))].sort();
    const labels = days.map((d) => new Date(Date.parse(d)).toLocaleDateString("en-GB", { day: "numeric", month: "short", timeZone: "UTC" }));
    const versions = [...new Set(groups.map((g) => g.model_version))].sort((a, b) => +a - +b);
    const ratio = (v) => days.map((d) => {
      const g = groups.find((x) => x.model_version === v && x.value === d);
      return g ? g.metrics.total_ratio : null;
    });
    plot("panel-cohorts", {
      shapeKey: versions.join(",") + "|" + days.join(","),
      // Solid points: the first days of a version are lone points, not yet a line.
      series: [{ label: "day", value: (u, i) => (i == null ? "–" : days[i]) },
               ...versions.map((v, i) => ({ label: `v${v}`, stroke: COLOURS[i % COLOURS.length], width: 2, spanGaps: true,
                                                points: { show: true, size: 9, fill: COLOURS[i % COLOURS.length] } })),
               { label: "exact", stroke: "#9ca3af", dash: [4, 4], width: 1, points: { show: false } }],
      // Days as positions labelled by date (not a time axis: a version's first day, alone, would sit on the frame).
      scales: { x: { time: false, range: [-0.6, days.length - 0.4] },
                y: { range: (u, lo, hi) => [Math.min(0.5, lo), Math.max(1.5, hi)] } },
      axes: [categoryAxis(labels, "day of prediction (UTC)"), { label: "predicted / realised", size: 60 }],
    }, [days.map((_, i) => i), ...versions.map(ratio), days.map(() => 1)]);
  }

  /** The served model, its alias moves and the shadow comparison. A service without model following
   * (no `swaps` in /model/info) or without a shadow (`shadow` absent or null) shows no section or a
   * quiet line for them: the page is the same before and after those features. */
  function renderModels(infoAnswer, shadowAnswer) {
    const why = whyEmpty(infoAnswer, "/model/info");
    if (why) return showEmpty("panel-models", why);
    const info = infoAnswer.body;
    const box = $(".table", showContent("panel-models"));
    box.replaceChildren();
    box.append(el("h3", { text: "Served model" }));
    table(box, ["model", "version", "alias", "test norm. Gini"], [[info.model_name || info.model_uri, `v${info.model_version}`,
      info.alias || "", fmtNum((info.test_metrics || {}).normalized_gini, 3)]]);
    if (Array.isArray(info.swaps)) {
      box.append(el("h3", { text: "Model changes (the alias moved: a promotion or a rollback)" }));
      if (!info.swaps.length) box.append(el("p", { class: "quiet", text: "No change since the service started." }));
      else table(box, ["at", "from", "to"], info.swaps.slice(-5).reverse().map((s) => [fmtTime(s.at), `v${s.from_version}`, `v${s.to_version}`]));
    }
    box.append(el("h3", { text: "Shadow comparison (a second model scored on the same users, never answered)" }));
    const shadow = info.shadow;
    if (!shadow) return box.append(el("p", { class: "quiet", text: "No shadow model configured." }));
    if (shadow.model_version == null) return box.append(el("p", { class: "quiet", text: "The shadow model has not answered yet." }));
    const whyShadow = shadowAnswer ? whyEmpty(shadowAnswer, "/shadow") : "No data yet.";
    const sh = shadowAnswer && shadowAnswer.body;
    if (whyShadow || !sh || !sh.n_users) {
      return box.append(el("p", { class: "quiet",
        text: whyShadow || `No data yet: no user scored by both models in this window (shadow v${shadow.model_version}, ${fmtPct(shadow.share, 0)} of users).` }));
    }
    table(box, ["champion", "shadow", "users both scored", "mean shadow / champion", "Spearman", "top-decile overlap"],
      [[`v${sh.champion_version}`, `v${sh.shadow_version} (${fmtPct(shadow.share, 0)} of users)`, fmtInt(sh.n_users),
        fmtNum(sh.mean_ratio, 3), fmtNum(sh.spearman, 3), fmtPct(sh.top_decile_overlap, 0)]]);
  }

  function renderHealth(health, info) {
    const h = $("#health");
    if (health.status === 200) { h.className = "badge ok"; h.textContent = "healthy"; }
    else { h.className = "badge bad"; h.textContent = health.status ? "unavailable" : "not answering"; }
    const b = health.body || (info.status === 200 ? info.body : null);
    $("#model").textContent = b ? `model ${b.model_name || ""} v${b.model_version}` + (b.alias ? ` (@${b.alias})` : "") : "model: unknown";
  }

  /** Each panel draws alone: one that fails says so and the others still show. */
  function guarded(name, draw) {
    try { draw(); } catch (error) { console.warn(`dashboard: ${name} could not be drawn:`, error); }
  }

  // ---------- the loop ----------
  async function refresh() {
    clearTimeout(timer);
    const began = performance.now();
    const since = encodeURIComponent($("#window").value);
    const [health, info, stats, series, drift, perf, perfByDay] = await Promise.all([
      getJson("/health"), getJson("/model/info"), getJson(`/stats?since=${since}`),
      getJson(`/stats/timeseries?since=${since}`), getJson(`/drift?since=${since}`), getJson("/performance"),
      getJson("/performance?by=day"),
    ]);
    // The comparison is a scan of the window: asked for only when a shadow model answers.
    const shadowVersion = info.status === 200 && info.body && info.body.shadow ? info.body.shadow.model_version : null;
    const shadow = shadowVersion != null ? await getJson(`/shadow?since=${since}`) : null;
    const answers = [info, stats, series, drift, perf, perfByDay, ...(shadow ? [shadow] : [])];
    if (answers.some((a) => a.status === 401)) return askForKey(!!sessionStorage.getItem(KEY_STORE));
    $("#key-form").hidden = true;
    $("#board").hidden = false;
    $("#forget-key").hidden = !sessionStorage.getItem(KEY_STORE);
    guarded("health", () => renderHealth(health, info));
    guarded("stats", () => renderStats(stats));
    guarded("traffic", () => renderTraffic(series));
    guarded("drift", () => renderDrift(drift));
    guarded("performance", () => renderPerformance(perf, perfByDay, info.status === 200 ? info.body : null));
    guarded("models", () => renderModels(info, shadow));
    const updated = $("#updated");
    updated.textContent = health.status === 0 ? "the service is not answering; retrying"
      : "updated " + new Date().toLocaleTimeString("en-GB");
    updated.className = health.status === 0 ? "bad-text" : "muted";
    // A slow answer means a busy database: wait 3x as long as this refresh took, so that an open
    // dashboard keeps the service's reads busy at most a quarter of the time.
    timer = setTimeout(refresh, Math.max(REFRESH_MS, 3 * (performance.now() - began)));
  }

  function askForKey(rejected) {
    $("#board").hidden = true;
    $("#key-form").hidden = false;
    $("#key-error").textContent = rejected ? "That key was refused." : "";
    if (rejected) sessionStorage.removeItem(KEY_STORE);
    $("#key-input").focus();
  }

  $("#key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("#key-input").value = "";
    refresh();
  });
  $("#forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); refresh(); });
  $("#window").value = sessionStorage.getItem(WINDOW_STORE) || "24h";
  $("#window").addEventListener("change", () => { sessionStorage.setItem(WINDOW_STORE, $("#window").value); refresh(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      for (const [id, chart] of Object.entries(charts)) {
        const box = $(".chart", panel(id));
        chart.setSize({ width: Math.max(280, box.clientWidth), height: chart.height });
      }
    }, 200);
  });
  refresh();
})();
