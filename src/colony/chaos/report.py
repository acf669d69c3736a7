"""A chaos run's report as files: the JSON of everything measured, and one self-contained
HTML page (inline SVG, no script, nothing fetched) with the timeline — throughput, errors and
p99 per second, the fault's window shaded — and the checks, so a person can see what happened
without any tool."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

import msgspec

from colony.chaos.run import ChaosReport

_WIDTH, _HEIGHT, _PAD, _LEFT = 760, 150, 34, 64


def save(report: ChaosReport, folder: Path, name: str) -> tuple[Path, Path]:
    """Write ``name.json`` and ``name.html`` into ``folder``; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.json"
    data.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=1))
    page = folder / f"{name}.html"
    page.write_text(render(report))
    return data, page


def render(report: ChaosReport) -> str:
    timeline = report.load.timeline
    seconds = [s.second for s in timeline]
    window = (report.injected_at_s, report.healed_at_s)
    charts = [
        _chart("Throughput (answers/s)", seconds, [s.completed for s in timeline], window),
        _chart(
            "Errors (failed or unknown arrivals/s)",
            seconds,
            [s.failed + s.unknown for s in timeline],
            window,
            colour="#c0392b",
        ),
        _chart(
            "p99 latency (ms)",
            seconds,
            [s.p99_ms or 0.0 for s in timeline],
            window,
            colour="#8e44ad",
        ),
    ]
    rows = "".join(
        f"<tr class={'ok' if c.ok else 'bad'}><td>{'✓' if c.ok else '✗'}</td>"
        f"<td>{html.escape(c.name)}</td><td>{html.escape(c.detail)}</td></tr>"
        for c in report.checks
    )
    t, o = report.throughput, report.orders
    facts = [
        ("fault", report.fault),
        ("injected / healed at", f"{report.injected_at_s:.1f} s / {report.healed_at_s:.1f} s"),
        ("throughput before / during / after", f"{t.before} / {t.during} / {t.after} per s"),
        ("back to 90 % after the heal", _maybe(t.recovered_after_heal_s, "s")),
        ("checkout p99 during the fault", _maybe(t.checkout_p99_during_ms, "ms")),
        (
            "orders acknowledged / completed / cancelled",
            f"{o.acknowledged} / {o.completed} / {o.cancelled}",
        ),
        ("unknown outcomes", str(o.unknown_outcomes)),
        ("provider requests per order", _maybe(report.provider_requests_per_order, "")),
        (
            "breakers seen open during the fault",
            "; ".join(f"{p}: {', '.join(d)}" for p, d in report.breakers_opened.items()) or "none",
        ),
        ("cancel reasons", "; ".join(f"{n} x {r}" for r, n in o.cancel_reasons.items()) or "none"),
    ]
    fact_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts
    )
    verdict = "passed" if report.ok else "FAILED"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chaos run: {html.escape(report.fault)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}}
h1{{font-size:1.3em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{padding:.25em .6em;text-align:left;border-bottom:1px solid #ddd;vertical-align:top}}
tr.ok td:first-child{{color:#27ae60}} tr.bad td{{color:#c0392b;font-weight:bold}}
.verdict{{font-weight:bold;color:{"#27ae60" if report.ok else "#c0392b"}}}
svg{{display:block;margin:.5em 0 1.2em}} pre{{background:#f6f6f6;padding:1em;overflow:auto}}
</style></head><body>
<h1>Chaos run: {html.escape(report.fault)} — <span class="verdict">{verdict}</span></h1>
<p>{report.config.rate:g} arrivals/s for {report.config.duration:g} s against
{html.escape(report.url)}; the shaded band is the fault.</p>
{"".join(charts)}
<h2>Checks</h2><table>{rows}</table>
<h2>Measured</h2><table>{fact_rows}</table>
<h2>colony verify</h2><pre>{html.escape(report.verify_output)}</pre>
</body></html>
"""


def _chart(
    title: str,
    xs: Sequence[int],
    ys: Sequence[float],
    window: tuple[float, float],
    colour: str = "#2e86c1",
) -> str:
    if not xs:
        return f"<p>{html.escape(title)}: no data</p>"
    x_max = max(max(xs), 1)
    y_max = max(max(ys), 1.0)
    width, height = _WIDTH - _PAD - _LEFT, _HEIGHT - 2 * _PAD

    def x(value: float) -> float:
        return _LEFT + width * value / x_max

    def y(value: float) -> float:
        return _PAD + height * (1 - value / y_max)

    points = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in zip(xs, ys, strict=True))
    start, end = (min(max(v, 0.0), x_max) for v in window)
    label = html.escape(title)
    return f"""<svg width="{_WIDTH}" height="{_HEIGHT}" role="img" aria-label="{label}">
<text x="{_LEFT}" y="16" font-weight="bold">{html.escape(title)}</text>
<rect x="{x(start):.1f}" y="{_PAD}" width="{max(1.0, x(end) - x(start)):.1f}" height="{height}"
 fill="#f5b041" opacity="0.25"/>
<line x1="{_LEFT}" y1="{_PAD + height}" x2="{_LEFT + width}" y2="{_PAD + height}" stroke="#999"/>
<text x="{_LEFT - 4}" y="{_PAD + 4}" text-anchor="end" font-size="11">{y_max:.4g}</text>
<text x="{_LEFT - 4}" y="{_PAD + height}" text-anchor="end" font-size="11">0</text>
<text x="{_LEFT + width}" y="{_HEIGHT - 8}" text-anchor="end" font-size="11">{x_max} s</text>
<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>
</svg>"""


def _maybe(value: float | None, unit: str) -> str:
    return "—" if value is None else f"{value:g} {unit}".strip()
