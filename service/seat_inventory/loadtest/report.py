"""The end of a load run as a table, as JSON, and as a self-contained HTML page
with throughput and latency plotted over time."""

from __future__ import annotations

import html
import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .scenario import Scenario
from .stats import Stats
from .verify import Verification

if TYPE_CHECKING:
    from .runner import ShareResult

__all__ = ["as_dict", "expiries_text", "html_report", "print_report", "verification_text"]

_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def as_dict(
    scenario: Scenario, stats: Stats, verification: Verification, result: ShareResult
) -> dict[str, Any]:
    return {
        "scenario": asdict(scenario) | {"token": "***" if scenario.token else None},
        "duration_s": round(stats.duration_s, 3),
        "rpcs": [asdict(s) for s in stats.summaries()],
        "seats_sold": verification.seats_sold_api,
        "expiries": {
            "abandoned_holds": result.abandoned_holds,
            "abandoned_seats": result.abandoned_seats,
            "seen_by_each_subscriber": list(result.expired_seen),
        },
        "verification": asdict(verification) | {"ok": verification.ok},
        "timeline": stats.timeline(),
    }


def expiries_text(expiries: dict[str, Any]) -> str:
    """The holds left to lapse, and the expiries each subscriber saw on the stream.
    A lapsed seat held again before the sweep reaches it is not reported as
    expired, so a subscriber may see fewer seats than were abandoned."""
    lapsed = (
        f"{expiries['abandoned_holds']} holds ({expiries['abandoned_seats']} seats) left to lapse"
    )
    seen = expiries["seen_by_each_subscriber"]
    if not seen:
        return f"{lapsed}; expiries not watched (--subscribers 0)"
    if min(seen) == max(seen):
        who = "the subscriber" if len(seen) == 1 else f"each of {len(seen)} subscribers"
        return f"{lapsed}; {who} saw {seen[0]} seats expire on the stream"
    return f"{lapsed}; the {len(seen)} subscribers saw {min(seen)} to {max(seen)} seats expire"


def verification_text(v: dict[str, Any]) -> str:
    cancelled = f" ({v['cancelled']} cancelled since)" if v["cancelled"] else ""
    text = (
        f"{v['confirmations']} confirmations{cancelled}, double bookings "
        f"{v['double_bookings']}, lost confirmations {v['lost_confirmations']}"
    )
    if v["wrong_answers"]:
        text += f", wrong answers {v['wrong_answers']}"
    if v["nothing_to_check"]:
        text += "; nothing was confirmed, so nothing was verified"
    if v["incomplete"]:
        text += "; incomplete (see the errors)"
    return text


def print_report(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    table = Table(title=f"seat-inventory loadtest — {data['duration_s']:.1f} s")
    for column in ("RPC", "count", "RPS", "p50 ms", "p95 ms", "p99 ms", "p99.9 ms", "outcomes"):
        table.add_column(
            column,
            justify="left" if column in ("RPC", "outcomes") else "right",
            overflow="fold",
        )
    for r in data["rpcs"]:
        # One outcome a line: a narrow terminal folds them instead of cutting.
        outcomes = "\n".join(f"{k} {v}" for k, v in r["outcomes"].items())
        table.add_row(
            r["rpc"], str(r["count"]), f"{r['rps']:.0f}", f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['p999_ms']:.1f}", outcomes,
        )  # fmt: skip
    console.print(table)
    v = data["verification"]
    sql = f"{v['seats_sold_sql']} in SQL" if v["checked_sql"] else "SQL not read: no --database-url"
    console.print(f"seats sold: {data['seats_sold']} (API; {sql})")
    console.print(f"expiries: {escape(expiries_text(data['expiries']))}")
    verdict = "[green]OK[/green]" if v["ok"] else "[red]FAILED[/red]"
    console.print(f"verification {verdict}: {escape(verification_text(v))}")
    for problem in v["problems"][:20]:
        console.print(f"  [red]{escape(problem)}[/red]")


def _svg_chart(title: str, series: dict[str, list[tuple[int, float]]], unit: str) -> str:
    width, height, pad = 720, 260, 40
    points = [p for s in series.values() for p in s]
    if not points:
        return f"<p>{html.escape(title)}: no data</p>"
    max_x = max(x for x, _ in points) or 1
    max_y = max(y for _, y in points) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
        f'<text x="{pad}" y="16" font-size="14">{html.escape(title)}</text>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 10}" y2="{height - pad}" '
        'stroke="#999"/>',
        f'<line x1="{pad}" y1="24" x2="{pad}" y2="{height - pad}" stroke="#999"/>',
        f'<text x="4" y="30" font-size="11">{max_y:.0f} {unit}</text>',
        f'<text x="{width - 60}" y="{height - 24}" font-size="11">{max_x} s</text>',
    ]
    for index, (name, values) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        coords = " ".join(
            f"{pad + x / max_x * (width - pad - 10):.1f},"
            f"{height - pad - y / max_y * (height - pad - 24):.1f}"
            for x, y in values
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{coords}"/>'
        )
        parts.append(
            f'<text x="{width - 150}" y="{36 + 14 * index}" font-size="12" fill="{colour}">'
            f"{html.escape(name)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def html_report(data: dict[str, Any]) -> str:
    timeline = data["timeline"]
    throughput = {rpc: [(sec, float(n)) for sec, n, _, _ in rows] for rpc, rows in timeline.items()}
    p99 = {f"{rpc} p99": [(sec, p) for sec, _, _, p in rows] for rpc, rows in timeline.items()}
    p50 = {f"{rpc} p50": [(sec, p) for sec, _, p, _ in rows] for rpc, rows in timeline.items()}
    v = data["verification"]
    rows = "".join(
        f"<tr><td>{html.escape(r['rpc'])}</td><td>{r['count']}</td><td>{r['rps']:.0f}</td>"
        f"<td>{r['p50_ms']:.1f}</td><td>{r['p95_ms']:.1f}</td><td>{r['p99_ms']:.1f}</td>"
        f"<td>{r['p999_ms']:.1f}</td><td>"
        + html.escape(", ".join(f"{k} {n}" for k, n in r["outcomes"].items()))
        + "</td></tr>"
        for r in data["rpcs"]
    )
    verdict = "OK" if v["ok"] else "FAILED"
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in v["problems"][:20])
    problems = f"<ul>{problems}</ul>" if problems else ""
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>seat-inventory loadtest</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:right}}
td:first-child,td:last-child{{text-align:left}}</style></head><body>
<h1>seat-inventory loadtest — {data["duration_s"]:.1f} s</h1>
<p>Verification <b>{verdict}</b>: {html.escape(verification_text(v))};
seats sold {data["seats_sold"]}.</p>{problems}
<p>Expiries: {html.escape(expiries_text(data["expiries"]))}.</p>
<table><tr><th>RPC</th><th>count</th><th>RPS</th><th>p50 ms</th><th>p95 ms</th>
<th>p99 ms</th><th>p99.9 ms</th><th>outcomes</th></tr>{rows}</table>
{_svg_chart("calls per second", throughput, "/s")}
{_svg_chart("latency p50 per second", p50, "ms")}
{_svg_chart("latency p99 per second", p99, "ms")}
<h2>Scenario</h2><pre>{html.escape(json.dumps(data["scenario"], indent=2))}</pre>
</body></html>
"""
