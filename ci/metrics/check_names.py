#!/usr/bin/env python3
"""Every metric the chart's dashboard and alerting rules use is one the gateway exports.

Reads the PromQL of every panel target and template variable of
charts/skype-gateway/files/dashboard.json and of every rule of files/alerts.yaml (as a real
Prometheus loaded it), and checks it against scrapes of a real gateway's /metrics (text format,
one file per mode):
  - every metric name is a family of the scrapes (a histogram's `_bucket`, `_sum` and `_count`
    belong to its family, a summary's `_sum` and `_count` to its own);
  - every `label="value"` matcher on an enumerated label (result, reason, call, op) names a
    value some scrape has for that metric, and every `label=~"regex"` on one matches one;
  - every dashboard expression, its variables filled in, is accepted by a real Prometheus'
    query API (promtool checks the rules' syntax; nothing else checks the dashboard's);
  - every query of the dashboard goes to its `datasource` variable.
Before that it checks itself: the name extractor must find known names in sample expressions
and report a made-up one as missing, so a checker that finds nothing is noticed.

Usage: check_names.py METRICS.txt [METRICS.txt ...] --prometheus http://127.0.0.1:9090
(a Prometheus that loaded files/alerts.yaml: the rules are read from its /api/v1/rules, so the
script needs no YAML parser). Standard library only. Exit status 0 when every check passed,
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FILES = REPO / "charts" / "skype-gateway" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"

# Labels whose values the gateway enumerates (and exports from the start, or once the call
# kind has happened); the others (status, route, method, le, and what Prometheus adds) are open.
ENUMERATED_LABELS = {"result", "reason", "call", "op"}

KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_IDENT = re.compile(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$", re.DOTALL)


def hide_strings(expr: str) -> tuple[str, list[str]]:
    """The expression with each string literal replaced by "#N", and the literals' contents, so
    that braces or brackets inside a string (a route template) do not end a selector."""
    literals: list[str] = []

    def hide(m: re.Match) -> str:
        literals.append(m.group(0)[1:-1].encode().decode("unicode_escape"))
        return f'"#{len(literals) - 1}"'

    return _STRING.sub(hide, expr), literals


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are no function, keyword, label in
    a grouping clause or matcher, string, duration or number."""
    text, _ = hide_strings(_VARIABLE.sub("", expr))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    text = _STRING.sub(" ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    return {name for name in _IDENT.findall(text) if name.lower() not in KEYWORDS}


def matchers(expr: str) -> list[tuple[str | None, str, str, str]]:
    """(metric or None, label, operator, value) for each matcher of each selector; a value
    holding a dashboard variable is "$"."""
    text, literals = hide_strings(expr)
    out = []
    for selector in _SELECTOR.finditer(text):
        for label, op, hidden in _MATCHER.findall(selector.group(2)):
            value = literals[int(hidden[1:])]
            out.append((selector.group(1), label, op, "$" if _VARIABLE.search(value) else value))
    return out


def parse_scrape(text: str) -> tuple[dict[str, str], dict[str, dict[str, set[str]]]]:
    """(series name -> family, family -> label -> values) of a text exposition."""
    types = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            types[m.group(1)] = m.group(2)
    names = {}
    for family, kind in types.items():
        names[family] = family
        suffixes = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
        for suffix in suffixes.get(kind, ()):
            names[family + suffix] = family
    values: dict[str, dict[str, set[str]]] = {}
    for line in text.splitlines():
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
        if not m or line.startswith("#") or m.group(1) not in names:
            continue
        labels = values.setdefault(m.group(1), {})
        for label, _, value in _MATCHER.findall(m.group(2) or ""):
            labels.setdefault(label, set()).add(value)
    return names, values


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target (rows' nested panels too) and query variable."""
    out = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    out.append((f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        m = _LABEL_VALUES.match(query or "")
        out.append((f"variable ${var['name']}", m.group(1) if m else query))
    return out


def dashboard_problems(dashboard: dict) -> list[str]:
    """Every query goes to the `datasource` variable (a Prometheus data source the importer
    picks), never to a data source uid of the machine it was drawn on; panel ids are unique."""
    source = {"type": "prometheus", "uid": "${datasource}"}
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    failures = []
    ds = variables.get("datasource", {})
    if ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        failures.append(f"dashboard: no datasource variable of type prometheus (got {ds})")
    ids = []

    def walk(panels):
        for panel in panels:
            ids.append(panel.get("id"))
            if panel.get("type") != "row" and panel.get("datasource") != source:
                failures.append(f"panel {panel.get('title')!r}: datasource {panel.get('datasource')}")
            for target in panel.get("targets", []):
                if target.get("datasource") != source:
                    failures.append(f"panel {panel.get('title')!r}: target datasource {target.get('datasource')}")
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in variables.values():
        if var.get("type") == "query" and var.get("datasource") != source:
            failures.append(f"variable ${var['name']}: datasource {var.get('datasource')}")
    if len(ids) != len(set(ids)):
        failures.append(f"dashboard: panel ids repeat: {ids}")
    return failures


def rule_exprs(rules: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every rule in an answer of Prometheus' /api/v1/rules."""
    return [
        (f"rule {rule['name']}", rule["query"])
        for group in rules["data"]["groups"]
        for rule in group["rules"]
    ]


def get_json(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        return {"status": f"HTTP {e.code}", "error": json.load(e).get("error")}


def problems(exprs, names, values) -> tuple[list[str], int]:
    """Failures, and the number of (expression, metric) uses checked."""
    failures, used = [], 0
    for where, expr in exprs:
        found = metric_names(expr)
        if not found:
            failures.append(f"{where}: no metric name found in {expr!r}")
        for name in sorted(found):
            used += 1
            if name not in names:
                failures.append(f"{where}: {name} is not exported by the gateway")
        for metric, label, op, value in matchers(expr):
            if label not in ENUMERATED_LABELS or op in ("!=", "!~") or value == "$":
                continue
            family_values = set()
            for name in [metric] if metric else sorted(found):
                family_values |= values.get(name, {}).get(label, set())
            ok = value in family_values if op == "=" else any(re.fullmatch(value, v) for v in family_values)
            if not ok:
                failures.append(
                    f"{where}: {metric or 'its metric'}{{{label}{op}\"{value}\"}} matches no exported "
                    f"series (exported {label} values: {sorted(family_values)})"
                )
    return failures, used


def self_test() -> list[str]:
    cases = {
        'sum by (route, status) (rate(skype_gateway_http_requests_total{job=~"$job"}[$__rate_interval]))': {
            "skype_gateway_http_requests_total"
        },
        'histogram_quantile(0.95, sum by (le) (rate(a_seconds_bucket{x="1e3"}[5m]))) > 1e3': {"a_seconds_bucket"},
        'a == 0 and ignoring (op) increase(b_total{op="ping"}[5m] offset 1h) > 0': {"a", "b_total"},
        'sum(rate(r_total{route="/skype/activity-counts/{period}",call=~"a|b"}[5m]))': {"r_total"},
    }
    failures = [
        f"self-test: names of {expr!r} are {metric_names(expr)}, not {want}"
        for expr, want in cases.items()
        if metric_names(expr) != want
    ]
    names, values = parse_scrape(
        '# TYPE h histogram\nh_bucket{le="1"} 0\n# TYPE c counter\nc{result="hit"} 1\n'
    )
    found, _ = problems(
        [("made up", 'rate(made_up_metric_total[5m]) + h_count + c{result="hit"}')], names, values
    )
    if found != ["made up: made_up_metric_total is not exported by the gateway"]:
        failures.append(f"self-test: a made-up metric gave {found}")
    found, _ = problems([("typo", 'c{result="hti"}')], names, values)
    if len(found) != 1:
        failures.append(f"self-test: a label value no series has gave {found}")
    return failures


def prometheus_accepts(base: str, exprs) -> list[str]:
    fill = {"$__rate_interval": "1m", "$__interval": "1m"}
    failures = []
    for where, expr in exprs:
        query = expr
        for var, value in fill.items():
            query = query.replace(var, value)
        query = _VARIABLE.sub(".*", query)
        answer = get_json(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': query})}")
        if answer.get("status") != "success":
            failures.append(f"{where}: Prometheus refused {query!r}: {answer}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scrapes", nargs="+", type=Path, help="/metrics text of a gateway")
    parser.add_argument(
        "--prometheus", required=True, help="base URL of a Prometheus that loaded files/alerts.yaml"
    )
    args = parser.parse_args()

    failures = self_test()
    names: dict[str, str] = {}
    values: dict[str, dict[str, set[str]]] = {}
    for path in args.scrapes:
        scraped_names, scraped_values = parse_scrape(path.read_text())
        names |= scraped_names
        for name, labels in scraped_values.items():
            for label, vals in labels.items():
                values.setdefault(name, {}).setdefault(label, set()).update(vals)
    dashboard = json.loads(DASHBOARD.read_text())
    failures += dashboard_problems(dashboard)
    panel_exprs = dashboard_exprs(dashboard)
    # The rules as the real Prometheus loaded them, so no YAML parser is needed here.
    rules = get_json(f"{args.prometheus}/api/v1/rules")
    if rules.get("status") != "success":
        failures.append(f"GET /api/v1/rules: {rules}")
        rules = {"data": {"groups": []}}
    alerts = re.findall(r"^\s*- alert: (\S+)", ALERTS.read_text(), re.MULTILINE)
    loaded = [rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]]
    if not alerts or sorted(loaded) != sorted(alerts):
        failures.append(f"Prometheus loaded the rules {loaded}, files/alerts.yaml has {alerts}")
    exprs = panel_exprs + rule_exprs(rules)
    found, used = problems(exprs, names, values)
    failures += found
    failures += prometheus_accepts(args.prometheus, panel_exprs)
    families = {names[n] for _, e in exprs for n in metric_names(e) if n in names}
    for failure in failures:
        print(f"  FAIL {failure}")
    if failures:
        print(f"metric names: {len(failures)} problem(s)")
        return 1
    print(
        f"metric names: {len(panel_exprs)} dashboard and {len(loaded)} rule expressions, {used} uses "
        f"of {len(families)} metric families, all exported; every dashboard query accepted by Prometheus"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
