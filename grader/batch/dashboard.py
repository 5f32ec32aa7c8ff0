"""The class dashboard: one self-contained HTML page (no scripts, no network).

A score histogram and per-item pass rates drawn as SVG images (data URIs), the items the
class gets wrong most often first, the slowest submissions and the lowest final scores,
each linking to the student's report. Students whose grade is not final (could not be
graded, or an item needs review) come first, in a list of their own, and are left out of
the statistics: a grader-side problem never shows as a low score. The TA's week follows
(``_ta_sections``): the manual items still to grade, the items a TA adjusted (automatic and
adjusted points, the comment, who and when) and the adjustments the last export dropped.
Scores are the adjusted ones throughout. When ``grader similarity``
has written ``similarity.json`` into the batch folder, the pairs above its threshold are
listed with links to their shared code side by side (``similarity.html``).
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from pathlib import Path
from typing import Any

import jinja2

from ..manual import where_found
from ..rubric import Rubric
from .exports import atomic_text
from .gradebook import Row

__all__ = ["write_dashboard", "refresh_dashboard", "histogram_svg", "bars_svg", "STYLE"]

STYLE = """body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: .3em .5em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00020; } .muted { color: #777; }
"""   # the look of the TA's pages (this one and grader similarity's)

_PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}: class dashboard</title>
<style>
""" + STYLE + """body { max-width: 1100px; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
.card b { display: block; font-size: 1.5em; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; }
</style></head><body>
<h1>{{ title }} <span class="muted">({{ assignment }})</span></h1>
<div class="cards">
  <div class="card">students<b>{{ summary.students }}</b></div>
  <div class="card">mean score<b>{{ mean }}</b><span class="muted">of {{ max_score }}</span></div>
  <div class="card">median<b>{{ median }}</b></div>
  <div class="card">full marks<b>{{ full }}</b></div>
  <div class="card">could not grade<b class="{{ 'bad' if errors else '' }}">{{ errors }}</b></div>
  <div class="card">needs review<b class="{{ 'bad' if review else '' }}">{{ review|length }}</b>
  </div>
  <div class="card">skipped entries<b>{{ summary.skipped|length }}</b></div>
  {{ ta_cards|safe }}
</div>
{% if review %}<h2 id="needs-review">Needs review: grades that are not final</h2>
<p class="muted">A problem on the grader's side (not a verdict on the work): these students'
grades are blank in brightspace.csv and canvas.csv and listed in needs-review.csv; open each
report, regrade or grade the items by hand. They are left out of the statistics below.</p>
<table><tr><th>student</th><th>score so far</th><th>items</th><th>why</th></tr>
{% for r in review %}<tr class="review"><td>
{% if r.report %}<a href="{{ r.link }}">{{ r.student }}</a>{% else %}{{ r.student }}{% endif %}
{{ r.name }}</td>
<td class="num">{{ r.score_text }}</td><td>{{ r.items }}</td><td>{{ r.why }}</td></tr>
{% endfor %}</table>{% endif %}
{{ ta_sections|safe }}
<h2>Scores</h2>
{% if pending_students %}<p class="muted">{{ pending_students }} student(s) have manual items
pending: those count 0 here until a TA grades them.</p>{% endif %}
<img class="plot" alt="histogram of the class's scores" src="{{ hist }}">
<h2>Which properties the class gets wrong</h2>
<img class="plot" alt="pass rate of each rubric item" src="{{ bars }}">
<table><tr><th>item</th><th>visibility</th><th>points</th><th>passed</th><th>pass rate</th></tr>
{% for it in items %}<tr><td>{{ it.id }}<br><span class="muted">{{ it.title }}</span></td>
<td>{{ it.visibility }}</td><td class="num">{{ it.points }}</td>
<td class="num">{{ it.passed }}/{{ it.total }}</td>
<td class="num {{ 'bad' if it.rate < 0.5 else '' }}">{{ '%.0f'|format(100 * it.rate) }} %</td></tr>
{% endfor %}</table>
<h2>Lowest final scores</h2>
<table><tr><th>student</th><th>score</th><th>what</th></tr>
{% for r in worst %}<tr><td>{% if r.report %}<a href="{{ r.link }}">{{ r.student }}</a>
{% else %}{{ r.student }}{% endif %} {{ r.name }}</td>
<td class="num">{{ r.score_text }}</td><td>{{ r.what }}</td></tr>{% endfor %}</table>
<h2>Slowest submissions</h2>
<table><tr><th>student</th><th>seconds</th><th>peak kernel memory (MiB)</th></tr>
{% for r in slowest %}<tr><td>{{ r.student }}</td>
<td class="num">{{ '%.1f'|format(r.duration_s) }}</td>
<td class="num">{{ r.peak_rss_mb if r.peak_rss_mb is not none else '' }}</td></tr>
{% endfor %}</table>
{% if similar %}<h2 id="similarity">Similar submissions</h2>
<p class="muted"><code>grader similarity</code> ({{ similar.generated }}): {{ similar.above }} of
{{ similar.compared }} pairs have a similarity of at least {{ similar.threshold }} (the part
of both students' own code that they share; the template's code left out). A reason to look,
not a verdict: open their shared code side by side; every pair is in similarity.csv. Run it
again after grading new submissions.</p>
{% if similar.pairs %}<table><tr><th>student</th><th>student</th><th>similarity</th>
<th>shared code</th></tr>
{% for p in similar.pairs[:50] %}<tr class="similar"><td>{{ p.student_a }} {{ p.name_a }}</td>
<td>{{ p.student_b }} {{ p.name_b }}{% if p.cohort_b %} ({{ p.cohort_b }}){% endif %}</td>
<td class="num bad">{{ '%.2f'|format(p.similarity) }}</td>
<td><a href="{{ p.side_by_side }}">side by side</a></td></tr>{% endfor %}</table>
{% if similar.above > 50 %}<p>and {{ similar.above - 50 }} more: similarity.csv</p>{% endif %}
{% else %}<p>No pair above the threshold.</p>{% endif %}{% endif %}
{% if summary.skipped %}<h2>Skipped entries of the export</h2>
<table><tr><th>entry</th><th>why</th></tr>{% for s in summary.skipped %}
<tr><td>{{ s.source }}</td><td>{{ s.reason }}</td></tr>{% endfor %}</table>{% endif %}
<p class="muted">rubric {{ summary.rubric_sha256[:12] }} · {{ summary.layout }} export ·
graded in {{ summary.seconds }} s</p>
</body></html>
""", autoescape=True)


