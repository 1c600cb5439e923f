"""Which charting library the dashboard vendors: uPlot against Chart.js, side by side in headless Chromium.

    .venv/bin/python -m benchmarks.dashboard_charts            # about 2 minutes; JSON in benchmarks/results/

Both draw the dashboard's seven charts from the same data, at the size the page asks for by
default (24 h in 5-minute intervals: 288 points per series) and at the most /stats/timeseries
answers (2,000 intervals): traffic (2 series), latency (3), two histograms (15 and 20 bars),
deciles (2 x 10 bars), total ratio by day (3 series x 30 days). Animations are off in both
(the page redraws every 10 s). Each load is a fresh navigation with the cache disabled, the
libraries served over loopback HTTP; the runs alternate between the two; medians are reported.

Measured in the page: the library's script size, the time to evaluate it, the time from the
first chart call to all seven drawn (after a frame), the time from navigation to all drawn, and
the JavaScript heap after drawing. Chart.js is fetched with `npm pack chart.js@4.6.1` into a
temporary folder (it is not vendored); uPlot is the vendored copy in serving/static/vendor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tarfile
import tempfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.serving.chromium import Browser

PROJECT = Path(__file__).resolve().parents[1]
UPLOT = PROJECT / "serving" / "static" / "vendor" / "uPlot.iife.min.js"
UPLOT_CSS = PROJECT / "serving" / "static" / "vendor" / "uPlot.min.css"
CHARTJS = "chart.js@4.6.1"
RESULTS = PROJECT / "benchmarks" / "results"

# The data, built in the page from a seed so both libraries draw the same numbers.
DATA_JS = """
function data(points) {
  let s = 7; const rand = () => (s = (s * 16807) % 2147483647) / 2147483647;
  const t0 = 1700000000, t = [], users = [], errors = [], p50 = [], p95 = [], p99 = [];
  for (let i = 0; i < points; i++) {
    t.push(t0 + 300 * i);
    const u = Math.round(400 + 300 * Math.sin(i / 40) + 80 * rand());
    users.push(u); errors.push(Math.round(3 * rand()));
    const m = 5 + 3 * rand(); p50.push(m); p95.push(m * 3 + 5 * rand()); p99.push(m * 6 + 20 * rand());
  }
  const hist = (n) => Array.from({length: n}, (_, i) => Math.round(2000 * Math.exp(-i / 4) * (0.8 + 0.4 * rand())));
  const days = Array.from({length: 30}, (_, i) => t0 + 86400 * i);
  const ratio = () => days.map(() => 0.8 + 0.4 * rand());
  return {t, users, errors, p50, p95, p99, revenue: hist(15), payer: hist(20),
          decP: Array.from({length: 10}, (_, i) => Math.exp(i / 2)), decA: Array.from({length: 10}, (_, i) => Math.exp(i / 2) * (0.8 + 0.4 * rand())),
          days, r1: ratio(), r2: ratio(), r3: ratio()};
}
"""

UPLOT_DRAW = """
function draw(d, box) {
  const W = 560, H = 220, idx = (n) => Array.from({length: n}, (_, i) => i);
  const bars = (size, align) => uPlot.paths.bars({size: [size, 80], align: align || 0});
  const line = (label, stroke) => ({label, stroke, width: 2});
  const bar = (label, fill, p) => ({label, fill, stroke: fill, paths: p, points: {show: false}});
  const cat = {scales: {x: {time: false}}};
  new uPlot({width: W, height: H, series: [{}, line("users", "#2563eb"), line("errors", "#c62828")]}, [d.t, d.users, d.errors], box());
  new uPlot({width: W, height: H, series: [{}, line("p50", "#2563eb"), line("p95", "#b35900"), line("p99", "#c62828")]}, [d.t, d.p50, d.p95, d.p99], box());
  new uPlot({width: W, height: H, ...cat, series: [{}, bar("users", "#2563eb", bars(0.8))]}, [idx(15), d.revenue], box());
  new uPlot({width: W, height: H, ...cat, series: [{}, bar("users", "#7c3aed", bars(0.8))]}, [idx(20), d.payer], box());
  new uPlot({width: W, height: H, ...cat, series: [{}, bar("predicted", "#2563eb", bars(0.4, -1)), bar("realised", "#0d9488", bars(0.4, 1))]}, [idx(10), d.decP, d.decA], box());
  new uPlot({width: W, height: H, series: [{}, line("v1", "#2563eb"), line("v2", "#c62828"), line("v3", "#7c3aed")]}, [d.days, d.r1, d.r2, d.r3], box());
  new uPlot({width: W, height: H, series: [{}, line("users", "#2563eb")]}, [d.t, d.users], box());
}
"""

CHARTJS_DRAW = """
function draw(d, box) {
  const canvas = () => { const c = document.createElement("canvas"); c.width = 560; c.height = 220;
                         const b = box(); b.style.width = "560px"; b.style.height = "220px"; b.append(c); return c; };
  const opts = {animation: false, responsive: false, plugins: {legend: {display: true}}};
  const xy = (t, y) => t.map((x, i) => ({x, y: y[i]}));
  const lin = {x: {type: "linear"}};
  const line = (label, data, c) => ({label, data, borderColor: c, pointRadius: 0, borderWidth: 2});
  new Chart(canvas(), {type: "line", data: {datasets: [line("users", xy(d.t, d.users), "#2563eb"), line("errors", xy(d.t, d.errors), "#c62828")]}, options: {...opts, scales: lin, parsing: false}});
  new Chart(canvas(), {type: "line", data: {datasets: [line("p50", xy(d.t, d.p50), "#2563eb"), line("p95", xy(d.t, d.p95), "#b35900"), line("p99", xy(d.t, d.p99), "#c62828")]}, options: {...opts, scales: lin, parsing: false}});
  const labels = (n) => Array.from({length: n}, (_, i) => String(i));
  new Chart(canvas(), {type: "bar", data: {labels: labels(15), datasets: [{label: "users", data: d.revenue, backgroundColor: "#2563eb"}]}, options: opts});
  new Chart(canvas(), {type: "bar", data: {labels: labels(20), datasets: [{label: "users", data: d.payer, backgroundColor: "#7c3aed"}]}, options: opts});
  new Chart(canvas(), {type: "bar", data: {labels: labels(10), datasets: [{label: "predicted", data: d.decP, backgroundColor: "#2563eb"}, {label: "realised", data: d.decA, backgroundColor: "#0d9488"}]}, options: opts});
  new Chart(canvas(), {type: "line", data: {datasets: [line("v1", xy(d.days, d.r1), "#2563eb"), line("v2", xy(d.days, d.r2), "#c62828"), line("v3", xy(d.days, d.r3), "#7c3aed")]}, options: {...opts, scales: lin, parsing: false}});
  new Chart(canvas(), {type: "line", data: {datasets: [line("users", xy(d.t, d.users), "#2563eb")]}, options: {...opts, scales: lin, parsing: false}});
}
"""

PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">{css}
<script>const T_BEFORE_LIB = performance.now();</script>
<script src="/{lib}"></script>
<script>const T_AFTER_LIB = performance.now();</script></head><body><div id="charts"></div>
<script>{data}{draw}
const box = () => {{ const b = document.createElement("div"); document.getElementById("charts").append(b); return b; }};
const d = data(POINTS);
const t0 = performance.now();
draw(d, box);
// uPlot finishes drawing in a microtask, Chart.js (no animation) at once: a task later both are done.
setTimeout(() => {{
  const t1 = performance.now();
  window.RESULT = {{evaluate_ms: T_AFTER_LIB - T_BEFORE_LIB, draw_ms: t1 - t0, navigation_to_drawn_ms: t1,
                   heap_mb: performance.memory ? performance.memory.usedJSHeapSize / 1048576 : null,
                   canvases: document.querySelectorAll("canvas").length}};
}}, 0);
</script></body></html>"""


