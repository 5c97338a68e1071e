"""The run report: ``summary.json`` for machines and a self-contained ``report.html`` for people.

``build_summary`` condenses the run ledgers (tuning, refinement, ...) and the outcomes of the
later stages (final model, registration, batch predictions, stage wall times) into one JSON
document. ``render_html`` turns it, plus the ledgers, into a single HTML page with inline SVG
plots drawn here with the standard library only (no plotting library, no scripts, no external
fonts, stylesheets or images), so the file can be opened anywhere, attached to a ticket or
served from an object store as is.

The page shows the headline numbers as cards, then

1. the optimization history (objective mean per trial, best-so-far step line, failed trials),
2. the per-fold scores of the top five trials,
3. parallel coordinates of the tuned parameters, coloured by the objective,
4. tables of the top ten trials, the stage wall times and the runs.
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from collections.abc import Callable, Iterable
from typing import Any

from cvtune import ranking
from cvtune.ledger import RunLedger
from cvtune.states import TRIAL_UNFINISHED, TrialState
from cvtune.store import ArtifactStore, default_store

TRIAL_STATES = (TrialState.COMPLETED, TrialState.FAILED, TrialState.STOPPED, TrialState.PRUNED, TrialState.RUNNING)
SUMMARY_NAME = "summary.json"
REPORT_NAME = "report.html"

# Tableau 10: distinct, colour-blind friendly enough, readable on white
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f")
FAILED_COLOUR = "#d1242f"
STOPPED_COLOUR = "#8c959f"
INK = "#1f2328"
MUTED = "#59636e"
GRID = "#e6e9ed"
AXIS = "#8c959f"
# viridis, sampled; index 0 = worst trial, last = best trial
SEQUENTIAL = ("#fde725", "#b5de2b", "#6ece58", "#35b779", "#1f9e89", "#26828e", "#31688e", "#3e4989", "#482878", "#440154")
EMPTY = "—"


# -- summary -----------------------------------------------------------------------------------


def build_summary(
    *,
    ledgers: list[RunLedger],
    best: dict[str, Any] | None,
    final_model: dict[str, Any] | None,
    registration: dict[str, Any] | None,
    predictions: dict[str, Any] | None,
    stage_seconds: dict[str, float],
    extra: dict[str, Any] | None = None,
    refinement: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Condense a finished pipeline run into one JSON-serialisable dict (``summary.json``).

    ``best`` is what ``BestParams`` produced; when it is empty the best completed trial across
    ``ledgers`` is used. ``final_model``, ``registration`` and ``predictions`` may be ``None``;
    ``refinement`` is the refinement decision (``RefinementDecisionOperator``'s plan), told in the
    report's ``story`` with the data tuned, the warm-start parents and why each run stopped.
    """
    from cvtune.story import collect_story

    best = dict(best or {}) or _best_from_ledgers(ledgers)
    objective = dict(best.get("objective") or (ledgers[0].data["config"]["objective"] if ledgers else {}))
    best_trial = _find_trial(ledgers, best.get("run_id"), best.get("trial"))

    by_state: dict[str, int] = {state: 0 for state in TRIAL_STATES}
    runs = []
    for ledger in ledgers:
        counts: dict[str, int] = {state: 0 for state in TRIAL_STATES}
        counts.update(ledger.counts())
        for state, n in counts.items():
            by_state[state] = by_state.get(state, 0) + n
        info = ledger.summary()
        runs.append(
            {
                "run_id": ledger.run_id,
                "kind": ledger.data.get("kind"),
                "status": ledger.status,
                "ledger": ledger.uri,
                "folds": ledger.data.get("folds"),
                "trials": {"total": len(ledger.trials), "by_state": counts},
                "fold_jobs": info["fold_jobs"],
                "billable_seconds": info["billable_seconds"],
                "retained_seconds": info.get("retained_seconds", 0.0),
                "instance_seconds": info.get("instance_seconds", info["billable_seconds"]),
                "instance_hours": info.get("instance_hours", round(info["billable_seconds"] / 3600, 4)),
                **({"cost": info["cost"]} if "cost" in info else {}),
                "warm_pool_reused": info["warm_pool_reused"],
                "elapsed_s": info["elapsed_s"],
                "stop_reason": info.get("stop_reason"),
                "best": None if info["best"] is None else {k: info["best"][k] for k in ("trial", "mean", "std")},
            }
        )

    metrics = dict((final_model or {}).get("metrics") or {})
    holdout = {k: v for k, v in metrics.items() if k.startswith("test:")}
    stages = {str(k): float(v) for k, v in (stage_seconds or {}).items() if v is not None}
    fold_scores = best.get("fold_scores")
    if fold_scores is None and best_trial is not None:
        fold_scores = best_trial["fold_scores"]

    return {
        "generated_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "objective": objective,
        "best": {
            "run_id": best.get("run_id"),
            "trial": best.get("trial"),
            "ledger": best.get("ledger"),
            "hyperparameters": best.get("hyperparameters"),
            "params": best.get("params"),
            "mean": best.get("mean"),
            "std": best.get("std"),
            "fold_scores": fold_scores,
        },
        "cv_objective": {
            "metric": objective.get("metric"),
            "type": objective.get("type"),
            "mean": best.get("mean"),
            "std": best.get("std"),
            "folds": len(fold_scores) if fold_scores else None,
        },
        "trials": {"total": sum(by_state.values()), "by_state": by_state},
        "fold_jobs": sum(r["fold_jobs"] for r in runs),
        "billable_seconds": round(sum(r["billable_seconds"] for r in runs), 3),
        # job time + retained warm-pool time, per instance: what the runs were billed for
        "retained_seconds": round(sum(r["retained_seconds"] for r in runs), 3),
        "instance_seconds": round(sum(r["instance_seconds"] for r in runs), 3),
        "instance_hours": round(sum(r["instance_seconds"] for r in runs) / 3600, 4),
        **({"cost": round(sum(r.get("cost", 0.0) for r in runs), 4)} if any("cost" in r for r in runs) else {}),
        "warm_pool_reused": sum(r["warm_pool_reused"] for r in runs),
        "holdout": holdout,
        "final_model": None
        if final_model is None
        else {
            "job_name": final_model.get("job_name"),
            "model_uri": final_model.get("model_uri"),
            "metrics": metrics,
        },
        "model": None
        if registration is None
        else {
            "model_package_group": registration.get("model_package_group"),
            "version": registration.get("version"),
            "approval_status": registration.get("approval_status"),
            "approval_reason": registration.get("approval_reason"),
            "model_uri": registration.get("model_uri"),
        },
        "predictions": None if predictions is None else dict(predictions),
        "predictions_uri": (predictions or {}).get("output_uri"),
        "stage_seconds": stages,
        "total_seconds": round(sum(stages.values()), 3),
        "run_ids": [ledger.run_id for ledger in ledgers],
        "ledgers": [ledger.uri for ledger in ledgers],
        "runs": runs,
        "story": collect_story(ledgers, refinement),
        "extra": dict(extra or {}),
    }


def write_report(
    out_uri: str, summary: dict[str, Any], ledgers: list[RunLedger], store: ArtifactStore | None = None
) -> dict[str, str]:
    """Write ``{out_uri}/summary.json`` and ``{out_uri}/report.html``; returns both URIs."""
    store = store or default_store()
    summary_uri = store.join(out_uri, SUMMARY_NAME)
    report_uri = store.join(out_uri, REPORT_NAME)
    store.write_json(summary_uri, summary)
    store.write_text(report_uri, render_html(summary, ledgers))
    return {"summary": summary_uri, "report": report_uri}