_TA_CARDS = jinja2.Template("""
  <div class="card">manual items pending<b class="{{ 'bad' if pending else '' }}">{{
    pending|length }}</b></div>
  <div class="card">adjusted items<b>{{ adjusted|length }}</b></div>""", autoescape=True)

_TA_SECTIONS = jinja2.Template("""
{% if pending %}<h2 id="pending">Manual items to grade</h2>
<p class="muted">Graded by a TA, not by the grader: these grades are blank in brightspace.csv and
canvas.csv until then. Each report shows the criteria and the student's answer; give the points
with <code>grader adjust OUT STUDENT ITEM --points P --comment TEXT</code> (or
<code>--file</code>).</p>
<table><tr><th>student</th><th>item</th><th>points</th><th>answer</th></tr>
{% for p in pending %}<tr class="pending"><td>{% if p.report %}<a href="{{ p.link }}">{{
p.student }}</a>{% else %}{{ p.student }}{% endif %} {{ p.name }}</td><td>{{ p.item }}</td>
<td class="num">{{ p.points }}</td><td>{{ p.found }}</td></tr>{% endfor %}</table>{% endif %}
{% if adjusted %}<h2 id="adjusted">Adjusted items</h2>
<p class="muted">A TA's points replace the grader's in every export while the rubric item is
unchanged.</p>
<table><tr><th>student</th><th>item</th><th>automatic</th><th>adjusted</th><th>comment</th>
<th>by</th><th>when</th></tr>
{% for a in adjusted %}<tr class="adjusted"><td>{% if a.report %}<a href="{{ a.link }}">{{
a.student }}</a>{% else %}{{ a.student }}{% endif %}</td><td>{{ a.item }}</td>
<td class="num">{{ a.automatic }}</td><td class="num">{{ a.score }} / {{ a.max_score }}</td>
<td>{{ a.comment }}</td><td>{{ a.by }}</td><td>{{ a.at }}</td></tr>{% endfor %}</table>
{% endif %}
{% if dropped %}<h2 id="dropped">Adjustments dropped: grade these again</h2>
<table><tr><th>student</th><th>item</th><th>points</th><th>comment</th><th>by</th><th>why</th></tr>
{% for d in dropped %}<tr class="dropped"><td>{{ d.student }}</td><td>{{ d.item }}</td>
<td class="num">{{ d.points }}</td><td>{{ d.comment }}</td><td>{{ d.by }}</td>
<td>{{ d.why }}</td></tr>{% endfor %}</table>{% endif %}
""", autoescape=True)


def _ta_views(rows: list[Row]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The manual items still to grade, and the adjusted items, one line each."""
    pending = [{"student": r.student, "name": r.name, "report": r.report, "link": _link(r),
                "item": i.id, "points": f"{i.max_score:g}",
                "found": where_found(i.message)[:200]}
               for r in rows for i in r.pending]
    adjusted = [{"student": r.student, "report": r.report, "link": _link(r), "item": i.id,
                 "automatic": f"{a.automatic_score:g}", "score": f"{i.score:g}",
                 "max_score": f"{i.max_score:g}", "comment": a.comment, "by": a.by, "at": a.at}
                for r in rows for i in r.items if (a := i.adjustment) is not None]
    return pending, adjusted


def _ta_sections(rows: list[Row], summary: dict[str, Any]) -> dict[str, str]:
    """The dashboard's TA blocks (cards and sections), rendered apart from the page."""
    pending, adjusted = _ta_views(rows)
    dropped = summary.get("adjustments_dropped", [])
    return {"ta_cards": _TA_CARDS.render(pending=pending, adjusted=adjusted),
            "ta_sections": _TA_SECTIONS.render(pending=pending, adjusted=adjusted,
                                               dropped=dropped),
            "pending_students": str(sum(bool(r.pending) for r in rows if not r.needs_review)
                                    or "")}


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")


def histogram_svg(scores: list[float], max_score: float, bins: int = 10) -> str:
    """An SVG histogram of ``scores`` over [0, max_score]."""
    width, height, pad = 640, 240, 36
    counts = [0] * bins
    for s in scores:
        k = min(bins - 1, int(bins * s / max_score)) if max_score > 0 else 0
        counts[max(0, k)] += 1
    top = max(counts + [1])
    bar_w = (width - 2 * pad) / bins
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" '
             f'fill="white"/>']
    for k, c in enumerate(counts):
        h = (height - 2 * pad) * c / top
        x, y = pad + k * bar_w, height - pad - h
        parts.append(f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" '
                     f'height="{h:.1f}" fill="#3b6fb6"/>')
        if c:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}" '
                         f'text-anchor="middle">{c}</text>')
        parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - pad + 14}" '
                     f'text-anchor="middle">{max_score * k / bins:.3g}</text>')
    parts.append(f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">score (of '
                 f'{max_score:g})</text></svg>')
    return "".join(parts)


def bars_svg(labels: list[str], rates: list[float]) -> str:
    """Horizontal bars: the pass rate of each label, in [0, 1]."""
    row, left, width = 22, 230, 640
    height = row * len(labels) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" '
             f'fill="white"/>']
    for k, (label, rate) in enumerate(zip(labels, rates)):
        y = 10 + k * row
        w = (width - left - 50) * rate
        colour = "#b00020" if rate < 0.5 else "#d08800" if rate < 0.8 else "#2e7d32"
        parts.append(f'<text x="{left - 6}" y="{y + 14}" text-anchor="end">'
                     f'{html.escape(label[:36])}</text><rect x="{left}" y="{y + 3}" '
                     f'width="{w:.1f}" height="{row - 6}" fill="{colour}"/><text '
                     f'x="{left + w + 4:.1f}" y="{y + 14}">{100 * rate:.0f} %</text>')
    parts.append("</svg>")
    return "".join(parts)


