#!/usr/bin/env python3
"""Checks for the alert rules and the Grafana dashboard, used by e2e/alerts-test.sh.

  check.py selftest                          the PromQL name extractor on tricky expressions
  check.py lint RULES DASHBOARD              rule metadata (for, severity, annotations, runbook)
                                             and dashboard structure (datasource variable, ids,
                                             grid)
  check.py dashboard-rules DASHBOARD OUT     writes every dashboard query as a recording rule,
                                             so `promtool check rules OUT` parses them all
  check.py names RULES DASHBOARD             prints each metric name referenced, and where
  check.py check RULES DASHBOARD M1 [M2 ...] every referenced name must be a sample name in
                                             one of the scraped /metrics texts M1...; `up` is the
                                             only exception. Exit 1 listing the missing ones.

promtool has no PromQL parser command, so names are extracted by a small tokenizer that skips
strings, label matchers, range/subquery brackets, durations, numbers, keywords, aggregation
and grouping clauses, function names (an identifier followed by `(`) and Grafana variables.
As a second guard, every `brotr_...` word outside strings must be among the extracted names.
Needs PyYAML.
"""
import json
import os
import re
import sys

import yaml

RUNBOOK = "https://github.com/brotr-dev/brotr/blob/main/docs/operations.md#"
SEVERITIES = {"critical", "warning", "info"}
# Names a rule or panel may use that no Brotr binary exports: Prometheus' own per-target series.
ALLOWED = {"up"}

# Reserved words of PromQL: never metric names whatever follows them.
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
               "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
BINARY_KEYWORDS = {"and", "or", "unless", "atan2", "bool"}
# Followed by a parenthesised list of label names.
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
NUMBER_WORDS = {"inf", "nan"}

IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                    r"(?:[smhdwy]|ms)?(?:[0-9]+(?:[smhdwy]|ms))*")
GRAFANA_VAR = re.compile(r"\$(?:\{[^}]*\}|[A-Za-z_][A-Za-z0-9_]*)")
BROTR_WORD = re.compile(r"(?<![A-Za-z0-9_:])brotr_[A-Za-z0-9_:]*")


class PromQLError(ValueError):
    pass


def _skip_string(s, i):
    """Index just past the string literal starting at s[i]."""
    q = s[i]
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and q != "`":
            i += 2
            continue
        if c == q:
            return i + 1
        i += 1
    raise PromQLError(f"unterminated string at {i}")


def _skip_ws(s, i):
    while i < len(s) and s[i].isspace():
        i += 1
    return i


def _matching(s, i, open_c, close_c):
    """Index just past the bracket closing the one at s[i], skipping strings."""
    depth = 0
    while i < len(s):
        c = s[i]
        if c in "\"'`":
            i = _skip_string(s, i)
            continue
        if c == open_c:
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PromQLError(f"unbalanced {open_c}{close_c}")


def _matcher_names(block):
    """Metric names given as `__name__="x"` inside a `{...}` block."""
    names = set()
    for m in re.finditer(r"__name__\s*(=~|!=|!~|=)\s*([\"'`])", block):
        op, start = m.group(1), m.end() - 1
        end = _skip_string(block, start)
        value = block[start + 1:end - 1]
        if op != "=":
            raise PromQLError(f"__name__{op}{value!r}: a name pattern cannot be checked; "
                              "name each metric")
        names.add(value)
    # Prometheus 3 allows a quoted name as the first element: {"name", ...}.
    if re.match(r"\s*[\"'`]", block):
        raise PromQLError("quoted metric name in braces: write it unquoted")
    return names


