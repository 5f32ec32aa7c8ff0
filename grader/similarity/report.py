"""What ``grader similarity`` writes into ``--out``: a CSV of every pair, a JSON of the pairs a
TA should see, and one self-contained HTML page with their shared code side by side.

Student code is hostile: it reaches the page only through Jinja's autoescape (no ``|safe``
anywhere), and the page has no script and loads nothing. When ``--out`` is a ``grader
batch`` folder of the same lab, its dashboard is written again with the pairs above the
threshold (``grader.batch.dashboard``).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ..batch.dashboard import STYLE, refresh_dashboard
from ..batch.exports import atomic_text
from .code import Code
from .compare import Pair, SimilarityResult, compare_pair
from .sources import Submitted, is_batch_folder

__all__ = ["write_results", "COLUMNS"]

COLUMNS = ["rank", "student_a", "name_a", "student_b", "name_b", "cohort_b", "similarity",
           "share_a", "share_b", "shared_tokens_a", "shared_tokens_b", "own_tokens_a",
           "own_tokens_b", "above_threshold", "side_by_side"]

_PAGE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{{ title }}: similar submissions</title>
<style>
""" + STYLE + """body { max-width: 1400px; } h2 { margin-top: 2em; }
.above { color: #b00020; font-weight: bold; }
.sides { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.side { min-width: 0; }
pre { background: #fafafa; border: 1px solid #eee; padding: .4em; margin: .3em 0;
      overflow-x: auto; font-size: 12px; white-space: pre; }
mark { background: #ffd54f; }
details summary { color: #777; cursor: pointer; font-size: 12px; }
.owner { color: #777; font-size: 12px; margin-top: .5em; }
</style></head><body>
<h1>{{ title }} <span class="muted">({{ assignment }})</span>: similar submissions</h1>
<p>{{ students }} students{% if past %} and {{ past }} of earlier cohorts{% endif %},
{{ pairs_total }} pairs compared; <b>{{ above }}</b> at or above the threshold
{{ threshold }}{% if above > shown|length %} (the {{ shown|length }} most similar are shown
here; every pair is in similarity.csv){% endif %}. Similarity is the part of both students'
own code that they share: the template's code and the given functions are left out; names,
comments, formatting and the order of functions and cells do not count (matches of at least
{{ k }} normalised characters). Code is shown as compared: printed back from its syntax
tree (comments dropped), shared code <mark>highlighted</mark>. A high similarity is a reason
to look, not a verdict.</p>
<table><tr><th>#</th><th>student</th><th>student</th><th>similarity</th><th>of a's own code</th>
<th>of b's own code</th><th>shared (a / b)</th></tr>
{% for p in shown %}<tr><td><a href="#pair-{{ p.rank }}">{{ p.rank }}</a></td>
<td>{{ p.a }}</td><td>{{ p.b }}</td>
<td class="num {{ 'above' if p.above else '' }}">{{ p.similarity }}</td>
<td class="num">{{ p.share_a }}</td><td class="num">{{ p.share_b }}</td>
<td class="num">{{ p.shared }}</td></tr>{% endfor %}</table>
{% for p in shown %}<section class="pair" id="pair-{{ p.rank }}">
<h2>{{ p.rank }}. {{ p.a }} and {{ p.b }}: similarity {{ p.similarity }}
{% if p.above %}<span class="above">(above the threshold)</span>{% endif %}</h2>
<div class="sides">{% for side in p.sides %}<div class="side">
<h3>{{ side.who }}{% if side.report %} <a href="{{ side.report }}">report</a>{% endif %}
<span class="muted">{{ side.share }} of {{ side.own }} own</span></h3>
{% for block in side.blocks %}{% if block.shared %}{% for unit in block.units %}
{% if unit.owner %}<div class="owner">in class {{ unit.owner }}</div>{% endif %}<pre>
{%- for text, hit in unit.segments %}{% if hit %}<mark>{{ text }}</mark>{% else %}{{ text }}
{%- endif %}{% endfor %}</pre>{% endfor %}{% else %}<details><summary>{{ block.units|length }}
definition(s) with nothing shared</summary>{% for unit in block.units %}
{% if unit.owner %}<div class="owner">in class {{ unit.owner }}</div>{% endif %}<pre>
{%- for text, hit in unit.segments %}{{ text }}{% endfor %}</pre>{% endfor %}</details>
{%- endif %}{% endfor %}</div>{% endfor %}</div></section>{% endfor %}
{% if skipped %}<h2>Not compared</h2><table><tr><th>entry</th><th>why</th></tr>
{% for s in skipped %}<tr><td>{{ s.source }}</td><td>{{ s.reason }}</td></tr>{% endfor %}
</table>{% endif %}
<p class="muted">grader similarity · copydetect winnowing, k = {{ k }} · {{ generated }}</p>
</body></html>
""", autoescape=True)