def similarity_view(folder: Path) -> dict[str, Any] | None:
    """The pairs above the threshold in ``folder/similarity.json`` (``grader similarity``),
    for the dashboard's own section; None when there is none or it cannot be read."""
    try:
        doc = json.loads((folder / "similarity.json").read_text())
        pairs = [p for p in doc["pairs"] if p.get("above_threshold")]
        return {"generated": str(doc.get("generated", "")), "threshold": doc["threshold"],
                "above": doc["above_threshold"], "compared": doc["pairs_compared"],
                "pairs": [{**p, "side_by_side": f"similarity.html#pair-{int(p['rank'])}"}
                          for p in pairs]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _link(row: Row) -> str:
    return (row.report or "").replace("report.json", "report.html")


def _review_view(row: Row) -> dict[str, Any]:
    """One student whose grade is not final, for the "needs review" table."""
    graded = row.status == "graded"
    why = "; ".join(f"{i.id}: {i.error_kind or 'error'}" for i in row.review)
    return {"student": row.student, "name": row.name, "report": row.report, "link": _link(row),
            "score_text": f"{row.score:.4g} (provisional)" if graded else "error",
            "items": ", ".join(i.id for i in row.review) if graded else "all",
            "why": why if graded else row.message}


def _item_rates(rubric: Rubric, final: list[Row]) -> list[dict[str, Any]]:
    """Each item's pass rate over the students with a verdict on it (items under review and
    manual items not yet graded left out)."""
    items = []
    for item in rubric.items:
        outcomes = [i for r in final for i in r.items if i.id == item.id
                    and not i.awaits_review and not i.awaits_grading]
        passed = sum(i.passes for i in outcomes)
        items.append({"id": item.id, "title": item.title, "visibility": item.visibility,
                      "points": f"{item.points:g}", "passed": passed, "total": len(outcomes),
                      "rate": passed / len(outcomes) if outcomes else 0.0})
    items.sort(key=lambda i: (i["rate"], i["id"]))
    return items


def write_dashboard(rows: list[Row], rubric: Rubric, path: Path, summary: dict[str, Any]
                    ) -> None:
    """The page; statistics count final grades only, students under review are listed."""
    final = [r for r in rows if not r.needs_review]
    graded = [r for r in rows if r.status == "graded"]
    scores = [r.score for r in final]
    items = _item_rates(rubric, graded)
    worst = [{"student": r.student, "name": r.name, "report": r.report, "link": _link(r),
              "score_text": f"{r.score:.4g}",
              "what": ", ".join(i.id for i in r.items if not i.passes) or "-"}
             for r in sorted(final, key=lambda r: r.score)[:15] if r.score < rubric.max_score]
    slowest = sorted((r for r in graded if r.duration_s is not None),
                     key=lambda r: -(r.duration_s or 0))[:10]
    review = [_review_view(r) for r in sorted(rows, key=lambda r: (r.status != "error",
                                                                    r.student))
              if r.needs_review]
    page = _PAGE.render(
        title=rubric.title, assignment=rubric.assignment, summary=summary,
        mean=f"{statistics.mean(scores):.3g}" if scores else "-",
        median=f"{statistics.median(scores):.3g}" if scores else "-",
        max_score=f"{rubric.max_score:g}",
        full=sum(s >= rubric.max_score - 1e-9 for s in scores),
        errors=sum(r.status == "error" for r in rows), review=review,
        hist=_data_uri(histogram_svg(scores, rubric.max_score)),
        bars=_data_uri(bars_svg([i["id"] for i in items], [i["rate"] for i in items])),
        items=items, worst=worst, slowest=slowest, similar=similarity_view(path.parent),
        **_ta_sections(rows, summary))
    atomic_text(path, page)


def refresh_dashboard(folder: Path, rubric: Rubric) -> bool:
    """Write the exports of a ``grader batch`` folder again, dashboard included, from its
    gradebook and ``batch.json`` (after ``grader similarity`` wrote into it): the same path
    as ``grader adjust``. False, and nothing written, when the folder is a batch of another
    lab or of another version of the rubric."""
    from .exports import export_again

    try:
        summary = json.loads((folder / "batch.json").read_text())
    except (OSError, ValueError):
        return False
    if (summary.get("assignment") != rubric.assignment
            or summary.get("rubric_sha256", rubric.sha256) != rubric.sha256):
        return False
    export_again(folder, rubric, summary)
    return True
