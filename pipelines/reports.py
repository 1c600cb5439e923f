"""Charts and tables logged with training and evaluation runs (matplotlib, no display)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from revenue_model import drift as D  # noqa: E402
from revenue_model import metrics as M  # noqa: E402
from revenue_model.features import category_key  # noqa: E402


def data_report(frame: pd.DataFrame) -> tuple[dict, plt.Figure]:
    """Summary numbers and a four-panel figure: concentration, countries, missingness, events."""
    revenue = frame["revenue"].to_numpy(float)
    ordered = np.sort(revenue)[::-1]
    share = np.cumsum(ordered) / max(ordered.sum(), 1e-12)
    country = frame["country"].map(lambda v: category_key("country", v).upper())
    by_country = (pd.DataFrame({"country": country, "revenue": revenue})
                  .groupby("country")["revenue"].agg(["sum", "mean", "count"])
                  .sort_values("sum", ascending=False))
    columns = [c for c in frame.columns if c != "revenue"]
    missing = frame[columns].replace("", np.nan).isna().mean().sort_values(ascending=False)
    summary = {
        "rows": int(len(frame)), "payer_share": float(np.mean(revenue > 0)),
        "top_1pct_revenue_share": float(ordered[: max(len(ordered) // 100, 1)].sum() / max(ordered.sum(), 1e-12)),
        "mean_revenue": float(revenue.mean()), "total_revenue": float(revenue.sum()),
        "missing_share": {k: float(v) for k, v in missing.items()},
        "top_countries_by_revenue": {k: float(v) for k, v in by_country["sum"].head(10).items()},
    }
    fig, ax = plt.subplots(2, 2, figsize=(12, 9))
    ax[0, 0].plot(np.arange(1, len(share) + 1) / len(share) * 100, share * 100)
    ax[0, 0].set(title="Revenue concentration", xlabel="top % of users", ylabel="% of revenue", xscale="log")
    by_country["sum"].head(15).plot.bar(ax=ax[0, 1], title="D7 revenue by country (top 15)")
    missing.plot.barh(ax=ax[1, 0], title="Share missing or empty")
    payers = revenue[revenue > 0]
    ax[1, 1].hist(np.log10(payers), bins=60) if len(payers) else None
    ax[1, 1].set(title=f"log10 revenue of payers ({len(payers)} of {len(revenue)} users pay)")
    fig.tight_layout()
    return summary, fig


def decile_chart(y_true, y_pred, title: str) -> plt.Figure:
    return decile_table_chart(M.decile_table(y_true, y_pred), title)


def decile_table_chart(table: dict, title: str) -> plt.Figure:
    """Mean predicted and mean actual per decile (a table of ``metrics.decile_table``'s form)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    x = np.array(table["decile"])
    ax.bar(x - 0.2, table["mean_predicted"], width=0.4, label="mean predicted")
    ax.bar(x + 0.2, table["mean_actual"], width=0.4, label="mean actual")
    ax.set(title=f"{title}: decile calibration (MAPE {M.mape_of_deciles(table):.1%})",
           xlabel="decile of prediction (1 = highest)", ylabel="USD", yscale="symlog")
    ax.legend()
    fig.tight_layout()
    return fig


def gain_chart(y_true, predictions: dict[str, np.ndarray], title: str) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 6))
    n = len(y_true)
    x = np.arange(1, n + 1) / n
    ax.plot(x, M.gain_curve(y_true, y_true), "k--", label="perfect")
    for name, pred in predictions.items():
        ax.plot(x, M.gain_curve(y_true, pred), label=f"{name} (normalized Gini {M.normalized_gini(y_true, pred):.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
    ax.set(title=f"{title}: gain chart", xlabel="share of users, by prediction", ylabel="share of revenue")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_chart(importance: dict[str, dict[str, float]]) -> plt.Figure:
    """Gain importance per booster, normalised to sum 1 each."""
    frame = pd.DataFrame(importance).fillna(0)
    frame = frame / frame.sum()
    frame = frame.loc[frame.sum(axis=1).sort_values().index]
    fig, ax = plt.subplots(figsize=(9, 9))
    frame.plot.barh(ax=ax, title="Feature importance (share of gain per booster)")
    fig.tight_layout()
    return fig


def gain_points_chart(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> plt.Figure:
    """Gain charts given as points (share of users, share of revenue), e.g. ``metrics.gain_points``."""
    fig, ax = plt.subplots(figsize=(7, 6))
    for i, (name, (x, y)) in enumerate(curves.items()):
        ax.plot(x, y, "k--" if i == 0 else "-", label=name)
    ax.plot([0, 1], [0, 1], ":", color="grey", label="random")
    ax.set(title=f"{title}: gain chart", xlabel="share of users, by prediction", ylabel="share of revenue")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def cohort_bias_chart(cohorts: dict[str, list[tuple[str, float]]], title: str) -> plt.Figure:
    """Total predicted over realised revenue per cohort value, one panel per column (1 = unbiased)."""
    fig, axes = plt.subplots(len(cohorts), 1, figsize=(9, 3.5 * len(cohorts)), squeeze=False)
    for ax, (column, bars) in zip(axes[:, 0], cohorts.items()):
        names = [str(name) for name, _ in bars]
        ratios = [ratio for _, ratio in bars]
        ax.bar(names, ratios, color=["tab:red" if r > 1.2 or r < 0.8 else "tab:blue" for r in ratios])
        ax.axhline(1.0, color="black", linewidth=1)
        ax.set(title=f"{title}: predicted / realised revenue by {column}", ylabel="total ratio")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


_STATUS_COLOURS = {D.OK: "tab:green", D.WARN: "tab:orange", D.DRIFT: "tab:red", D.INSUFFICIENT: "lightgrey"}


def drift_chart(report: dict, title: str) -> plt.Figure:
    """PSI per column, coloured by status, with the warn and drift thresholds."""
    names = list(report["columns"])[::-1]
    entries = [report["columns"][c] for c in names]
    values = [e["psi"] or 0.0 for e in entries]
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.barh(names, values, color=[_STATUS_COLOURS[e["status"]] for e in entries])
    for y, e in enumerate(entries):
        ax.text(values[y], y, f" {e['psi']:.3f}" if e["psi"] is not None else " too few rows",
                va="center", fontsize=8)
    ax.axvline(D.WARN_PSI, color="tab:orange", linestyle="--", label=f"warn ({D.WARN_PSI})")
    ax.axvline(D.DRIFT_PSI, color="tab:red", linestyle="--", label=f"drift ({D.DRIFT_PSI})")
    ax.set(title=f"{title}: PSI per column ({report['n']} rows against {report['reference_n']}), "
                 f"status {report['status']}", xlabel="population stability index",
           xlim=(0, max(max(values) * 1.2, D.DRIFT_PSI * 1.5)))
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig
