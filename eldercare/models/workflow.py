"""Train, evaluate, promote and load: what ``eldercare models`` runs, for any
:class:`~eldercare.models.base.Model`. I/O lives here (artefact folder, report files); the
models themselves only turn data into estimators and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eldercare.models import catalogue
from eldercare.models.artefacts import ArtefactStore, Version
from eldercare.models.base import Context, Model, Report


def store_for(ctx: Context) -> ArtefactStore:
    return ArtefactStore(ctx.settings.models_dir, clock=lambda: ctx.now)


def train(model: Model, ctx: Context, *, promote: bool = False) -> Version:
    """Fit ``model`` on all its data and save a new version (active only if ``promote``)."""
    data = model.dataset(ctx)
    estimator = model.fit(data, ctx)
    store = store_for(ctx)
    version = store.save(
        model.name,
        estimator,
        trusted_types=model.trusted_types,
        info={
            "description": model.description,
            "features": list(data.features),
            "rows": data.rows,
            "synthetic": data.synthetic,
            "data": data.source,
            "seed": ctx.seed,
            "trained_at": ctx.now.isoformat(),
        },
    )
    if promote:
        version = store.promote(model.name, version.version)
    return version


def evaluate(model: Model, ctx: Context, out_dir: Path | None, command: str = "") -> Report:
    """The model's own honest evaluation; written as ``<out_dir>/<name>.md`` and
    ``.json`` when ``out_dir`` is given (both, or neither: written aside, then renamed)."""
    report = model.evaluate(model.dataset(ctx), ctx)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / f"{model.name}.md", out_dir / f"{model.name}.json"
        md.with_suffix(".md.tmp").write_text(report.to_markdown(command), "utf-8")
        js.with_suffix(".json.tmp").write_bytes(report.to_json(command))
        md.with_suffix(".md.tmp").replace(md)
        js.with_suffix(".json.tmp").replace(js)
    return report


def promote(name: str, version: int, ctx: Context, *, actor: str = "cli") -> Version:
    catalogue.get(name)  # an unknown model is refused before the store is touched
    return store_for(ctx).promote(name, version, actor=actor)


def load(model: Model, ctx: Context, version: int | None = None) -> tuple[Any, Version]:
    """The active (or the given) version's estimator, verified."""
    return store_for(ctx).load(model.name, trusted_types=model.trusted_types, version=version)
