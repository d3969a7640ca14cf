#!/usr/bin/env python3
"""Checks the chart's dashboard and alert rules against the metrics the platform documents.

Run by scripts/test.sh with promtool on the PATH. Fails when a panel or an alert names a metric
that docs/configuration.md ("Metrics") does not list (renamed or never exported: the panel would
stay empty, the alert silent), when a panel's query does not parse, or when the dashboard is
malformed for Grafana (duplicate ids, panels overlapping or off the grid, a query without the
dashboard's datasource).
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "helm/xinyong/files/dashboard.json"
ALERTS = ROOT / "helm/xinyong/files/alerts.yaml"
DOCS = ROOT / "docs/configuration.md"

# A histogram is documented once and queried through its series.
SERIES_SUFFIXES = ("_bucket", "_sum", "_count")
# Grafana's variables, as Prometheus would receive them.
VARIABLES = {"$__rate_interval": "5m", "$namespace": ".*"}


def documented_metrics():
    names = set(re.findall(r"^\| `(xinyong_[a-z0-9_]+)", DOCS.read_text(), re.MULTILINE))
    if not names:
        sys.exit(f"{DOCS}: no metrics table found")
    return names


def metrics_named(expr):
    names = set()
    for name in re.findall(r"\bxinyong_[a-z0-9_]+", expr):
        for suffix in SERIES_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
        names.add(name)
    return names


def check_dashboard(errors):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = []
    ids = set()
    cells = {}
    for panel in dashboard["panels"]:
        where = f"panel {panel.get('id')} ({panel.get('title')!r})"
        if panel["id"] in ids:
            errors.append(f"{where}: id used twice")
        ids.add(panel["id"])
        grid = panel["gridPos"]
        if grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            errors.append(f"{where}: off the 24-column grid")
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    errors.append(f"{where}: overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = panel["id"]
            else:
                continue
            break
        if panel["type"] == "row":
            continue
        if not panel.get("targets"):
            errors.append(f"{where}: no query")
        for target in panel.get("targets", []):
            if target.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"{where}: query {target.get('refId')} not on the dashboard's datasource")
            exprs.append((where, target["expr"]))
    return exprs


def check_queries_parse(exprs, errors):
    def concrete(expr):
        for variable, value in VARIABLES.items():
            expr = expr.replace(variable, value)
        return expr

    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": concrete(expr)} for index, (_, expr) in enumerate(exprs)
    ]}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(rules, file)
        file.flush()
        checked = subprocess.run(["promtool", "check", "rules", file.name], capture_output=True, text=True)
    if checked.returncode != 0:
        errors.append("a dashboard query does not parse:\n" + checked.stdout + checked.stderr)


def main():
    errors = []
    documented = documented_metrics()
    exprs = check_dashboard(errors)
    check_queries_parse(exprs, errors)
    alerts = yaml.safe_load(ALERTS.read_text())
    exprs += [(f"alert {rule['alert']}", rule["expr"]) for group in alerts["groups"] for rule in group["rules"]]
    for where, expr in exprs:
        for name in sorted(metrics_named(expr) - documented):
            errors.append(f"{where}: {name} is not in docs/configuration.md's metrics")
    if errors:
        sys.exit("\n".join(errors))
    print(f"dashboard and alerts: {len(exprs)} queries over documented metrics")


if __name__ == "__main__":
    main()