def _best_from_ledgers(ledgers: list[RunLedger]) -> dict[str, Any]:
    """The best trial as best-params ranks it (:mod:`cvtune.ranking`), when no ``best`` was given."""
    candidates = ranking.ranked_candidates(ledgers, ledgers[0].maximize) if ledgers else []
    if not candidates:
        return {}
    top = candidates[0]
    trial = top.trial
    return {
        "hyperparameters": trial["hyperparameters"],
        "params": trial["params"],
        "mean": trial["mean"],
        "std": trial["std"],
        "run_id": top.run_id,
        "trial": trial["number"],
        "objective": dict(top.ledger.data["config"]["objective"]),
        "ledger": top.ledger_uri,
        "fold_scores": trial["fold_scores"],
    }


def _find_trial(ledgers: list[RunLedger], run_id: Any, number: Any) -> dict[str, Any] | None:
    for ledger in ledgers:
        if ledger.run_id != run_id:
            continue
        for trial in ledger.trials:
            if trial["number"] == number:
                return trial
    return None


# -- formatting --------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _fmt_score(value: Any) -> str:
    if not _finite(value):
        return EMPTY
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4f}"
    return f"{value:.4g}"


def _fmt_param(value: Any) -> str:
    if value is None:
        return EMPTY
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _fmt_instance_hours(info: dict[str, Any]) -> str:
    """``1.234 instance-h`` (and the cost when a price was given)."""
    hours = info.get("instance_hours")
    if hours is None:
        return EMPTY
    text = f"{hours:.3f} instance-h"
    if info.get("cost") is not None:
        text += f" · {info['cost']:.2f}"
    return text


def _fmt_duration(seconds: Any) -> str:
    if not _finite(seconds):
        return EMPTY
    s = float(seconds)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} m {int(round(s % 60)):02d} s"
    return f"{int(s // 3600)} h {int(round((s % 3600) / 60)):02d} m"


def _fmt_int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else EMPTY


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _metric_label(objective: dict[str, Any]) -> str:
    return str(objective.get("metric") or "objective")


# -- scales and ticks ------------------------------------------------------------------------------


def _nice_step(raw: float) -> float:
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * (1 - 1e-9):
            return m * mag
    return 10 * mag


def _pad_domain(lo: float, hi: float) -> tuple[float, float]:
    if hi < lo:
        lo, hi = hi, lo
    if hi - lo <= 1e-12 * max(1.0, abs(lo), abs(hi)):  # constant values: open a small window
        pad = abs(lo) * 0.01 if lo else 0.5
        return lo - pad, hi + pad
    return lo, hi


def _nice_ticks(
    lo: float, hi: float, n: int = 5, integer: bool = False, pad: float = 0.0
) -> tuple[float, float, list[float]]:
    """A domain covering ``[lo, hi]`` (widened by ``pad`` of its span) with round tick values."""
    lo, hi = _pad_domain(lo, hi)
    lo, hi = lo - (hi - lo) * pad, hi + (hi - lo) * pad
    step = _nice_step((hi - lo) / max(n - 1, 1))
    if integer:
        step = max(1.0, round(step))
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    count = int(round((end - start) / step))
    ticks = [start + i * step for i in range(count + 1)]
    return start, end, ticks


def _tick_formatter(ticks: list[float]) -> Callable[[float], str]:
    if len(ticks) < 2:
        return _fmt_score
    step = abs(ticks[1] - ticks[0])
    biggest = max(abs(t) for t in ticks)
    if biggest >= 1e6 or (biggest and biggest < 1e-4):
        return lambda v: f"{v:.3g}"
    decimals = 0
    while decimals < 8 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    return lambda v: f"{v:.{decimals}f}"


class _Scale:
    """Map a domain onto a pixel range; ``kind`` is linear, log or revlog (dense near 1)."""

    def __init__(self, d0: float, d1: float, r0: float, r1: float, kind: str = "linear") -> None:
        self.kind = kind
        self.t0, self.t1 = self._t(d0), self._t(d1)
        if self.t1 == self.t0:
            self.t0, self.t1 = self.t0 - 0.5, self.t1 + 0.5
        self.r0, self.r1 = r0, r1

    def _t(self, v: float) -> float:
        if self.kind == "log":
            return math.log10(v)
        if self.kind == "revlog":
            return -math.log10(max(1.0 - v, 1e-300))
        return v

    def __call__(self, v: float) -> float:
        return self.r0 + (self._t(v) - self.t0) / (self.t1 - self.t0) * (self.r1 - self.r0)


def _c(v: float) -> str:
    return f"{v:.1f}"


def _text(x: float, y: float, s: Any, anchor: str = "middle", cls: str = "", extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}"{c}{extra}>{_e(s)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str = AXIS, width: float = 1, extra: str = "") -> str:
    return (
        f'<line x1="{_c(x1)}" y1="{_c(y1)}" x2="{_c(x2)}" y2="{_c(y2)}" stroke="{stroke}" '
        f'stroke-width="{width}"{extra}/>'
    )


def _cross(x: float, y: float, r: float, colour: str, title: str) -> str:
    return (
        f'<g><title>{_e(title)}</title><path d="M{_c(x - r)},{_c(y - r)}L{_c(x + r)},{_c(y + r)}'
        f'M{_c(x - r)},{_c(y + r)}L{_c(x + r)},{_c(y - r)}" stroke="{colour}" stroke-width="2.2" '
        f'stroke-linecap="round"/></g>'
    )


def _svg(width: int, height: int, body: Iterable[str], label: str) -> str:
    return (
        f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(label)}" preserveAspectRatio="xMidYMid meet">' + "".join(body) + "</svg>"
    )


