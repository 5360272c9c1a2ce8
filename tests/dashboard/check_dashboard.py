"""Runs every PromQL expression of grafana/dashboards/*.json through a real Prometheus.

usage: check_dashboard.py PROMETHEUS_URL DASHBOARD.json...

Grafana's interval variables are replaced by fixed windows; each expression must come back
with status "success" and at least one series. Prints one line per expression and exits 1
if any failed.
"""

import json
import sys
import urllib.parse
import urllib.request

SUBSTITUTIONS = {
    "$__rate_interval": "30s",
    "$__interval": "5s",
    "$__range": "5m",
}


def query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def exprs(path):
    dash = json.load(open(path))
    for panel in dash.get("panels", []):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield panel.get("title", "?"), target["expr"]


def main():
    base, paths = sys.argv[1].rstrip("/"), sys.argv[2:]
    failed = 0
    total = 0
    for path in paths:
        for title, expr in exprs(path):
            total += 1
            q = expr
            for k, v in SUBSTITUTIONS.items():
                q = q.replace(k, v)
            try:
                res = query(base, q)
                ok = res.get("status") == "success" and len(res["data"]["result"]) > 0
                why = "" if ok else f"no data ({res.get('status')})"
            except Exception as exc:  # noqa: BLE001 - reported per expression
                ok, why = False, repr(exc)
            print(f"{'PASS' if ok else 'FAIL'} [{title}] {q} {why}")
            failed += 0 if ok else 1
    print(f"dashboard: {total - failed} of {total} expressions returned data")
    sys.exit(1 if failed or total == 0 else 0)


if __name__ == "__main__":
    main()
