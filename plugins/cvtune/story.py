"""The story of a pipeline run, for the report: what was tuned, what it learned from, why it
refined, why it stopped.

:func:`collect_story` reads it from the run ledgers (their fold manifests, their warm-start
parents, their stop reasons) and the refinement decision (``RefinementDecisionOperator``'s
plan); :func:`render_story` is its section of the HTML report.
"""

from __future__ import annotations

import re
from typing import Any

from cvtune.ledger import RunLedger
from cvtune.states import RunStatus

PARTITION_RE = re.compile(r"(?:^|/)dt=(\d{4}-\d{2}-\d{2})(?:/|$)")


def collect_story(ledgers: list[RunLedger], refinement: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-able: ``data`` (one entry per fold manifest), ``warm_start`` (per warm-started run:
    its parents and their best scores), ``refinement`` (the decision, when one was made) and
    ``stops`` (per run: how it ended and why)."""
    data, seen = [], set()
    for ledger in ledgers:
        uri = ledger.data.get("manifest_uri")
        if not uri or uri in seen:
            continue
        seen.add(uri)
        data.append(_data_of(uri, ledger))
    return {
        "data": data,
        "warm_start": [w for w in (_warm_start_of(ledger) for ledger in ledgers) if w],
        "refinement": dict(refinement) if isinstance(refinement, dict) else None,
        "stops": [stop_of(ledger) for ledger in ledgers],
    }


def _data_of(manifest_uri: str, ledger: RunLedger) -> dict[str, Any]:
    entry: dict[str, Any] = {"manifest": manifest_uri, "runs": [ledger.run_id], "folds": ledger.data.get("folds")}
    try:
        manifest = ledger.store.read_json(manifest_uri)  # the run's store: its connection's credentials
    except Exception as exc:  # noqa: BLE001 - the report still renders without the manifest
        entry["error"] = f"manifest not readable: {exc}"
        return entry
    dataset = manifest.get("dataset") or {}
    split = manifest.get("split") or {}
    uri = dataset.get("uri")  # a list when the split read several partitions
    uris = [str(u) for u in (uri if isinstance(uri, list) else [uri] if uri else [])]
    partitions = [p for u in uris for p in PARTITION_RE.findall(u)]
    entry.update({
        "uri": uri,
        "partitions": partitions,
        "rows": dataset.get("rows"),
        "columns": len(dataset.get("columns") or []) or None,
        "target": split.get("target"),
        "strategy": split.get("strategy"),
        "holdout_rows": (manifest.get("holdout") or {}).get("rows"),
        "fingerprint": manifest.get("fingerprint"),
    })
    return entry


def _warm_start_of(ledger: RunLedger) -> dict[str, Any] | None:
    warm = ledger.data.get("warm_start") or {}
    if not warm.get("parents"):
        return None
    parents = []
    for uri in warm["parents"]:
        entry: dict[str, Any] = {"ledger": uri}
        try:
            parent = RunLedger.load(uri, ledger.store)
        except Exception as exc:  # noqa: BLE001 - a parent may have been cleaned up since
            entry["error"] = str(exc)
        else:
            best = parent.best_trial()
            entry.update({"run_id": parent.run_id, "status": parent.status, "trials": len(parent.trials)})
            if best is not None:
                entry.update({"trial": best["number"], "mean": best["mean"], "std": best["std"]})
        parents.append(entry)
    return {"run_id": ledger.run_id, "type": warm.get("type"), "parents": parents,
            "inherited_trials": len(ledger.data.get("inherited") or [])}


def stop_of(ledger: RunLedger) -> dict[str, Any]:
    """How a run ended and why: the ledger's own ``stop_reason`` when it records one, else what
    its status, failure reason and budget say (``derived``)."""
    data = ledger.data
    recorded = data.get("stop_reason")
    if recorded:
        if isinstance(recorded, dict):
            text = recorded.get("message") or recorded.get("reason") or recorded.get("detail") or str(recorded)
            return {"run_id": ledger.run_id, "status": ledger.status, "reason": str(text), "recorded": recorded,
                    "derived": False}
        return {"run_id": ledger.run_id, "status": ledger.status, "reason": str(recorded), "derived": False}
    config = data.get("config") or {}
    budget = config.get("max_trials")
    own = len(ledger.trials)
    if ledger.status in (RunStatus.FAILED, RunStatus.STOPPED):
        reason = data.get("failure_reason") or ledger.status.lower()
    elif ledger.status == RunStatus.COMPLETED:
        if isinstance(budget, int) and own >= budget:
            reason = f"trial budget spent: {own} of max_trials {budget}"
        else:
            reason = f"no more candidates to try after {own} trial(s)" + (
                f" (max_trials {budget})" if budget is not None else ""
            )
    else:
        reason = f"still {str(ledger.status).lower()}: {own} of {budget} trial(s) so far"
    return {"run_id": ledger.run_id, "status": ledger.status, "reason": reason, "derived": True}


# -- HTML ----------------------------------------------------------------------------------------


def render_story(story: dict[str, Any]) -> str:
    from cvtune.report import EMPTY, _e, _fmt_int, _fmt_param, _fmt_score, _kv_table, _note, _status_badge

    parts = []
    rows = []
    for d in story.get("data") or []:
        uris = d.get("uri") if isinstance(d.get("uri"), list) else [d.get("uri") or d["manifest"]]
        what = ", ".join(f"<code class=\"uri\">{_e(u)}</code>" for u in uris)
        if d.get("partitions"):
            what += " · partition " + ", ".join(f"<code>dt={_e(p)}</code>" for p in d["partitions"])
        facts = [
            f"{_fmt_int(d.get('rows'))} rows" if d.get("rows") is not None else "",
            f"{d['columns']} columns" if d.get("columns") else "",
            f"target <code>{_e(d['target'])}</code>" if d.get("target") else "",
            f"{d['folds']} folds ({_e(d.get('strategy') or EMPTY)})" if d.get("folds") else "",
            f"{_fmt_int(d['holdout_rows'])} holdout rows" if d.get("holdout_rows") else "",
            _e(d["error"]) if d.get("error") else "",
        ]
        rows.append((f"data tuned <span class=\"muted\">({_e(', '.join(d['runs']))})</span>",
                     what + "<div class=\"muted\">" + " · ".join(f for f in facts if f) + "</div>"))
    for w in story.get("warm_start") or []:
        items = []
        for p in w["parents"]:
            if "mean" in p:
                items.append(f"<li><code>{_e(p['run_id'])}</code>: best {_e(_fmt_score(p['mean']))} "
                             f"± {_e(_fmt_score(p.get('std')))} (trial {_e(p['trial'])} of {_e(p['trials'])})</li>")
            else:
                items.append(f"<li><code>{_e(p.get('run_id') or p['ledger'])}</code>: "
                             f"{_e(p.get('error') or 'no completed trial')}</li>")
        inherited = f" · {w['inherited_trials']} trials inherited" if w.get("inherited_trials") else ""
        rows.append((f"warm start of <code>{_e(w['run_id'])}</code>",
                     f"{_e(w.get('type') or EMPTY)}{inherited}<ul class=\"plain\">{''.join(items)}</ul>"))
    for s in story.get("stops") or []:
        label = " <span class=\"muted\">(from the ledger's status and budget)</span>" if s.get("derived") else ""
        rows.append((f"why <code>{_e(s['run_id'])}</code> stopped",
                     f"{_status_badge(s.get('status'))} {_e(s['reason'])}{label}"))
    parts.append(_kv_table(rows) if rows else _note("No run ledgers."))

    plan = story.get("refinement")
    if plan:
        verdict = "refined" if plan.get("refine") else "not refined"
        parts.append(f"<h3>Refinement decision: {_e(verdict)}</h3>")
        rules = plan.get("rules") or []
        if rules:
            body = []
            for r in rules:
                mark = "off" if r.get("off") else ("holds" if r.get("holds") else "does not hold")
                tone = "neutral" if r.get("off") else ("warn" if r.get("holds") else "good")
                stat = r.get("statistic")
                body.append(
                    "<tr>"
                    f"<td class=\"l\"><code>{_e(r['rule'])}</code></td>"
                    f"<td class=\"l\"><span class=\"badge {tone}\">{_e(mark)}</span></td>"
                    f"<td>{_e(_fmt_score(stat) if isinstance(stat, (int, float)) else EMPTY)}</td>"
                    f"<td>{_e(_fmt_score(r['threshold']) if isinstance(r.get('threshold'), (int, float)) else EMPTY)}</td>"
                    f"<td class=\"l wrap\">{_e(r.get('detail') or '')}</td>"
                    "</tr>"
                )
            parts.append(
                '<div class="table-wrap"><table class="rules"><thead><tr><th class="l">rule</th>'
                '<th class="l">verdict</th><th>statistic</th><th>threshold</th><th class="l">why</th></tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table></div>"
            )
        elif plan.get("reasons"):
            parts.append("<ul>" + "".join(f"<li>{_e(x)}</li>" for x in plan["reasons"]) + "</ul>")
        narrowed = _ranges_by_name(plan.get("parameter_ranges"))
        original = _ranges_by_name(plan.get("original_ranges"))
        if plan.get("refine") and narrowed:
            body = []
            for name, new in narrowed.items():
                old = original.get(name)
                body.append(
                    f"<tr><td class=\"l\"><code>{_e(name)}</code></td>"
                    f"<td>{_e(_fmt_range(old, _fmt_param))}</td><td>{_e(_fmt_range(new, _fmt_param))}</td></tr>"
                )
            factor = plan.get("narrowing")
            parts.append(
                f"<p class=\"lead\">Ranges refine searched{f' ({_e(factor)} of the original width, around the best)' if factor else ''}:</p>"
                '<div class="table-wrap"><table class="ranges"><thead><tr><th class="l">parameter</th>'
                f"<th>original</th><th>narrowed</th></tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            )
    return "".join(parts)


def _ranges_by_name(ranges: Any) -> dict[str, dict[str, Any]]:
    """``{name: range}`` from SageMaker's ParameterRanges shape."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(ranges, dict):
        return out
    for kind in ("ContinuousParameterRanges", "IntegerParameterRanges", "CategoricalParameterRanges"):
        for r in ranges.get(kind) or []:
            if isinstance(r, dict) and r.get("Name"):
                out[r["Name"]] = r
    return out


def _fmt_range(r: dict[str, Any] | None, fmt: Any) -> str:
    if not r:
        return "—"
    if "Values" in r:
        return "{" + ", ".join(map(str, r["Values"])) + "}"

    def num(v: Any) -> str:
        try:
            return fmt(float(v)) if "." in str(v) or "e" in str(v).lower() else str(v)
        except (TypeError, ValueError):
            return str(v)

    scaling = r.get("ScalingType")
    return f"[{num(r.get('MinValue'))}, {num(r.get('MaxValue'))}]" + (f" {scaling.lower()}" if scaling and scaling != "Auto" else "")