def metric_names(expr):
    """The metric names a PromQL expression selects (Grafana variables tolerated)."""
    s = expr
    names = set()
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c == "#":
            j = s.find("\n", i)
            i = n if j < 0 else j
        elif c in "\"'`":
            i = _skip_string(s, i)
        elif c == "{":
            j = _matching(s, i, "{", "}")
            names |= _matcher_names(s[i + 1:j - 1])
            i = j
        elif c == "[":
            i = _matching(s, i, "[", "]")  # range, subquery, duration variables
        elif c == "$":
            m = GRAFANA_VAR.match(s, i)
            if not m:
                raise PromQLError(f"stray $ at {i}")
            i = m.end()
        elif c == "@":
            i = _skip_ws(s, i + 1)
            m = IDENT.match(s, i) or NUMBER.match(s, i)
            if not m:
                raise PromQLError(f"@ without a time at {i}")
            i = m.end()  # start()/end(): the parentheses are skipped next as punctuation
        elif c.isdigit() or (c == "." and i + 1 < n and s[i + 1].isdigit()):
            m = NUMBER.match(s, i)
            i = m.end()
        elif IDENT.match(s, i):
            m = IDENT.match(s, i)
            word = m.group(0)
            i = m.end()
            j = _skip_ws(s, i)
            low = word.lower()
            if word in AGGREGATORS or low in BINARY_KEYWORDS or low in NUMBER_WORDS:
                continue
            if word in LABEL_LIST_KEYWORDS:
                if j < n and s[j] == "(":
                    i = _matching(s, j, "(", ")")
                continue
            if word == "offset":
                j2 = j + 1 if j < n and s[j] == "-" else j
                m2 = NUMBER.match(s, j2) or GRAFANA_VAR.match(s, j2)
                if not m2:
                    raise PromQLError(f"offset without a duration at {j}")
                i = m2.end()
                continue
            if j < n and s[j] == "(":
                continue  # a function: its arguments are scanned as they come
            names.add(word)
        elif c in "()+-*/%^=!<>,;":
            i += 1
        else:
            raise PromQLError(f"unexpected {c!r} at {i} in {expr!r}")
    _cross_check(expr, names)
    return names


def _strip_strings(s):
    out, i = [], 0
    while i < len(s):
        if s[i] in "\"'`":
            j = _skip_string(s, i)
            out.append(" ")
            i = j
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _cross_check(expr, names):
    """Every brotr_* word outside strings must have been extracted (guards the tokenizer)."""
    for w in BROTR_WORD.findall(_strip_strings(expr)):
        if w not in names:
            raise PromQLError(f"tokenizer missed {w} in {expr!r}")


# ------------------------------------------------------------------ sources
def load_rules(path):
    with open(path) as f:
        doc = yaml.safe_load(f)
    rules = []
    for g in doc["groups"]:
        for r in g["rules"]:
            rules.append((g["name"], r))
    return rules


def load_dashboard(path):
    with open(path) as f:
        return json.load(f)


def all_panels(dash):
    for p in dash.get("panels", []):
        yield p
        for q in p.get("panels", []) or []:  # panels of a collapsed row
            yield q


def template_query_expr(q):
    """The PromQL inside a Grafana template variable query, or None."""
    text = q.get("query") if isinstance(q, dict) else q
    if not text:
        return None
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", text, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", text, re.S)
    if m:
        return m.group(1)
    raise PromQLError(f"unsupported template query {text!r}")