def _interpolate(colours: tuple[str, ...], t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(colours) - 1)
    i = min(int(t), len(colours) - 2)
    f = t - i
    a = [int(colours[i][k : k + 2], 16) for k in (1, 3, 5)]
    b = [int(colours[i + 1][k : k + 2], 16) for k in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


def _legend(items: list[tuple[str, str]]) -> str:
    """An HTML legend; items are (swatch html, label)."""
    return '<div class="legend">' + "".join(f"<span>{sw}{_e(label)}</span>" for sw, label in items) + "</div>"


def _dot(colour: str) -> str:
    return f'<i class="sw dot" style="background:{colour}"></i>'


def _bar(colour: str, height: int = 3) -> str:
    return f'<i class="sw bar" style="background:{colour};height:{height}px"></i>'


def _x_mark(colour: str) -> str:
    return f'<i class="sw x" style="color:{colour}">×</i>'


def _note(text: str) -> str:
    return f'<p class="empty">{_e(text)}</p>'


# -- trial helpers -------------------------------------------------------------------------------


def _run_labels(ledgers: list[RunLedger]) -> list[str]:
    kinds = [str(ledger.data.get("kind") or ledger.run_id) for ledger in ledgers]
    if len(set(kinds)) == len(kinds):
        return kinds
    return [ledger.run_id for ledger in ledgers]


def _completed(trial: dict[str, Any]) -> bool:
    return ranking.rankable(trial)


def _maximize(summary: dict[str, Any], ledgers: list[RunLedger]) -> bool:
    kind = (summary.get("objective") or {}).get("type")
    if kind in ("Maximize", "Minimize"):
        return kind == "Maximize"
    return ledgers[0].maximize if ledgers else True


def _ranked(ledgers: list[RunLedger], maximize: bool) -> list[tuple[int, dict[str, Any]]]:
    """(ledger index, trial) of every run's own completed trials, best first (:mod:`cvtune.ranking`)."""
    index = {id(ledger): i for i, ledger in enumerate(ledgers)}
    return [(index[id(c.ledger)], c.trial) for c in ranking.ranked_candidates(ledgers, maximize, inherited=False)]


def _trial_name(labels: list[str], index: int, trial: dict[str, Any]) -> str:
    prefix = f"{labels[index]} · " if len(labels) > 1 else ""
    return f"{prefix}trial {trial['number']}"


# -- plot 1: optimization history ------------------------------------------------------------------


def _history(ledgers: list[RunLedger], maximize: bool, metric: str) -> str:
    labels = _run_labels(ledgers)
    seq: list[tuple[int, int, dict[str, Any]]] = []
    bounds: list[tuple[int, int]] = []  # (first x, ledger index)
    x = 0  # one ledger: x is the trial number; several: their trials one after the other
    for i, ledger in enumerate(ledgers):
        bounds.append((x, i))
        for trial in sorted(ledger.trials, key=lambda t: t["number"]):
            seq.append((x, i, trial))
            x += 1
    done = [(x, i, t) for x, i, t in seq if _completed(t)]
    if not done:
        return _note("No completed trials yet, so there is no optimization history to plot.")
    ended = [(x, i, t) for x, i, t in seq if t["state"] in TRIAL_UNFINISHED]

    width, height = 960, 380
    left, right, top = 74, 24, 30 if len(ledgers) > 1 else 14
    lane = 26 if ended else 0
    bottom = 58 + lane
    py0, py1 = top, height - bottom
    means = [t["mean"] for _, _, t in done]
    y_lo, y_hi, y_ticks = _nice_ticks(min(means), max(means), 6, pad=0.04)
    fy = _tick_formatter(y_ticks)
    n = len(seq)
    _, _, x_ticks = _nice_ticks(0, n - 1, min(10, max(n, 2)), integer=True)
    x_ticks = [v for v in x_ticks if 0 <= v <= n - 1] or [0]
    sx = _Scale(-0.5, n - 0.5, left, width - right)
    sy = _Scale(y_lo, y_hi, py1, py0)

    out = []
    for v in y_ticks:
        out.append(_line(left, sy(v), width - right, sy(v), GRID))
        out.append(_text(left - 8, sy(v) + 4, fy(v), "end", "tick"))
    axis_y = py1 + lane
    if ended:
        out.append(f'<rect x="{left}" y="{_c(py1 + 4)}" width="{width - right - left}" height="{lane - 4}" fill="#fafbfc"/>')
        out.append(_text(left - 8, py1 + 4 + (lane - 4) / 2 + 4, "not done", "end", "tick muted"))
    for v in x_ticks:
        out.append(_line(sx(v), axis_y, sx(v), axis_y + 5, AXIS))
        out.append(_text(sx(v), axis_y + 19, f"{int(v)}", "middle", "tick"))
    out.append(_line(left, py1, width - right, py1, AXIS))
    out.append(_line(left, axis_y, width - right, axis_y, AXIS))
    out.append(_line(left, py0, left, axis_y, AXIS))
    xlabel = "trial (launch order, runs concatenated)" if len(ledgers) > 1 else "trial number"
    out.append(_text((left + width - right) / 2, height - 12, xlabel, "middle", "axis-label"))
    out.append(
        _text(18, (py0 + py1) / 2, f"{metric} (CV mean)", "middle", "axis-label", f' transform="rotate(-90 18 {_c((py0 + py1) / 2)})"')
    )
    if len(ledgers) > 1:
        for first, i in bounds:
            if first >= n:
                continue
            bx = sx(first - 0.5)
            if first > 0:
                out.append(_line(bx, py0 - 6, bx, axis_y, MUTED, 1, ' stroke-dasharray="4 3"'))
            out.append(_text(bx + 6, py0 - 10, labels[i], "start", "run-label", f' style="fill:{PALETTE[i % len(PALETTE)]}"'))

    # best-so-far step line
    better = (lambda a, b: a > b) if maximize else (lambda a, b: a < b)
    best_val: float | None = None
    path = []
    for x, _, t in done:
        if best_val is None:
            best_val = t["mean"]
            path.append(f"M{_c(sx(x))},{_c(sy(best_val))}")
        elif better(t["mean"], best_val):
            best_val = t["mean"]
            path.append(f"H{_c(sx(x))}V{_c(sy(best_val))}")
    path.append(f"H{_c(sx(n - 1))}")
    out.append(f'<path d="{"".join(path)}" fill="none" stroke="{INK}" stroke-width="2" stroke-opacity=".75"/>')

    best_x, best_i, best_t = ranking.ranked(done, maximize, lambda d: d[2])[0]
    radius = 4.5 if n <= 60 else 3 if n <= 200 else 2
    for x, i, t in done:
        colour = PALETTE[i % len(PALETTE)]
        std = t.get("std")
        tip = f"{_trial_name(labels, i, t)}: {_fmt_score(t['mean'])} ± {_fmt_score(std)}"
        out.append(
            f'<circle cx="{_c(sx(x))}" cy="{_c(sy(t["mean"]))}" r="{radius}" fill="{colour}" fill-opacity=".9" '
            f'stroke="#fff" stroke-width="1"><title>{_e(tip)}</title></circle>'
        )
    out.append(
        f'<circle cx="{_c(sx(best_x))}" cy="{_c(sy(best_t["mean"]))}" r="{radius + 4}" fill="none" '
        f'stroke="{INK}" stroke-width="1.6"/>'
    )
    for x, i, t in ended:
        colour = FAILED_COLOUR if t["state"] == TrialState.FAILED else STOPPED_COLOUR
        reason = t.get("failure_reason") or t["state"].lower()
        out.append(_cross(sx(x), py1 + 4 + (lane - 4) / 2, 4.5, colour, f"{_trial_name(labels, i, t)}: {reason}"))

    items = []
    if len(ledgers) > 1:
        items += [(_dot(PALETTE[i % len(PALETTE)]), f"{labels[i]} ({ledger.run_id})") for i, ledger in enumerate(ledgers)]
    else:
        items.append((_dot(PALETTE[0]), "completed trial (CV mean)"))
    items.append((_bar(INK, 2), "best so far" + (" (higher is better)" if maximize else " (lower is better)")))
    items.append(('<i class="sw ring"></i>', f"best: {_trial_name(labels, best_i, best_t)}"))
    if any(t["state"] == TrialState.FAILED for _, _, t in ended):
        items.append((_x_mark(FAILED_COLOUR), "failed"))
    if any(t["state"] != TrialState.FAILED for _, _, t in ended):
        items.append((_x_mark(STOPPED_COLOUR), "stopped / pruned"))
    return _legend(items) + _svg(width, height, out, f"{metric} per trial")


# -- plot 2: per-fold scores of the top trials -----------------------------------------------------


def _folds_plot(ledgers: list[RunLedger], maximize: bool, metric: str, top_n: int = 5) -> str:
    labels = _run_labels(ledgers)
    top = _ranked(ledgers, maximize)[:top_n]
    if not top:
        return _note("No completed trials, so there are no fold scores to compare.")
    k = max(len(t["fold_scores"]) for _, t in top)
    values = [s for _, t in top for s in t["fold_scores"] if _finite(s)]
    for _, t in top:
        std = t.get("std") if _finite(t.get("std")) else 0.0
        values += [t["mean"] - std, t["mean"] + std]

    width, height = 960, 340
    left, right, top_m, bottom = 74, 24, 16, 48
    py0, py1 = top_m, height - bottom
    y_lo, y_hi, y_ticks = _nice_ticks(min(values), max(values), 6, pad=0.03)
    fy = _tick_formatter(y_ticks)
    sy = _Scale(y_lo, y_hi, py1, py0)
    slots = k + 1.4  # the folds, a gap, then the mean column
    band = (width - left - right) / slots

    def centre(slot: float) -> float:
        return left + band * (slot + 0.5)

    mean_x = centre(k + 0.4)
    spread = min(14.0, band * 0.6 / max(len(top), 1))

    out = []
    for v in y_ticks:
        out.append(_line(left, sy(v), width - right, sy(v), GRID))
        out.append(_text(left - 8, sy(v) + 4, fy(v), "end", "tick"))
    for f in range(k):
        out.append(_text(centre(f), py1 + 20, f"fold {f}", "middle", "tick"))
        if f:
            out.append(_line(left + band * f, py0, left + band * f, py1, "#f0f2f4"))
    out.append(f'<rect x="{_c(mean_x - band * 0.5)}" y="{py0}" width="{_c(band)}" height="{py1 - py0}" fill="#f6f8fa"/>')
    out.append(_text(mean_x, py1 + 20, "mean ± std", "middle", "tick strong"))
    out.append(_line(left, py1, width - right, py1, AXIS))
    out.append(_line(left, py0, left, py1, AXIS))
    out.append(
        _text(18, (py0 + py1) / 2, metric, "middle", "axis-label", f' transform="rotate(-90 18 {_c((py0 + py1) / 2)})"')
    )

    items = []
    for rank, (i, t) in enumerate(top):
        colour = PALETTE[rank % len(PALETTE)]
        dx = (rank - (len(top) - 1) / 2) * spread
        std = t.get("std") if _finite(t.get("std")) else 0.0
        name = _trial_name(labels, i, t)
        items.append((_dot(colour), f"{name} ({_fmt_score(t['mean'])} ± {_fmt_score(std)})"))
        pts = [(centre(f) + dx, sy(s), f, s) for f, s in enumerate(t["fold_scores"]) if _finite(s)]
        if len(pts) > 1:
            d = "M" + "L".join(f"{_c(px)},{_c(py)}" for px, py, _, _ in pts)
            out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.2" stroke-opacity=".35"/>')
        for px, py, f, s in pts:
            out.append(
                f'<circle cx="{_c(px)}" cy="{_c(py)}" r="4.5" fill="{colour}" stroke="#fff" stroke-width="1">'
                f"<title>{_e(f'{name}, fold {f}: {_fmt_score(s)}')}</title></circle>"
            )
        mx = mean_x + dx
        y_a, y_b = sy(t["mean"] - std), sy(t["mean"] + std)
        out.append(_line(mx, y_a, mx, y_b, colour, 2))
        out.append(_line(mx - 4, y_a, mx + 4, y_a, colour, 2))
        out.append(_line(mx - 4, y_b, mx + 4, y_b, colour, 2))
        my = sy(t["mean"])
        tip = _e(f"{name}: mean {_fmt_score(t['mean'])} ± {_fmt_score(std)}")
        out.append(
            f'<path d="M{_c(mx)},{_c(my - 6)}L{_c(mx + 6)},{_c(my)}L{_c(mx)},{_c(my + 6)}L{_c(mx - 6)},{_c(my)}Z" '
            f'fill="{colour}" stroke="#fff" stroke-width="1"><title>{tip}</title></path>'
        )
    return _legend(items) + _svg(width, height, out, f"fold scores of the top {len(top)} trials")


# -- plot 3: parallel coordinates ------------------------------------------------------------------


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _param_axes(ledgers: list[RunLedger], trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One axis per tuned parameter: name, kind (num|cat), scale, domain or category values."""
    axes: dict[str, dict[str, Any]] = {}
    for ledger in ledgers:
        ranges = ledger.data.get("config", {}).get("parameter_ranges") or {}
        for kind in ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"):
            for entry in ranges.get(kind) or []:
                if not isinstance(entry, dict) or "Name" not in entry:
                    continue
                name = str(entry["Name"])
                if kind == "CategoricalParameterRanges":
                    axis = axes.setdefault(name, {"name": name, "kind": "cat", "scale": "categorical", "values": []})
                    if axis["kind"] == "cat":
                        for v in entry.get("Values") or []:
                            if str(v) not in axis["values"]:
                                axis["values"].append(str(v))
                    continue
                lo, hi = _as_float(entry.get("MinValue")), _as_float(entry.get("MaxValue"))
                if lo is None or hi is None:
                    continue
                scaling = entry.get("ScalingType", "Auto")
                if scaling == "Auto":
                    scaling = "Logarithmic" if lo > 0 and hi / lo >= 100 else "Linear"
                scale = {"Logarithmic": "log", "ReverseLogarithmic": "revlog"}.get(scaling, "linear")
                axis = axes.setdefault(
                    name,
                    {"name": name, "kind": "num", "scale": scale, "lo": lo, "hi": hi,
                     "integer": kind == "IntegerParameterRanges"},
                )
                if axis["kind"] == "num":
                    axis["lo"], axis["hi"] = min(axis["lo"], lo), max(axis["hi"], hi)
    # parameters the config does not describe, and values outside the configured ranges
    for trial in trials:
        for name, value in (trial.get("params") or {}).items():
            name = str(name)
            number = _as_float(value)
            found = axes.get(name)
            if found is not None:
                axis = found
            else:
                axis = axes[name] = (
                    {"name": name, "kind": "num", "scale": "linear", "lo": number, "hi": number,
                     "integer": isinstance(value, int)}
                    if number is not None
                    else {"name": name, "kind": "cat", "scale": "categorical", "values": []}
                )
            if axis["kind"] == "num" and number is None:  # mixed types: show as categories
                values = sorted({str(t.get("params", {}).get(name)) for t in trials if name in t.get("params", {})})
                axis.update(kind="cat", scale="categorical", values=values)
            elif axis["kind"] == "num":
                axis["lo"], axis["hi"] = min(axis["lo"], number), max(axis["hi"], number)
            elif str(value) not in axis["values"]:
                axis["values"].append(str(value))
    for axis in axes.values():
        if axis["kind"] != "num":
            continue
        if axis["scale"] == "log" and axis["lo"] <= 0:
            axis["scale"] = "linear"
        if axis["scale"] == "revlog" and axis["hi"] >= 1:
            axis["scale"] = "linear"
        if axis["hi"] <= axis["lo"]:
            if axis["scale"] == "linear":
                axis["lo"], axis["hi"] = _pad_domain(axis["lo"], axis["hi"])
            else:
                axis["scale"] = "linear"
                axis["lo"], axis["hi"] = _pad_domain(axis["lo"], axis["hi"])
    return list(axes.values())


def _inner_ticks(axis: dict[str, Any]) -> list[float]:
    lo, hi = axis["lo"], axis["hi"]
    if axis["scale"] == "log":
        decades = [10.0**p for p in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1)]
        inner = [d for d in decades if lo * 1.25 < d < hi / 1.25]
        return inner if len(inner) <= 4 else inner[:: math.ceil(len(inner) / 4)]
    if axis["scale"] == "revlog":
        marks = [1 - 10.0**-p for p in range(1, 8)]
        return [m for m in marks if lo + (hi - lo) * 0.08 < m < hi - (hi - lo) * 0.08]
    _, _, ticks = _nice_ticks(lo, hi, 4, integer=axis.get("integer", False))
    span = hi - lo
    return [t for t in ticks if lo + span * 0.12 < t < hi - span * 0.12]


def _parallel(ledgers: list[RunLedger], maximize: bool, metric: str) -> str:
    labels = _run_labels(ledgers)
    everything = [(i, t) for i, ledger in enumerate(ledgers) for t in ledger.trials]
    done = [(i, t) for i, t in everything if _completed(t)]
    if not done:
        return _note("No completed trials, so there is nothing to draw in parameter space.")
    failed = [(i, t) for i, t in everything if t["state"] == TrialState.FAILED]
    axes = _param_axes(ledgers, [t for _, t in everything])

    width, height = 960, 430
    left, right, top, bottom = 92, 64, 62, 34
    py0, py1 = top, height - bottom
    n_axes = len(axes) + 1
    xs = [left + (width - left - right) * (a / (n_axes - 1) if n_axes > 1 else 0.5) for a in range(n_axes)]
    spacing = (xs[1] - xs[0]) if n_axes > 1 else width
    name_chars = max(6, int(spacing / 7.2))
    label_chars = max(5, int(spacing / 8))

    # y position of a value on each axis
    mappers: list[Callable[[Any], float | None]] = []
    out: list[str] = []
    for axis, ax in zip(axes, xs, strict=False):
        if axis["kind"] == "cat":
            values = axis["values"] or [EMPTY]
            pos = (
                {v: py0 + (py1 - py0) * j / (len(values) - 1) for j, v in enumerate(values)}
                if len(values) > 1
                else {values[0]: (py0 + py1) / 2}
            )
            mappers.append(lambda v, pos=pos: pos.get(str(v)))  # type: ignore[misc]
            for v, y in pos.items():
                out.append(_line(ax - 4, y, ax, y, AXIS))
                out.append(_text(ax - 7, y + 4, _short(v, label_chars), "end", "tick halo"))
            continue
        scale = _Scale(axis["lo"], axis["hi"], py1, py0, axis["scale"])

        def mapper(v: Any, scale: _Scale = scale, axis: dict[str, Any] = axis) -> float | None:
            f = _as_float(v)
            if f is None or (axis["scale"] == "log" and f <= 0) or (axis["scale"] == "revlog" and f >= 1):
                return None
            return scale(f)

        mappers.append(mapper)
        for v, cls in ((axis["hi"], "tick strong halo"), (axis["lo"], "tick strong halo")):
            out.append(_line(ax - 5, scale(v), ax, scale(v), AXIS))
            out.append(_text(ax - 7, scale(v) + 4, _fmt_param(int(v) if axis.get("integer") else v), "end", cls))
        for v in _inner_ticks(axis):
            out.append(_line(ax - 4, scale(v), ax, scale(v), AXIS))
            out.append(_text(ax - 7, scale(v) + 4, _fmt_param(int(v) if axis.get("integer") else v), "end", "tick halo"))

    means = [t["mean"] for _, t in done]
    o_lo, o_hi, o_ticks = _nice_ticks(min(means), max(means), 6)
    fo = _tick_formatter(o_ticks)
    so = _Scale(o_lo, o_hi, py1, py0)
    ox = xs[-1]
    for v in o_ticks:
        out.append(_line(ox, so(v), ox + 5, so(v), AXIS))
        out.append(_text(ox + 8, so(v) + 4, fo(v), "start", "tick"))

    # axis titles
    for axis, ax in zip(axes, xs, strict=False):
        hint = {"log": "log scale", "revlog": "reverse-log scale", "categorical": "categorical"}.get(
            axis["scale"], "integer" if axis.get("integer") else "linear"
        )
        out.append(
            f'<text x="{_c(ax)}" y="{top - 34}" text-anchor="middle" class="axis-title"><title>{_e(axis["name"])}</title>'
            f"{_e(_short(axis['name'], name_chars))}</text>"
        )
        out.append(_text(ax, top - 19, hint, "middle", "hint"))
    out.append(_text(ox, top - 34, _short(metric, name_chars), "middle", "axis-title"))
    out.append(_text(ox, top - 19, "CV mean (objective)", "middle", "hint"))

    lines: list[str] = []

    def polyline(points: list[float | None]) -> str:
        d, pen = [], False
        for ax, y in zip(xs, points, strict=False):
            if y is None:
                pen = False
                continue
            d.append(f"{'L' if pen else 'M'}{_c(ax)},{_c(y)}")
            pen = True
        return "".join(d)

    for i, t in failed:
        pts: list[float | None] = [m(t["params"].get(a["name"])) for m, a in zip(mappers, axes, strict=True)]
        d = polyline(pts)
        if d:
            reason = t.get("failure_reason") or "failed"
            lines.append(
                f'<path d="{d}" fill="none" stroke="{FAILED_COLOUR}" stroke-width="1.2" stroke-opacity=".45" '
                f'stroke-dasharray="5 4"><title>{_e(f"{_trial_name(labels, i, t)} failed: {reason}")}</title></path>'
            )
    worst, best = (min(means), max(means)) if maximize else (max(means), min(means))

    def goodness(v: float) -> float:
        return 0.5 if best == worst else (v - worst) / (best - worst)

    ordered = ranking.ranked(done, maximize, lambda it: it[1])[::-1]  # worst first, best on top
    for rank, (i, t) in enumerate(ordered):
        pts = [m(t["params"].get(a["name"])) for m, a in zip(mappers, axes, strict=True)] + [so(t["mean"])]
        colour = _interpolate(SEQUENTIAL, goodness(t["mean"]))
        params = ", ".join(f"{k}={_fmt_param(v)}" for k, v in t["params"].items())
        tip = _e(f"{_trial_name(labels, i, t)}: {_fmt_score(t['mean'])} ± {_fmt_score(t.get('std'))} — {params}")
        d = polyline(pts)
        if rank == len(ordered) - 1:
            lines.append(f'<path d="{d}" fill="none" stroke="#fff" stroke-width="7" stroke-linejoin="round"/>')
            lines.append(f'<path d="{d}" fill="none" stroke="{INK}" stroke-width="5" stroke-linejoin="round"/>')
            lines.append(
                f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="3" stroke-linejoin="round"><title>best — {tip}</title></path>'
            )
        else:
            lines.append(
                f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6" stroke-opacity=".8" '
                f'stroke-linejoin="round"><title>{tip}</title></path>'
            )
    axis_lines = [_line(ax, py0, ax, py1, "#6e7781", 1.2) for ax in xs]
    # trial lines first, then the axes and their labels on top
    body = lines + axis_lines + out

    gradient = ", ".join(SEQUENTIAL)
    best_i, best_t = ordered[-1]
    legend = (
        '<div class="legend">'
        f'<span class="cscale"><span class="cval">{_e(_fmt_score(worst))}</span>'
        f'<i class="grad" style="background:linear-gradient(to right, {gradient})"></i>'
        f'<span class="cval">{_e(_fmt_score(best))}</span>&nbsp;{_e(metric)} (worst → best)</span>'
        f"<span>{_bar(INK, 5)}{_e('best: ' + _trial_name(labels, best_i, best_t))}</span>"
        + (f"<span>{_bar(FAILED_COLOUR, 2)}failed trials (dashed, parameters only)</span>" if failed else "")
        + "</div>"
    )
    return legend + _svg(width, height, body, "parallel coordinates of the tuned parameters")


# -- tables --------------------------------------------------------------------------------------


def _top_table(ledgers: list[RunLedger], maximize: bool, top_n: int = 10) -> str:
    labels = _run_labels(ledgers)
    top = _ranked(ledgers, maximize)[:top_n]
    if not top:
        return _note("No completed trials.")
    k = max(len(t["fold_scores"]) for _, t in top)
    names: list[str] = []
    for axis in _param_axes(ledgers, [t for _, t in top]):
        if any(axis["name"] in t["params"] for _, t in top):
            names.append(axis["name"])
    multi = len(ledgers) > 1
    head = ["<th>rank</th>"] + (['<th class="l">run</th>'] if multi else []) + ["<th>trial</th>", "<th>mean</th>", "<th>std</th>"]
    head += [f"<th>f{f}</th>" for f in range(k)]
    head += [f'<th class="param">{_e(n).replace("_", "_<wbr>")}</th>' for n in names]
    rows = []
    for rank, (i, t) in enumerate(top, 1):
        scores = list(t["fold_scores"]) + [None] * (k - len(t["fold_scores"]))
        cells = [f"<td>{rank}</td>"] + ([f'<td class="l">{_e(labels[i])}</td>'] if multi else [])
        cells += [f"<td>{t['number']}</td>", f"<td><b>{_fmt_score(t['mean'])}</b></td>", f"<td>{_fmt_score(t.get('std'))}</td>"]
        cells += [f'<td class="fold">{_fmt_score(s)}</td>' for s in scores]
        cells += [
            f'<td class="param">{_e(_fmt_param(t["params"][n]) if n in t["params"] else EMPTY)}</td>' for n in names
        ]
        rows.append(f'<tr{" class=best" if rank == 1 else ""}>' + "".join(cells) + "</tr>")
    return (
        '<div class="table-wrap"><table class="trials"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _stage_table(stage_seconds: dict[str, float]) -> str:
    stages = {k: v for k, v in (stage_seconds or {}).items() if _finite(v)}
    if not stages:
        return _note("No stage timings were recorded.")
    total = sum(stages.values())
    longest = max(stages.values()) or 1.0
    rows = []
    for name, seconds in stages.items():
        share = seconds / total * 100 if total else 0.0
        rows.append(
            f'<tr><td class="l">{_e(name)}</td><td>{_fmt_duration(seconds)}</td><td>{seconds:,.1f}</td>'
            f'<td class="l share"><i style="width:{seconds / longest * 100:.1f}%"></i>{share:.0f}%</td></tr>'
        )
    rows.append(f'<tr class="total"><td class="l">total</td><td>{_fmt_duration(total)}</td><td>{total:,.1f}</td><td></td></tr>')
    return (
        '<table class="stages"><thead><tr><th class="l">stage</th><th>wall time</th><th>seconds</th>'
        '<th class="l">share</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )


def _runs_table(summary: dict[str, Any]) -> str:
    runs = summary.get("runs") or []
    if not runs:
        return _note("No run ledgers.")
    rows = []
    for r in runs:
        by_state = (r.get("trials") or {}).get("by_state") or {}
        best = r.get("best") or {}
        rows.append(
            "<tr>"
            f'<td class="l run"><code>{_e(r.get("run_id"))}</code><div class="uri muted">{_e(r.get("ledger"))}</div></td>'
            f'<td class="l">{_e(r.get("kind") or EMPTY)}</td>'
            f'<td class="l">{_status_badge(r.get("status"))}{_stop_reason(r.get("stop_reason"))}</td>'
            + "".join(f"<td>{_fmt_int(by_state.get(s, 0))}</td>" for s in TRIAL_STATES)
            + f"<td>{_fmt_int(r.get('fold_jobs'))}</td>"
            f"<td>{_e(_fmt_score(best.get('mean')))}</td>"
            f"<td>{_fmt_duration(r.get('billable_seconds'))}</td>"
            f"<td>{_fmt_duration(r.get('retained_seconds'))}</td>"
            f"<td>{_e(_fmt_instance_hours(r))}</td>"
            f"<td>{_fmt_duration(r.get('elapsed_s'))}</td>"
            "</tr>"
        )
    head = (
        '<th class="l">run id / ledger</th><th class="l">kind</th><th class="l">status</th>'
        + "".join(f"<th>{_e(s.lower())}</th>" for s in TRIAL_STATES)
        + '<th>fold jobs</th><th>best mean</th><th>billable</th><th>retained</th><th>instance-hours</th><th>elapsed</th>'
    )
    return (
        f'<div class="table-wrap"><table class="runs"><thead><tr>{head}</tr></thead><tbody>'
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _stop_reason(reason: Any) -> str:
    if not isinstance(reason, dict) or not reason.get("criterion"):
        return ""
    return f'<div class="reason muted">{_e(reason.get("detail") or reason["criterion"])}</div>'


def _status_badge(status: Any) -> str:
    if status is None:
        return EMPTY
    s = str(status)
    tone = {
        "Approved": "good", "Completed": "good",
        "PendingManualApproval": "warn", "InProgress": "warn", "Stopped": "warn",
        "Rejected": "bad", "Failed": "bad",
    }.get(s, "neutral")
    return f'<span class="badge {tone}">{_e(s)}</span>'


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return '<table class="kv"><tbody>' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>"


def _best_hyperparameters(summary: dict[str, Any]) -> str:
    best = summary.get("best") or {}
    hyper = best.get("hyperparameters") or best.get("params")
    if not hyper:
        return _note("No best trial.")
    tuned = set((best.get("params") or {}).keys())
    rows = []
    for k, v in hyper.items():
        tag = ' <span class="tag">tuned</span>' if k in tuned else ""
        rows.append((f"<code>{_e(k)}</code>{tag}", f"<code>{_e(_fmt_param(v) if k in tuned else v)}</code>"))
    return _kv_table(rows)


def _final_model(summary: dict[str, Any]) -> str:
    fm = summary.get("final_model") or {}
    model = summary.get("model") or {}
    pred = summary.get("predictions") or {}
    rows: list[tuple[str, str]] = []
    for key, value in sorted((fm.get("metrics") or {}).items(), key=lambda kv: (not kv[0].startswith("test:"), kv[0])):
        rows.append((f"<code>{_e(key)}</code>", _e(_fmt_score(value) if _finite(value) else value)))
    rows.append(("training job", f"<code>{_e(fm.get('job_name') or EMPTY)}</code>"))
    rows.append(("model artifact", f'<code class="uri">{_e(fm.get("model_uri") or model.get("model_uri") or EMPTY)}</code>'))
    group = model.get("model_package_group")
    version = model.get("version")
    rows.append(("model package", _e(f"{group} v{version}" if group and version is not None else EMPTY)))
    approval = _status_badge(model.get("approval_status"))
    if model.get("approval_reason"):
        approval += f' <span class="muted">{_e(model["approval_reason"])}</span>'
    rows.append(("approval", approval))
    rows.append(("predictions", f'<code class="uri">{_e(pred.get("output_uri") or EMPTY)}</code>'))
    if pred:
        rows.append(("prediction files / records", f"{_e(_count(pred.get('files')))} / {_e(_count(pred.get('records')))}"))
    return _kv_table(rows)


def _count(value: Any) -> str:
    if isinstance(value, list):
        return f"{len(value):,}"
    return _fmt_int(value) if isinstance(value, int) else (EMPTY if value is None else str(value))


def _failures(ledgers: list[RunLedger]) -> str:
    labels = _run_labels(ledgers)
    bad = [(i, t) for i, ledger in enumerate(ledgers) for t in ledger.trials if t["state"] in TRIAL_UNFINISHED]
    if not bad:
        return ""
    items = "".join(
        f"<li><b>{_e(_trial_name(labels, i, t))}</b> {_status_badge(t['state'])} "
        f"<span class=\"reason\">{_e(t.get('failure_reason') or EMPTY)}</span></li>"
        for i, t in bad
    )
    return (
        f'<details class="failures"{" open" if len(bad) <= 10 else ""}><summary>{len(bad)} trial{"s" if len(bad) != 1 else ""} did not complete '
        f"— reasons</summary><ul>{items}</ul></details>"
    )


# -- page ----------------------------------------------------------------------------------------

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--border:#d8dee4;--panel:#f6f8fa;--accent:#0969da}
*{box-sizing:border-box}
body{margin:0;background:#fff;color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,"Noto Sans",sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1120px;margin:0 auto;padding:32px 36px 72px}
header h1{font-size:24px;font-weight:650;margin:0 0 4px;letter-spacing:-.01em}
header .sub{color:var(--muted);font-size:13px}
header .sub code{font-size:12px}
.cards{display:grid;grid-template-columns:repeat(3,1fr);gap:12px;margin:22px 0 8px}
@media (max-width:760px){.cards{grid-template-columns:repeat(2,1fr)}}
.card{border:1px solid var(--border);border-radius:10px;padding:12px 14px 13px;background:var(--panel)}
.card .label{font-size:11.5px;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);font-weight:600}
.card .value{font-size:25px;font-weight:650;font-variant-numeric:tabular-nums;margin:2px 0 1px;white-space:nowrap}
.card .value small{font-size:15px;font-weight:500;color:var(--muted)}
.card .detail{font-size:12.5px;color:var(--muted)}
section{margin-top:38px}
h2{font-size:17px;font-weight:650;margin:0 0 4px;padding-bottom:6px;border-bottom:1px solid var(--border)}
h2 .n{color:var(--muted);font-weight:500;margin-right:6px}
p.lead{color:var(--muted);margin:6px 0 6px;font-size:13px;max-width:860px}
p.empty{padding:22px;border:1px dashed var(--border);border-radius:8px;color:var(--muted);text-align:center;background:#fcfcfd}
svg{display:block;width:100%;height:auto;max-width:100%;overflow:visible}
svg text{font-size:12px;fill:var(--fg);font-variant-numeric:tabular-nums}
svg text.tick{font-size:11.5px;fill:#424a53}
svg text.muted{fill:var(--muted)}
svg text.strong{font-weight:600}
svg text.axis-label{font-size:12.5px;fill:var(--muted)}
svg text.axis-title{font-size:12.5px;font-weight:650}
svg text.hint{font-size:10.5px;fill:var(--muted)}
svg text.run-label{font-size:12px;font-weight:650}
svg text.halo{paint-order:stroke;stroke:#fff;stroke-width:3.5px;stroke-linejoin:round}
.legend{display:flex;flex-wrap:wrap;gap:4px 18px;font-size:12.5px;margin:10px 0 6px;color:#424a53;align-items:center}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;flex:none}
.sw.dot{width:10px;height:10px;border-radius:50%}
.sw.bar{width:18px;border-radius:2px}
.sw.ring{width:12px;height:12px;border-radius:50%;border:1.6px solid var(--fg)}
.sw.x{font-style:normal;font-weight:700;font-size:16px;line-height:1}
.grad{display:inline-block;width:140px;height:10px;border-radius:2px}
.cscale .cval{font-variant-numeric:tabular-nums;color:var(--muted)}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:28px}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:5px 8px;border-bottom:1px solid #eaeef2;text-align:right;white-space:nowrap;vertical-align:top}
thead th{background:var(--panel);font-weight:600;border-bottom:1px solid var(--border);font-size:12.5px}
.l{text-align:left}
tr.best td{background:#fff8c5}
tr.total td{font-weight:650;border-top:1px solid var(--border)}
td.fold{color:#424a53}
th.param{color:#0550ae;white-space:normal;vertical-align:bottom}
thead th{vertical-align:bottom}
.table-wrap{overflow-x:auto;margin-top:10px}
table.kv{width:100%;margin-top:10px}
table.kv th{text-align:left;font-weight:500;color:var(--muted);width:38%;white-space:nowrap}
table.kv td{text-align:left;white-space:normal;overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
.uri{overflow-wrap:anywhere}
td.run{white-space:normal;max-width:420px}
td.run .uri{font-size:11.5px}
.tag{font-size:10.5px;color:#0550ae;background:#ddf4ff;border-radius:8px;padding:0 6px;margin-left:4px}
.badge{display:inline-block;font-size:11.5px;font-weight:600;border-radius:10px;padding:0 8px;border:1px solid}
.badge.good{color:#1a7f37;background:#dafbe1;border-color:#aceebb}
.badge.warn{color:#9a6700;background:#fff8c5;border-color:#f5e0a0}
.badge.bad{color:#d1242f;background:#ffebe9;border-color:#ffcecb}
.badge.neutral{color:var(--muted);background:var(--panel);border-color:var(--border)}
.muted{color:var(--muted)}
table.stages td.share{width:260px;color:var(--muted);font-size:12px}
table.stages td.share i{display:inline-block;height:9px;background:#8fb8de;border-radius:2px;margin-right:8px;vertical-align:middle;max-width:200px}
details.failures{margin-top:14px;font-size:13px}
details.failures summary{cursor:pointer;color:var(--muted)}
details.failures li{margin:3px 0}
details.failures .reason{color:#424a53;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
footer{margin-top:40px;color:var(--muted);font-size:12px}
h3{font-size:14px;font-weight:650;margin:18px 0 4px}
ul.plain{margin:4px 0 0;padding-left:18px}
td.wrap{white-space:normal;max-width:520px}
@media print{main{padding:0}section{break-inside:avoid}}
"""


def _card(label: str, value: str, detail: str = "") -> str:
    return (
        f'<div class="card"><div class="label">{label}</div><div class="value">{value}</div>'
        f'<div class="detail">{detail}</div></div>'
    )


def _holdout_headline(summary: dict[str, Any]) -> tuple[str | None, Any]:
    holdout = summary.get("holdout") or {}
    if not holdout:
        return None, None
    metric = str((summary.get("objective") or {}).get("metric") or "")
    suffix = metric.split(":", 1)[-1]
    key = f"test:{suffix}" if f"test:{suffix}" in holdout else sorted(holdout)[0]
    return key, holdout[key]


def _cards(summary: dict[str, Any]) -> str:
    objective = summary.get("objective") or {}
    cv = summary.get("cv_objective") or {}
    best = summary.get("best") or {}
    metric = _metric_label(objective)
    arrow = {"Maximize": "↑", "Minimize": "↓"}.get(str(objective.get("type")), "")
    if _finite(cv.get("mean")):
        value = f"{_e(_fmt_score(cv['mean']))} <small>± {_e(_fmt_score(cv.get('std')))}</small>"
        where = f"trial {best.get('trial')}" + (f" · {cv['folds']} folds" if cv.get("folds") else "")
        if len(summary.get("runs") or []) > 1 and best.get("run_id"):
            where += f" · {best['run_id']}"
    else:
        value, where = EMPTY, "no completed trial"
    cards = [_card(f"best CV score {arrow}", value, f"<code>{_e(metric)}</code> · {_e(where)}")]

    key, holdout = _holdout_headline(summary)
    if key is not None:
        others = [f"{k} {_fmt_score(v)}" for k, v in sorted((summary.get("holdout") or {}).items()) if k != key]
        train = {k: v for k, v in ((summary.get("final_model") or {}).get("metrics") or {}).items() if k.startswith("train:")}
        detail = " · ".join(others[:1]) or (
            f"train {_fmt_score(next(iter(train.values())))}" if train else "final model"
        )
        cards.append(
            _card("holdout", _e(_fmt_score(holdout) if _finite(holdout) else holdout), f"<code>{_e(key)}</code> · {_e(detail)}")
        )
    else:
        cards.append(_card("holdout", EMPTY, "no final model metrics"))

    by_state = (summary.get("trials") or {}).get("by_state") or {}
    done = by_state.get(TrialState.COMPLETED, 0)
    total = (summary.get("trials") or {}).get("total", 0)
    detail = " · ".join(f"{by_state.get(s, 0)} {s.lower()}" for s in (TrialState.FAILED, TrialState.PRUNED, TrialState.STOPPED))
    if by_state.get(TrialState.RUNNING):
        detail += f" · {by_state[TrialState.RUNNING]} running"
    cards.append(_card("trials completed", f"{done} <small>/ {total}</small>", _e(detail)))

    jobs = summary.get("fold_jobs")
    detail = f"billable {_fmt_duration(summary.get('billable_seconds'))}"
    if summary.get("retained_seconds"):
        detail += f" + retained {_fmt_duration(summary.get('retained_seconds'))}"
    if summary.get("instance_hours") is not None:
        detail += f" = {_fmt_instance_hours(summary)}"
    if summary.get("warm_pool_reused"):
        detail += f" · {summary['warm_pool_reused']} warm-pool reuses"
    cards.append(_card("fold jobs run", _e(_fmt_int(jobs)), _e(detail)))

    model = summary.get("model") or {}
    if model.get("version") is not None:
        value = f"v{_e(model['version'])}"
        detail = f"{_status_badge(model.get('approval_status'))} {_e(model.get('model_package_group') or '')}"
    else:
        value, detail = EMPTY, "not registered"
    cards.append(_card("model version", value, detail))

    cards.append(
        _card("wall time", _e(_fmt_duration(summary.get("total_seconds"))), f"{len(summary.get('stage_seconds') or {})} stages")
    )
    return '<div class="cards">' + "".join(cards) + "</div>"


def _section(number: str, title: str, lead: str, body: str) -> str:
    n = f'<span class="n">{_e(number)}</span>' if number else ""
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return f"<section><h2>{n}{_e(title)}</h2>{lead_html}{body}</section>"


def render_html(summary: dict[str, Any], ledgers: list[RunLedger]) -> str:
    """The self-contained HTML report (inline CSS and SVG, no scripts or external resources)."""
    objective = summary.get("objective") or {}
    metric = _metric_label(objective)
    maximize = _maximize(summary, ledgers)
    direction = "higher is better" if maximize else "lower is better"
    run_ids = summary.get("run_ids") or [ledger.run_id for ledger in ledgers]
    title = "cvtune report" + (f" — {', '.join(map(str, run_ids))}" if run_ids else "")
    strategy = ledgers[0].data.get("config", {}).get("strategy") if ledgers else None
    folds = max((ledger.data.get("folds") or 0 for ledger in ledgers), default=0)
    sub = [
        f"objective <code>{_e(metric)}</code> ({_e(objective.get('type') or EMPTY)})",
        f"{folds}-fold cross-validation" if folds else "",
        f"strategy {_e(strategy)}" if strategy else "",
        f"generated {_e(summary.get('generated_at') or EMPTY)}",
    ]

    from cvtune.story import render_story

    sections = [
        _section(
            "", "What was tuned, and why it ended",
            "The data and partition tuned, the runs the warm start learned from, the refinement decision "
            "(every rule's verdict) and why each run stopped.",
            render_story(summary.get("story") or {}),
        ),
        _section(
            "1", "Optimization history",
            f"Cross-validated {_e(metric)} of every trial ({_e(direction)}); the line is the best score so far. "
            "Trials that did not complete are marked × below the plot.",
            _history(ledgers, maximize, metric),
        ),
        _section(
            "2", "Per-fold scores of the top trials",
            "Each fold's validation score for the five best trials; a tight spread means the choice does not "
            "hinge on one lucky split.",
            _folds_plot(ledgers, maximize, metric),
        ),
        _section(
            "3", "Parameter space",
            "Parallel coordinates: one axis per tuned parameter (bounds from the search space), then the objective. "
            "Each line is a completed trial, darker is better; the thick line is the best trial.",
            _parallel(ledgers, maximize, metric),
        ),
        _section("4", "Top trials", f"The ten best completed trials by mean {_e(metric)}, then lower std.",
                 _top_table(ledgers, maximize) + _failures(ledgers)),
        '<div class="grid2">'
        + _section("", "Best hyperparameters", "Static and tuned values the final model was trained with.",
                   _best_hyperparameters(summary))
        + _section("", "Final model", "Holdout metrics of the model refit on all training data.", _final_model(summary))
        + "</div>",
        '<div class="grid2">'
        + _section("", "Stage wall times", "", _stage_table(summary.get("stage_seconds") or {}))
        + _section("", "Extra", "", _extra(summary.get("extra") or {}))
        + "</div>"
        if summary.get("extra")
        else _section("", "Stage wall times", "", _stage_table(summary.get("stage_seconds") or {})),
        _section("", "Runs", "", _runs_table(summary)),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<header><h1>{_e(title)}</h1><div class=\"sub\">{' · '.join(s for s in sub if s)}</div></header>"
        + _cards(summary)
        + "".join(sections)
        + "<footer>Generated by cvtune. Every fold of every trial ran as its own training job; "
        "scores are validation-fold scores unless marked <code>test:</code>.</footer>"
        "</main></body></html>\n"
    )


def _extra(extra: dict[str, Any]) -> str:
    rows = [(f"<code>{_e(k)}</code>", f"<code>{_e(v)}</code>") for k, v in extra.items()]
    return _kv_table(rows) if rows else _note("—")
