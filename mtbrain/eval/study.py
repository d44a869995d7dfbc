"""Model comparison studies: :func:`~mtbrain.eval.compare.compare` over the folds of a
grouped, stratified K-fold, then statistical tests (``mtbrain study``).

1. **Folds.** The data set's duplicate groups (exact and near copies,
   :func:`mtbrain.data.dedup.find_duplicates`) are kept whole in ``K`` folds stratified by
   class (:func:`mtbrain.data.split.kfold_splits`: scikit-learn's ``StratifiedGroupKFold``).
   Split ``i`` tests on fold ``i`` and trains on the other folds minus a validation part
   (``val`` of them, also grouped and stratified) that picks each model's best epoch. The
   splits are written once, to ``OUT/folds/fold-<i>.json``.
2. **Training and scoring.** Each fold is one comparison in ``OUT/fold-<i>/``: every config
   trained under the same budget (``budget_s`` seconds, or an epoch budget ``train.epochs=E``
   in ``overrides``), optionally the YOLO baseline under the same budget, each scored by the
   one evaluator on the fold's test part. A (model, fold) *unit* keeps everything in
   ``OUT/fold-<i>/<model>/``; its single-number metrics go to ``compare-entry.json``, written
   last and atomically. A rerun skips finished units and resumes an interrupted one from its
   ``last.pt`` (a YOLO unit starts over), so a killed study goes on where it stopped.
3. **Cross-dataset** (``eval_data``). Every trained model is also scored on another data set,
   from which every image that duplicates (exactly or nearly) an image of the study's data
   set is first removed (:func:`mtbrain.data.dedup.leak_free`; the names removed are kept in
   ``OUT/cross-data.json``). Results in ``OUT/fold-<i>/<model>/cross/``; the report gives the
   drop from the in-domain score.
4. **Report** (:func:`summarize`, :mod:`mtbrain.eval.stats`): ``OUT/results.json``,
   ``OUT/report.md`` and one critical-difference diagram per tested metric
   (``OUT/cd_<metric>.png``): mean and bootstrap confidence interval per model and metric,
   Friedman's test with Kendall's W, Holm-adjusted pairwise Wilcoxon signed-rank tests.

Box metrics (:data:`BOX_METRICS`) are not defined for classification-only members
(``model.box_head: none``): they are ``n/a`` there and those members stay out of the
metric's tests.

The settings that define the folds and the budget are recorded in ``OUT/study.json``. A rerun
with other settings is refused (use another ``OUT``); members may be added later (they train
on the same folds), but a member's config may not change under the same name.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtbrain.errors import ConfigError, DataError
from mtbrain.eval.compare import compare, epochs_override, scalar_metrics
from mtbrain.io import write_json, write_text

STUDY_FORMAT = "mtbrain-study"

KNOWN_METRICS: tuple[str, ...] = (
    "accuracy", "balanced_accuracy", "macro_f1", "macro_f2", "macro_precision", "macro_recall",
    "cohen_kappa", "mcc", "macro_auc", "ece", "mean_iou", "iou50_rate", "map50", "map50_95",
    "map50_all_boxes", "map50_95_all_boxes", "params_m", "train_s", "ms_per_image")
"""Metrics a study can report (single numbers of the evaluator, plus size and speed)."""

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", "balanced_accuracy", "macro_f1", "mcc",
                                    "mean_iou", "map50")

BOX_METRICS: frozenset[str] = frozenset({"mean_iou", "iou50_rate", "map50", "map50_95",
                                         "map50_all_boxes", "map50_95_all_boxes"})
"""Metrics of the predicted box: not defined for classification-only members."""

LOWER_IS_BETTER: frozenset[str] = frozenset({"ece", "params_m", "train_s", "ms_per_image"})


@dataclass(frozen=True)
class Member:
    """One model of a study.

    Attributes:
        name: Its name (the config file's stem; ``yolo`` for the YOLO baseline).
        kind: ``mtbrain`` or ``yolo``.
        task: ``multitask``, ``classification`` (no box head) or ``detection`` (YOLO).
        config: The config file.
        sha1: SHA-1 of the config file's bytes (a changed config is a new model).
    """

    name: str
    kind: str
    task: str
    config: str
    sha1: str


def _sha1(path: Path) -> str:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc.strerror or exc})") from None


def study_members(configs: Sequence[str | Path], yolo_config: str | Path | None = None, *,
                  overrides: Sequence[str] = ()) -> list[Member]:
    """Check every config (it parses with the overrides; its pretrained weights can be had
    offline) and return the members, before anything is trained.

    Raises:
        ConfigError: naming the config file, or when fewer than two members or two of the
            same name are given.
    """
    from mtbrain.engine.config import load_config
    from mtbrain.models import weights as W

    members = []
    for c in configs:
        path = Path(c)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            cfg = load_config(path, overrides=list(overrides))
            if cfg.model.pretrained and cfg.model.checkpoint_path is None:
                W.check_pretrained_available(cfg.model.backbone)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        task = "classification" if cfg.model.box_head == "none" else "multitask"
        members.append(Member(path.stem, "mtbrain", task, str(path), _sha1(path)))
    if yolo_config is not None:
        path = Path(yolo_config)
        from mtbrain.baselines.yolo import YoloBaselineConfig

        if not path.is_file():
            raise ConfigError(f"{path}: YOLO config file not found")
        try:
            YoloBaselineConfig.from_yaml(path)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        members.append(Member("yolo", "yolo", "detection", str(path), _sha1(path)))
    names = [m.name for m in members]
    if len(members) < 2:
        raise ConfigError(f"a study compares models: give at least two (--configs, "
                          f"--yolo-config), got {names or 'none'}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"two members share the name {twice[0]!r} (the config file's stem): "
                          "rename one of the files")
    return members


def _check_options(folds: int, budget_s: float, overrides: Sequence[str], val: float,
                   metrics: Sequence[str], alpha: float) -> None:
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"--folds must be an integer >= 2, got {folds!r}")
    if not (isinstance(budget_s, int | float) and math.isfinite(budget_s) and budget_s >= 0):
        raise ConfigError(f"--budget-s must be a number of seconds >= 0, got {budget_s!r}")
    epochs = epochs_override(overrides)
    if budget_s <= 0 and epochs is None:
        raise ConfigError("a study trains every model under the same budget: give "
                          "--budget-s S (seconds per model and fold) or --set train.epochs=E")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--set train.epochs={epochs}: must be at least 1")
    if not 0 < val < 1:
        raise ConfigError(f"--val must be in (0, 1), got {val}")
    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha must be in (0, 1), got {alpha}")
    unknown = [m for m in metrics if m not in KNOWN_METRICS]
    if unknown or not metrics:
        raise ConfigError(f"unknown metric(s) {unknown or '(none given)'}; known: "
                          f"{', '.join(KNOWN_METRICS)}")


def _manifest(out: Path, settings: dict[str, Any], members: Sequence[Member]) -> dict[str, Any]:
    """Check ``OUT/study.json`` against this run's settings and members, then update it."""
    path = out / "study.json"
    known: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read the study manifest: {exc}", path=path) from None
        if not isinstance(old, dict) or old.get("format") != STUDY_FORMAT:
            raise DataError(f"not an mtbrain study manifest (no \"format\": \"{STUDY_FORMAT}\")",
                            path=path)
        for key, value in settings.items():
            before = old["settings"].get(key)
            if key == "eval_data" and (before is None or value is None):
                settings[key] = value if value is not None else before
                continue
            if before != value:
                raise ConfigError(f"{out} holds a study with {key}={before!r}, this run asks "
                                  f"{key}={value!r}: rerun with the same settings to resume it, "
                                  "or give another --out")
        known = old.get("members", {})
        for m in members:
            if m.name in known and known[m.name]["sha1"] != m.sha1:
                raise ConfigError(f"{m.config}: this config changed since the study in {out} "
                                  f"trained {m.name!r} with it; rename the file to add it as a "
                                  "new member, or give another --out")
    known.update({m.name: asdict(m) for m in members})
    manifest = {"format": STUDY_FORMAT, "version": 1, "settings": settings, "members": known}
    write_json(path, manifest)
    return manifest


def _fold_splits(records: Any, out: Path, *, folds: int, val: float, seed: int, near: bool,
                 workers: int | None, cache: bool, policy: dict[str, Any],
                 log: Callable[[str], None]) -> tuple[list[Path], dict[str, Any]]:
    """The fold split files (made once, then reused) and a summary of the groups."""
    paths = [out / "folds" / f"fold-{i}.json" for i in range(1, folds + 1)]
    info_path = out / "folds" / "folds.json"
    if all(p.exists() for p in [*paths, info_path]):
        return paths, json.loads(info_path.read_text())
    from mtbrain.data.dedup import find_duplicates
    from mtbrain.data.split import kfold_splits

    log(f"finding duplicate groups in {records.root} ({len(records)} images)")
    dup = find_duplicates([records], near=near, workers=workers, cache=cache)
    for problem in dup.problems:
        log(f"warning: {problem} (kept, as a group of its own)")
    groups = dup.rel_groups(0)
    splits = kfold_splits(records, groups, folds, val=val, seed=seed, policy=policy)
    for split, path in zip(splits, paths, strict=True):
        split.write(path)
    labels = {s.rel: s.label for s in records}
    info = {"n_images": len(records), "n_groups": len(splits[0].groups),
            "images_in_groups": sum(len(g) for g in splits[0].groups),
            "folds": [{name: _counts(rels, labels) for name, rels in s.parts.items()}
                      for s in splits]}
    write_json(info_path, info)
    return paths, info


def _counts(rels: Sequence[str], labels: dict[str, str | None]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rels:
        key = labels[r] or "(none)"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _cross_set(eval_data: str, records: Any, out: Path, *, layout: str | None,
               policy: Any, near: bool, workers: int | None, cache: bool,
               log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """The other data set without the images that duplicate one of ``records``."""
    from mtbrain.data import load_dataset
    from mtbrain.data.dedup import leak_free

    other = load_dataset(eval_data, layout=layout, policy=policy)
    path = out / "cross-data.json"
    if path.exists():
        info = json.loads(path.read_text())
        gone = set(info["removed"])
    else:
        log(f"removing from {other.root} the images that duplicate images of {records.root}")
        _, removed = leak_free(other, [records], near=near, workers=workers, cache=cache)
        gone = set(removed)
        info = {"data": _data_id(eval_data), "n_images": len(other), "n_removed": len(removed),
                "n_kept": len(other) - len(removed), "removed": removed}
        write_json(path, info)
    kept = other.subset([s.rel for s in other if s.rel not in gone])
    if not len(kept):
        raise DataError(f"every image of it duplicates an image of {records.root}: nothing "
                        "left to evaluate on", path=other.root)
    return kept, {k: v for k, v in info.items() if k != "removed"}


def _cross_evaluate(member: Member, unit: Path, other: Any, log: Callable[[str], None]) -> None:
    """Score the unit's trained model on the other set (``unit/cross/metrics.json``)."""
    target = unit / "cross" / "metrics.json"
    if target.exists():
        return
    log(f"{member.name}: scoring on {other.root}")
    if member.kind == "yolo":
        from mtbrain.baselines.yolo import YoloBaselineConfig, predict_yolo
        from mtbrain.eval.evaluate import score_predictions

        trained = json.loads((unit / "metrics.json").read_text())
        cfg = YoloBaselineConfig.from_yaml(member.config)
        preds = predict_yolo(trained["weights"], other, imgsz=cfg.imgsz, conf=cfg.conf,
                             min_score=cfg.min_score, device=cfg.device)
        metrics = score_predictions(other, preds, trained["classes"])
        write_json(unit / "cross" / "predictions.json", preds)
        write_json(target, {**metrics, "data": str(other.root)})
        return
    from mtbrain.eval.evaluate import evaluate
    from mtbrain.models import Model

    evaluate(Model.load(unit / "train" / "best.pt"), other, unit / "cross")


def _data_id(data: str | Path) -> str:
    """A data argument as an absolute path (with its ``:part`` for a split file)."""
    from mtbrain.data.splitfile import parse_data_arg

    path, part = parse_data_arg(data)
    return str(Path(path).resolve()) + (f":{part}" if part else "")


def run_study(data: str | Path, out_dir: str | Path, *, configs: Sequence[str | Path] = (),
              yolo_config: str | Path | None = None, folds: int = 5, budget_s: float = 0.0,
              overrides: Sequence[str] = (), eval_data: str | Path | None = None,
              val: float = 0.15, seed: int = 0, metrics: Sequence[str] = DEFAULT_METRICS,
              alpha: float = 0.05, layout: str | None = None, on_error: str = "raise",
              near: bool = True, workers: int | None = None, cache: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) a study and write its report (see the module doc).

    Args:
        data: The data set (any layout); it is split into ``folds`` folds.
        out_dir: The study folder; a study already there is resumed.
        configs: mtbrain training configs (their data sets are replaced by each fold's).
        yolo_config: A YOLO baseline config, or ``None``.
        folds: Number of folds (>= 2).
        budget_s: Training time budget per model and fold in seconds (0: none; then
            ``overrides`` must set ``train.epochs``).
        overrides: ``key=value`` overrides for every mtbrain config.
        eval_data: Another data set to score every trained model on, or ``None``.
        val: Share of the training folds held out for validation.
        seed: Seed of the folds (training seeds are the configs').
        metrics: The metrics to report and test (:data:`KNOWN_METRICS`).
        alpha: Significance level of the tests.
        layout, on_error: How ``data`` (and ``eval_data``) are read.
        near, workers, cache: Duplicate search options (:func:`find_duplicates`).
        log: Progress messages.

    Returns:
        The content of ``results.json``.
    """
    from mtbrain.data import LabelPolicy, load_dataset

    _check_options(folds, budget_s, overrides, val, metrics, alpha)
    members = study_members(configs, yolo_config, overrides=overrides)
    out = Path(out_dir)
    policy = LabelPolicy(on_error=on_error)
    records = load_dataset(data, layout=layout, policy=policy)
    settings = {"data": _data_id(data), "layout": layout, "on_error": on_error,
                "folds": folds, "val": val, "seed": seed, "near": near,
                "budget_s": float(budget_s), "overrides": list(overrides),
                "eval_data": _data_id(eval_data) if eval_data is not None else None}
    manifest = _manifest(out, settings, members)
    paths, fold_info = _fold_splits(records, out, folds=folds, val=val, seed=seed, near=near,
                                    workers=workers, cache=cache, policy=policy.to_dict(),
                                    log=log)
    cross, cross_info = None, None
    if eval_data is not None:
        cross, cross_info = _cross_set(str(eval_data), records, out, layout=None, policy=policy,
                                       near=near, workers=workers, cache=cache, log=log)
    trained = [m for m in members if m.kind == "mtbrain"]
    yolo = next((m for m in members if m.kind == "yolo"), None)
    for i, split in enumerate(paths, start=1):
        log(f"fold {i}/{folds}")
        compare(split, out / f"fold-{i}", configs=[m.config for m in trained],
                yolo_config=yolo.config if yolo else None, budget_s=float(budget_s),
                overrides=overrides, log=lambda s, i=i: log(f"  fold {i}: {s}"))
        if cross is not None:
            for m in members:
                _cross_evaluate(m, out / f"fold-{i}" / m.name, cross,
                                lambda s, i=i: log(f"  fold {i}: {s}"))
    results = summarize(collect(out, members, folds, cross=cross is not None), members,
                        metrics=metrics, alpha=alpha, seed=seed)
    results.update({"settings": manifest["settings"], "folds": fold_info, "cross_data": cross_info})
    write_report(out, results)
    return results


def collect(out: Path, members: Sequence[Member], folds: int, *,
            cross: bool = False) -> dict[str, Any]:
    """The per-fold metrics of every member: ``{"in_domain": {name: [fold metrics...]},
    "cross": {name: [...]}}`` (single numbers only), read from the unit folders.

    Raises:
        DataError: naming the file of a unit that has not finished.
    """
    def read(path: Path) -> dict[str, Any]:
        try:
            return scalar_metrics(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise DataError("unit not finished (no such file): run the study again to "
                            "finish it", path=path) from None

    in_domain = {m.name: [read(out / f"fold-{i}" / m.name / "compare-entry.json")
                          for i in range(1, folds + 1)] for m in members}
    other = {m.name: [read(out / f"fold-{i}" / m.name / "cross" / "metrics.json")
                      for i in range(1, folds + 1)] for m in members} if cross else {}
    return {"in_domain": in_domain, "cross": other}


def _value(member: Member, metric: str, row: dict[str, Any]) -> float | None:
    if metric in BOX_METRICS and member.task == "classification":
        return None
    v = row.get(metric)
    return float(v) if isinstance(v, int | float) and math.isfinite(v) else None


def _describe(values: Sequence[float | None], seed: int) -> dict[str, Any]:
    from mtbrain.eval.stats import bootstrap_ci

    if any(v is None for v in values):
        return {"mean": None, "ci": None, "values": list(values)}
    ci = bootstrap_ci(values, seed=seed)  # type: ignore[arg-type]
    return {"mean": sum(values) / len(values), "ci": list(ci) if ci else None,  # type: ignore[arg-type]
            "values": list(values)}


def summarize(per_fold: dict[str, Any], members: Sequence[Member], *,
              metrics: Sequence[str] = DEFAULT_METRICS, alpha: float = 0.05,
              seed: int = 0) -> dict[str, Any]:
    """Means, confidence intervals and tests of every metric (the ``results.json`` core).

    Each metric is tested over the members that have it on every fold (two at least):
    :func:`mtbrain.eval.stats.compare_models`.
    """
    from mtbrain.eval.stats import compare_models

    summary: dict[str, dict[str, Any]] = {}
    tests: dict[str, Any] = {}
    for metric in metrics:
        values = {m.name: [_value(m, metric, row) for row in per_fold["in_domain"][m.name]]
                  for m in members}
        summary[metric] = {name: _describe(v, seed) for name, v in values.items()}
        usable = [m.name for m in members if all(v is not None for v in values[m.name])]
        if len(usable) < 2:
            tests[metric] = {"skipped": f"fewer than two models have {metric} on every fold"}
            continue
        table = [[values[name][f] for name in usable] for f in range(len(values[usable[0]]))]
        tests[metric] = compare_models(table, usable, alpha=alpha, seed=seed,
                                       higher_is_better=metric not in LOWER_IS_BETTER)
    cross: dict[str, dict[str, Any]] = {}
    for metric in metrics if per_fold["cross"] else ():
        cross[metric] = {}
        for m in members:
            inside = [_value(m, metric, r) for r in per_fold["in_domain"][m.name]]
            there = [_value(m, metric, r) for r in per_fold["cross"][m.name]]
            drops = [a - b if a is not None and b is not None else None
                     for a, b in zip(inside, there, strict=True)]
            cross[metric][m.name] = {"in_domain": _describe(inside, seed)["mean"],
                                     "other": _describe(there, seed), "drop": _describe(drops, seed)}
    train_s = {m.name: [r.get("train_s") for r in per_fold["in_domain"][m.name]] for m in members}
    return {"format": "mtbrain-study-results", "version": 1, "metrics": list(metrics),
            "alpha": alpha, "members": [asdict(m) for m in members],
            "params_m": {m.name: per_fold["in_domain"][m.name][0].get("params_m")
                         for m in members},
            "train_s": train_s, "per_fold": per_fold["in_domain"],
            "cross_per_fold": per_fold["cross"], "summary": summary, "tests": tests,
            "cross": cross}


# --------------------------------------------------------------------------- report


def _f(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _mean_ci(entry: dict[str, Any]) -> str:
    if entry["mean"] is None:
        return "n/a"
    ci = entry["ci"]
    return _f(entry["mean"]) + (f" [{_f(ci[0])}, {_f(ci[1])}]" if ci else "")


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [_row(header), "|" + "---|" * len(header), *(_row(r) for r in rows), ""]


def results_table(results: dict[str, Any]) -> str:
    """The Markdown table of mean [CI] per model and metric."""
    names = [m["name"] for m in results["members"]]
    metrics = results["metrics"]
    rows = [[n, *(_mean_ci(results["summary"][k][n]) for k in metrics)] for n in names]
    return "\n".join(_table(["model", *metrics], rows))


def _test_lines(metric: str, test: dict[str, Any], *, plot: str | None) -> list[str]:
    lines = [f"### {metric}", ""]
    if "skipped" in test:
        return [*lines, f"Not tested: {test['skipped']}.", ""]
    n = test["n_folds"]
    order = sorted(test["models"], key=lambda k: test["models"][k]["average_rank"])
    direction = "higher" if test["higher_is_better"] else "lower"
    fr = test["friedman"]
    if fr is not None:
        lines.append(f"Friedman: chi2 = {fr['statistic']:.3f}, df = {fr['df']}, p = "
                     f"{_p(fr['pvalue'])} ({test['n_models']} models, {n} folds; {direction} is "
                     f"better); Kendall's W = {test['kendalls_w']:.3f}.")
    else:
        pair = test["pairwise"][0]
        lines.append(f"Wilcoxon signed-rank ({pair['a']} vs {pair['b']}, {n} folds): "
                     f"statistic = {pair['statistic']:.1f}, p = {_p(pair['pvalue'])}; "
                     f"Kendall's W = {test['kendalls_w']:.3f}; {direction} is better.")
    lines.append("")
    header = ["model", *(f"fold {i}" for i in range(1, n + 1)), "mean", "average rank"]
    rows = [[name, *(_f(v) for v in test["models"][name]["values"]),
             _f(test["models"][name]["mean"]), f"{test['models'][name]['average_rank']:.2f}"]
            for name in order]
    lines += _table(header, rows)
    if fr is not None:
        lines += ["Post-hoc: Wilcoxon signed-rank test of every pair, p-values Holm-adjusted "
                  f"(significant: p (Holm) <= {test['alpha']}).", ""]
        rows = [[r["a"], r["b"], f"{r['mean_diff']:+.4f}", _p(r["pvalue"]), _p(r["p_holm"]),
                 "yes" if r["significant"] else "no"] for r in test["pairwise"]]
        lines += _table(["a", "b", "mean a - b", "p", "p (Holm)", "significant"], rows)
    if plot:
        lines += [f"![critical-difference diagram of {metric}]({plot})", ""]
    return lines


def render_report(results: dict[str, Any], *, plots: dict[str, str]) -> str:
    """The study as Markdown (``report.md``)."""
    s = results["settings"]
    info = results["folds"]
    names = [m["name"] for m in results["members"]]
    k = s["folds"]
    budget = (f"{s['budget_s']:g} s of training per model and fold" if s["budget_s"] > 0
              else "no time limit")
    epochs = epochs_override(s["overrides"])
    if epochs is not None:
        budget += f", at most {epochs} epoch{'s' if epochs != 1 else ''}"
    lines = ["# Model comparison study", "",
             f"Data: `{s['data']}`, {info['n_images']} images; {info['n_groups']} groups of "
             f"exact or near duplicates ({info['images_in_groups']} images) are kept whole.",
             "",
             f"{k} folds, grouped and stratified by class (scikit-learn StratifiedGroupKFold "
             f"over the duplicate groups, seed {s['seed']}): each fold is the test set once; "
             f"the other folds train, minus {s['val']:.0%} of them (grouped, stratified) that "
             "pick each model's best epoch. Budget: " + budget + "; overrides: "
             + (", ".join(f"`{o}`" for o in s["overrides"]) or "none") + ". Every model is "
             "scored by the same evaluator (mtbrain.eval.evaluate.score_predictions).", "",
             "## Members", ""]
    rows = [[m["name"], m["kind"], m["task"], f"`{m['config']}`",
             _f(results["params_m"].get(m["name"]), 2),
             _f(_mean([v for v in results["train_s"][m["name"]] if v is not None]), 1)]
            for m in results["members"]]
    lines += _table(["model", "kind", "task", "config", "params (M)", "mean train s"], rows)
    lines += [f"## Results: mean [95 % bootstrap CI] over {k} folds", "",
              results_table(results),
              "Box metrics are n/a for classification-only members (no box head). The CI is "
              f"a percentile bootstrap of the mean over the {k} fold scores (scipy.stats."
              "bootstrap): with few folds it is rough.", "", "## Tests", ""]
    for metric in results["metrics"]:
        lines += _test_lines(metric, results["tests"][metric], plot=plots.get(metric))
    if results.get("cross"):
        c = results["cross_data"]
        lines += ["## Cross-dataset", "",
                  f"Every trained model also scored on `{c['data']}`: {c['n_kept']} of its "
                  f"{c['n_images']} images, after removing {c['n_removed']} that duplicate "
                  "(exactly or nearly) an image of the study's data set. Drop = in-domain "
                  "minus other (mean over folds, 95 % bootstrap CI); n/a where the other set "
                  "has no such metric (no boxes).", ""]
        rows = []
        for name in names:
            for metric in results["metrics"]:
                e = results["cross"][metric][name]
                if e["in_domain"] is not None or e["other"]["mean"] is not None:
                    rows.append([name, metric, _f(e["in_domain"]), _mean_ci(e["other"]),
                                 _mean_ci(e["drop"])])
        lines += _table(["model", "metric", "in-domain", "other set", "drop"], rows)
    alpha = results["alpha"]
    from mtbrain.eval.stats import min_folds_for

    lines += ["## How to read the tests", "",
              "- Friedman's test asks whether the models' ranks differ across folds "
              "(chi-square approximation, rough with few folds); Kendall's W (0 to 1) says how "
              "much the folds agree on the ranking.",
              "- Pairs are compared with the Wilcoxon signed-rank test on their own fold "
              "scores, Holm-adjusted over all pairs; not with Nemenyi's mean-rank test, whose "
              "verdict on a pair depends on the other models in the study (Benavoli et al., "
              "JMLR 2016). The bars of a critical-difference diagram join models that no "
              "such test separates.",
              f"- With {k} folds the exact two-sided Wilcoxon p-value is at least "
              f"{2 / 2**k:.3g}: a pair can reach p <= {alpha} only with "
              f"{min_folds_for(alpha)} folds or more (before the Holm adjustment).",
              "- Folds share training images, so fold scores are not independent: the "
              "p-values are optimistic (Nadeau & Bengio, 2003).", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def write_report(out: Path, results: dict[str, Any]) -> dict[str, str]:
    """Write the diagrams, ``results.json`` and ``report.md`` (each atomically)."""
    from mtbrain.eval.plots import plot_critical_difference

    plots = {}
    for metric in results["metrics"]:
        test = results["tests"][metric]
        if "skipped" in test:
            continue
        names = list(test["models"])
        ranks = [test["models"][n]["average_rank"] for n in names]
        fr = test["friedman"]
        title = (f"{metric}: Friedman p = {_p(fr['pvalue'])}, Kendall's W = "
                 f"{test['kendalls_w']:.2f} ({test['n_folds']} folds)" if fr else
                 f"{metric}: Wilcoxon p = {_p(test['pairwise'][0]['pvalue'])} "
                 f"({test['n_folds']} folds)")
        name = f"cd_{metric}.png"
        plot_critical_difference(names, ranks, test["groups"], out / name, title=title,
                                 note="Bars join models that no Holm-adjusted Wilcoxon "
                                 f"signed-rank test separates (alpha {test['alpha']}).")
        plots[metric] = name
    results["plots"] = plots
    write_json(out / "results.json", results)
    write_text(out / "report.md", render_report(results, plots=plots))
    return plots