def dashboard_exprs(dash):
    """(where, expr) for every query of the dashboard: panel targets and template variables."""
    out = []
    for p in all_panels(dash):
        for t in p.get("targets", []) or []:
            if t.get("expr"):
                out.append((f"panel {p['id']} {p.get('title', '')!r} {t.get('refId', '')}",
                            t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            e = template_query_expr(v.get("query"))
            if e:
                out.append((f"variable ${v['name']}", e))
    return out


def rule_exprs(rules):
    return [(f"{g}/{r.get('alert') or r.get('record')}", r["expr"]) for g, r in rules]


def references(rules_path, dash_path):
    """{name: [where, ...]} over the rules and the dashboard."""
    refs = {}
    for where, expr in rule_exprs(load_rules(rules_path)) + dashboard_exprs(
            load_dashboard(dash_path)):
        try:
            found = metric_names(expr)
        except PromQLError as e:
            raise PromQLError(f"{where}: {e}") from None
        if not found:
            raise PromQLError(f"{where}: no metric name in {expr!r}")
        for name in found:
            refs.setdefault(name, []).append(where)
    return refs


def exported(paths):
    """{sample name: [file, ...]} over Prometheus text expositions."""
    out = {}
    for p in paths:
        with open(p) as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
                if name:
                    out.setdefault(name.group(0), set()).add(p)
    return out


# ------------------------------------------------------------------ commands
def cmd_names(rules_path, dash_path):
    for name, where in sorted(references(rules_path, dash_path).items()):
        print(f"{name}\t{len(where)}\t{where[0]}")


def cmd_check(rules_path, dash_path, metrics_paths):
    refs = references(rules_path, dash_path)
    have = exported(metrics_paths)
    families = {n for n in have}
    missing = []
    for name in sorted(refs):
        if name in ALLOWED:
            status = "allowed (Prometheus' own)"
        elif name in have:
            status = "exported in " + ", ".join(sorted(os.path.basename(f) for f in have[name]))
        else:
            status = "MISSING"
            missing.append(name)
        print(f"  {name:55s} {len(refs[name]):3d} uses  {status}")
    n_rules = sum(1 for _ in load_rules(rules_path))
    n_dash = len(dashboard_exprs(load_dashboard(dash_path)))
    print(f"{len(refs)} metric names referenced by {n_rules} rules and {n_dash} dashboard "
          f"queries; {len(families)} sample names exported")
    if missing:
        for name in missing:
            print(f"MISSING {name}: used by " + "; ".join(refs[name]))
        print(f"{len(missing)} referenced metric name(s) are exported by neither binary")
        return 1
    return 0


def cmd_lint(rules_path, dash_path):
    errors = []
    seen = set()
    for group, r in load_rules(rules_path):
        name = r.get("alert")
        if not name:
            continue
        where = f"{group}/{name}"
        if name in seen:
            errors.append(f"{where}: duplicate alert name")
        seen.add(name)
        if not r.get("for"):
            errors.append(f"{where}: no `for:`")
        sev = (r.get("labels") or {}).get("severity")
        if sev not in SEVERITIES:
            errors.append(f"{where}: severity {sev!r} not in {sorted(SEVERITIES)}")
        ann = r.get("annotations") or {}
        for key in ("summary", "description"):
            if not ann.get(key):
                errors.append(f"{where}: no {key} annotation")
        if "$labels" not in ann.get("summary", "") + ann.get("description", "") and \
                not r["expr"].lstrip().startswith("absent("):
            errors.append(f"{where}: summary/description name no $labels")
        if ann.get("runbook_url") != RUNBOOK + name.lower():
            errors.append(f"{where}: runbook_url {ann.get('runbook_url')!r} is not "
                          f"{RUNBOOK + name.lower()}")
    groups = {g for g, _ in load_rules(rules_path)}
    if not groups <= {"brotr", "brotr-operator"}:
        errors.append(f"rule groups {sorted(groups)}: expected brotr / brotr-operator")

    dash = load_dashboard(dash_path)
    if not 36 <= dash.get("schemaVersion", 0) <= 41:
        errors.append(f"dashboard schemaVersion {dash.get('schemaVersion')}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        errors.append("dashboard: no `datasource` variable of type datasource (prometheus)")
    if "namespace" not in variables:
        errors.append("dashboard: no `namespace` variable")
    for v in variables.values():
        if v.get("type") == "query" and v.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"dashboard variable {v['name']}: datasource is not ${{datasource}}")
    ids = set()
    cells = {}
    for p in all_panels(dash):
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            errors.append(f"{where}: duplicate id")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24 or g.get("w", 0) <= 0 or g.get("h", 0) <= 0:
            errors.append(f"{where}: gridPos {g} outside the 24-column grid")
        for x in range(g.get("x", 0), g.get("x", 0) + g.get("w", 0)):
            for y in range(g.get("y", 0), g.get("y", 0) + g.get("h", 0)):
                if (x, y) in cells:
                    errors.append(f"{where}: overlaps {cells[(x, y)]}")
                    break
                cells[(x, y)] = where
            else:
                continue
            break
        if p.get("type") == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}":
            errors.append(f"{where}: datasource is not ${{datasource}}")
        if not p.get("targets"):
            errors.append(f"{where}: no query")
        for t in p.get("targets", []):
            if t.get("datasource", {}).get("uid") != "${datasource}":
                errors.append(f"{where} {t.get('refId')}: datasource is not ${{datasource}}")
    for e in errors:
        print("LINT " + e)
    n_alerts = len(seen)
    n_panels = sum(1 for p in all_panels(dash) if p.get("type") != "row")
    print(f"lint: {n_alerts} alerts, {n_panels} panels, {len(errors)} problems")
    return 1 if errors else 0


def grafana_to_promql(expr):
    """A dashboard query as Prometheus would receive it (Grafana's variables interpolated)."""
    for var, value in (("$__rate_interval", "5m"), ("$__interval", "1m"), ("$__range", "1h")):
        expr = expr.replace(var, value)
    return expr


def cmd_dashboard_rules(dash_path, out_path):
    rules = []
    for k, (where, expr) in enumerate(dashboard_exprs(load_dashboard(dash_path))):
        rules.append({"record": f"dashboard:query_{k}", "expr": grafana_to_promql(expr),
                      "labels": {"where": where}})
    with open(out_path, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
    print(f"{len(rules)} dashboard queries written to {out_path}")
    return 0


SELFTEST = [
    ('up{container="probe", endpoint="metrics"} == 0', {"up"}),
    ('sum by (namespace, job, le) (rate(a_bucket{x="by (b)"}[5m])) > 0.5', {"a_bucket"}),
    ("sum(rate(a_total[$__rate_interval])) by (job) * 60", {"a_total"}),
    ("max without (instance) (a) / ignoring(state) group_left(pod) b{state='x'}", {"a", "b"}),
    ("a and on (namespace, job) group by (namespace, job) (b offset 2d)", {"a", "b"}),
    ("a offset -5m unless b @ 1609746000 or c @ start()", {"a", "b", "c"}),
    ('count_values("v", a) + topk(5, b) + quantile(0.9, c)', {"a", "b", "c"}),
    ('label_replace(a, "dst", "$1", "src", "(.*)") > bool 1e3', {"a"}),
    ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[1h:5m])))", {"a_bucket"}),
    ('time() - max(a{service="monitor"}) > Inf or vector(0) or absent(b == 1)', {"a", "b"}),
    ('{__name__="a", job="x"} + rate(b[5m]) # a comment naming c\n', {"a", "b"}),
    ('a{ns=~"$namespace", job=~"${job}"} * on() group_right c', {"a", "c"}),
    ("rate(a:recorded[1m]) + 0x1F + .5 - 1.5e-3", {"a:recorded"}),
    ("sum(a) without(le) atan2 b", {"a", "b"}),
]


def cmd_selftest():
    failed = 0
    for expr, want in SELFTEST:
        got = metric_names(expr)
        if got != want:
            print(f"FAIL {expr!r}: got {sorted(got)}, want {sorted(want)}")
            failed += 1
    for bad in ['{__name__=~"brotr_.*"}', "a[5m", 'a{b="c}', "brotr_x ? 1"]:
        try:
            metric_names(bad)
            print(f"FAIL {bad!r}: accepted")
            failed += 1
        except PromQLError:
            pass
    total = len(SELFTEST) + 4
    print(f"selftest: {total - failed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    try:
        if cmd == "selftest" and not args:
            return cmd_selftest()
        if cmd == "lint" and len(args) == 2:
            return cmd_lint(*args)
        if cmd == "dashboard-rules" and len(args) == 2:
            return cmd_dashboard_rules(*args)
        if cmd == "names" and len(args) == 2:
            cmd_names(*args)
            return 0
        if cmd == "check" and len(args) >= 3:
            return cmd_check(args[0], args[1], args[2:])
    except PromQLError as e:
        print(f"ERROR {e}")
        return 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