def chartjs_file(folder: Path) -> Path:
    """chart.umd.min.js from the npm registry, unpacked into ``folder``."""
    packed = subprocess.run(["npm", "pack", CHARTJS, "--silent", "--pack-destination", str(folder)],
                            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    with tarfile.open(folder / packed) as tar:
        tar.extract("package/dist/chart.umd.min.js", folder, filter="data")
    return folder / "package" / "dist" / "chart.umd.min.js"


def write_pages(folder: Path, points: int) -> dict[str, str]:
    (folder / "uPlot.iife.min.js").write_bytes(UPLOT.read_bytes())
    (folder / "uPlot.min.css").write_bytes(UPLOT_CSS.read_bytes())
    pages = {}
    for name, lib, css, draw in (
            ("uplot", "uPlot.iife.min.js", '<link rel="stylesheet" href="/uPlot.min.css">', UPLOT_DRAW),
            ("chartjs", "package/dist/chart.umd.min.js", "", CHARTJS_DRAW)):
        page = PAGE.format(css=css, lib=lib, data=DATA_JS, draw=draw).replace("POINTS", str(points))
        (folder / f"{name}-{points}.html").write_text(page)
        pages[name] = f"{name}-{points}.html"
    return pages


async def measure(base: str, pages: dict[str, str], runs: int) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {name: [] for name in pages}
    async with Browser(width=1200, height=900) as browser:
        await browser.send("Network.setCacheDisabled", cacheDisabled=True)
        for i in range(runs + 1):
            for name, page in (pages.items() if i % 2 == 0 else reversed(pages.items())):
                await browser.open(f"{base}/{page}")
                result = await browser.wait_for("window.RESULT", 60)
                if i > 0:  # the first round warms Chromium's own caches up; not counted
                    out[name].append(result)
        errors = [c for c in browser.console if c["level"] in ("error", "exception")]
        assert not errors, errors
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15, help="page loads per library and size")
    p.add_argument("--points", default="288,2000", help="points per time series, comma-separated")
    p.add_argument("--output", default=str(RESULTS / "dashboard_charts.json"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sizes = {"uplot": UPLOT.stat().st_size, "chartjs": chartjs_file(folder).stat().st_size}
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        report = {"library_bytes": sizes, "runs": args.runs, "sizes": {}}
        try:
            for points in (int(x) for x in args.points.split(",")):
                measured = asyncio.run(measure(base, write_pages(folder, points), args.runs))
                report["sizes"][points] = {name: {k: statistics.median(r[k] for r in runs if r[k] is not None)
                                                  for k in ("evaluate_ms", "draw_ms", "navigation_to_drawn_ms", "heap_mb")}
                                           for name, runs in measured.items()}
        finally:
            server.shutdown()
    _print(report)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2))


def _print(report: dict) -> None:
    b = report["library_bytes"]
    print(f"library size: uPlot {b['uplot'] / 1024:.0f} KiB, Chart.js {b['chartjs'] / 1024:.0f} KiB "
          f"({b['chartjs'] / b['uplot']:.1f}x)  [minified, uncompressed]")
    print(f"medians of {report['runs']} page loads each, seven charts:")
    print(f"{'points per series':>18} {'measure':>24} {'uPlot':>9} {'Chart.js':>9} {'ratio':>6}")
    for points, libs in report["sizes"].items():
        for key, unit in (("evaluate_ms", "ms"), ("draw_ms", "ms"), ("navigation_to_drawn_ms", "ms"), ("heap_mb", "MB")):
            u, c = libs["uplot"][key], libs["chartjs"][key]
            print(f"{points:>18} {key + ' (' + unit + ')':>24} {u:>9.1f} {c:>9.1f} {c / u:>5.1f}x")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    main()
