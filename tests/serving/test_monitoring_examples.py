"""The example Prometheus alert rules and Grafana dashboard (deploy/) name only series the service exports.

A rule or panel on a series that does not exist never fires and never draws: Prometheus does not
complain. So the names in every expression are checked against a real service's /metrics, as
Prometheus would see them (a counter's samples end in _total, a histogram's in _bucket/_sum/_count).
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.serving.conftest import PROJECT

ALERTS = PROJECT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = PROJECT / "deploy" / "grafana" / "revenue-dashboard.json"
# Series Prometheus makes itself for every scrape target, not the service.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
                "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression reads: identifiers that are not functions, keywords,
    label names, label values, durations or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)      # label values and string arguments
    text = re.sub(r"\{[^}]*\}", "", text)                # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)               # range durations ([5m], [$__rate_interval])
    text = _GROUPING.sub("", text)                       # label lists of by (...), on (...) ...
    text = re.sub(r"\$\{?\w+\}?", "", text)              # Grafana variables
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in PROMQL_WORDS}


def exported_series(metrics_text: str) -> set[str]:
    """Every series name a scrape of this text gives Prometheus, samples present or not yet."""
    names = set(re.findall(r"^([A-Za-z_:][\w:]*)(?:\{| )", metrics_text, re.M))
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)", metrics_text, re.M):
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        else:  # gauge, and counter (whose TYPE line already names the _total series), untyped
            names.add(name)
    return names


def alert_expressions() -> dict[str, str]:
    document = yaml.safe_load(ALERTS.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(metric, label): the metric is the first argument.
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found[f"variable {variable['name']}"] = re.sub(r"label_values\((\w+),\s*\w+\)", r"\1", query)
    return found


@pytest.fixture(scope="module")
def exported(http):
    status, _, text = http.get("/metrics")
    assert status == 200
    return exported_series(text)


def test_metric_names_are_read_from_promql_as_prometheus_would():
    # The parser itself, on the shapes the files use (expected names written out by hand).
    assert metric_names('sum by (route, status) (rate(revenue_requests_total{status=~"5.."}[$__rate_interval]))') \
        == {"revenue_requests_total"}
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(a_bucket{route="/predict"}[5m]))) > 0.05') \
        == {"a_bucket"}
    assert metric_names("time() - b_seconds > 900") == {"b_seconds"}
    assert metric_names("c < 0.8 or d > 1.25") == {"c", "d"}
    assert metric_names('up{job="revenue"} == 0') == {"up"}
    assert exported_series("# TYPE h histogram\n# TYPE c_total counter\nc_total{a=\"1\"} 2.0\ng 1.0\n") \
        == {"h_bucket", "h_sum", "h_count", "c_total", "g"}


def test_the_example_alert_rules_are_well_formed():
    document = yaml.safe_load(ALERTS.read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert all(set(group) == {"name", "rules"} and group["rules"] for group in document["groups"])
    # The brief's list: drift, errors, latency, scorer, log writer stalled, spill growing, realised total.
    assert {r["alert"] for r in rules} >= {
        "RevenueDriftWarn", "RevenueDrift", "RevenueServiceDown", "RevenueHighErrorRate", "RevenueSlowPredictions",
        "RevenueScorerDown", "RevenueLogWriterStalled", "RevenueLogBacklog", "RevenueLogSpillGrowing",
        "RevenueRealisedTotalOff"}
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert "for" not in rule or re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_the_log_backlog_alert_can_fire_under_the_default_queue_bound():
    """The queue never holds more than LOG_QUEUE_ROWS: a threshold at or above it never fires."""
    from serving.config import Settings

    document = yaml.safe_load(ALERTS.read_text())
    (rule,) = [r for g in document["groups"] for r in g["rules"] if r["alert"] == "RevenueLogBacklog"]
    threshold = float(re.fullmatch(r"revenue_log_queue_rows > (\d+)", rule["expr"].strip())[1])
    assert threshold < Settings().log_queue_rows


def test_the_grafana_dashboard_is_importable_json_with_unique_panel_ids():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    charts = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(charts) >= 12 and all(p["targets"] and p["gridPos"]["w"] > 0 for p in charts)
    # Every panel reads the data source chosen in the dashboard's own variable, not a hard-coded one.
    assert all(p["datasource"]["uid"] == "${datasource}" for p in charts)


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_every_series_named_is_one_the_service_exports(source, exported):
    expressions = alert_expressions() if source == "alerts" else dashboard_expressions()
    unknown = {where: sorted(metric_names(expr) - exported - PROMETHEUS_OWN)
               for where, expr in expressions.items()}
    assert not {where: names for where, names in unknown.items() if names}, sorted(exported)
    # And each file reads the service at all (a parser returning nothing would pass the line above).
    named = set().union(*(metric_names(expr) for expr in expressions.values()))
    assert len(named & exported) >= 8, named


def test_the_example_prometheus_config_loads_the_rules_and_scrapes_the_job_the_rules_watch():
    config = yaml.safe_load((ALERTS.parent / "prometheus.yml").read_text())
    assert [ALERTS.parent / name for name in config["rule_files"]] == [ALERTS]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    watched = set(re.findall(r'up\{job="([^"]+)"\}', " ".join(alert_expressions().values())))
    assert watched and watched <= set(jobs), (watched, set(jobs))
    assert jobs["revenue"]["metrics_path"] == "/metrics"
    assert jobs["revenue"]["static_configs"][0]["targets"] == ["127.0.0.1:5001"]  # the service's default