def _who(sub: Submitted) -> str:
    label = sub.student + (f" ({sub.name})" if sub.name else "")
    return f"{label} [{sub.cohort}]" if sub.cohort else label


def _units(code: Code, slices: Any) -> list[dict[str, Any]]:
    """Each unit of ``code``: its class (for a method), whether anything of it is shared,
    and its text as [(text, shared)], from copydetect's slices."""
    marks = np.zeros(len(code.text) + 1, dtype=np.int64)
    if len(slices) and np.size(slices):
        for start, end in zip(*np.asarray(slices, dtype=np.int64)):
            marks[max(0, start)] += 1
            marks[min(len(code.text), end)] -= 1
    hit = np.cumsum(marks)[:len(code.text)] > 0
    out = []
    for owner, (start, end) in zip(code.owners, code.spans):
        turns = start + 1 + np.flatnonzero(hit[start:end - 1] != hit[start + 1:end])
        cuts = [start, *turns.tolist(), end]
        out.append({"owner": owner, "shared": bool(hit[start:end].any()),
                    "segments": [(code.text[s:e], bool(hit[s])) for s, e in zip(cuts, cuts[1:])]})
    return out


def _side(sub: Submitted, code: Code, slices: Any, share: float, own: int, out: Path
          ) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = []
    for unit in _units(code, slices):
        if not blocks or blocks[-1]["shared"] != unit["shared"]:
            blocks.append({"shared": unit["shared"], "units": []})
        blocks[-1]["units"].append(unit)
    report = sub.report if sub.report and (out / sub.report).is_file() else None
    return {"who": _who(sub), "report": report, "share": f"{100 * share:.0f} %",
            "own": own, "blocks": blocks}


def _row(rank: int, p: Pair, link: str) -> dict[str, Any]:
    return {"rank": rank, "student_a": p.a.student, "name_a": p.a.name,
            "student_b": p.b.student, "name_b": p.b.name, "cohort_b": p.b.cohort,
            "similarity": round(p.similarity, 4), "share_a": round(p.share_a, 4),
            "share_b": round(p.share_b, 4), "shared_tokens_a": p.shared_a,
            "shared_tokens_b": p.shared_b, "own_tokens_a": p.own_a, "own_tokens_b": p.own_b,
            "above_threshold": p.above, "side_by_side": link}


def _html(result: SimilarityResult, shown: list[Pair], out: Path, generated: str) -> str:
    views = []
    for rank, p in enumerate(shown, 1):
        code_a, code_b = result.codes[p.a.key], result.codes[p.b.key]
        _, (slices_a, slices_b) = compare_pair(p.a, p.b, code_a, code_b,
                                               result.options.threshold)
        views.append({"rank": rank, "a": _who(p.a), "b": _who(p.b), "above": p.above,
                      "similarity": f"{p.similarity:.2f}", "share_a": f"{100 * p.share_a:.0f} %",
                      "share_b": f"{100 * p.share_b:.0f} %",
                      "shared": f"{p.shared_a} / {p.shared_b}",
                      "sides": [_side(p.a, code_a, slices_a, p.share_a, p.own_a, out),
                                _side(p.b, code_b, slices_b, p.share_b, p.own_b, out)]})
    return _PAGE.render(title=result.title, assignment=result.assignment,
                        students=len(result.students), past=len(result.past),
                        pairs_total=len(result.pairs), above=result.above,
                        threshold=result.options.threshold, k=result.options.k, shown=views,
                        skipped=result.skipped, generated=generated)


def write_results(result: SimilarityResult, out: Path) -> dict[str, Any]:
    """``similarity.csv``, ``similarity.json`` and ``similarity.html`` in ``out``; the
    dashboard too when ``out`` is a ``grader batch`` folder of this lab. Returns what was
    written (``dashboard``: its path, or None)."""
    out.mkdir(parents=True, exist_ok=True)
    generated = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    shown = result.shown
    rows = [_row(n, p, f"similarity.html#pair-{n}" if n <= len(shown) else "")
            for n, p in enumerate(result.pairs, 1)]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    atomic_text(out / "similarity.csv", buffer.getvalue())
    summary = {"assignment": result.assignment, "generated": generated, "layout": result.layout,
               "threshold": result.options.threshold, "k": result.options.k,
               "students": len(result.students), "past_students": len(result.past),
               "pairs_compared": len(result.pairs),
               "above_threshold": result.above,
               "pairs": rows[:len(shown)],
               "skipped": [{"source": s.source, "reason": s.reason} for s in result.skipped]}
    atomic_text(out / "similarity.json", json.dumps(summary, indent=1))
    atomic_text(out / "similarity.html", _html(result, shown, out, generated))
    dashboard = None
    if is_batch_folder(out) and refresh_dashboard(out, result.rubric):
        dashboard = out / "dashboard.html"
    return {"csv": out / "similarity.csv", "json": out / "similarity.json",
            "html": out / "similarity.html", "dashboard": dashboard}
