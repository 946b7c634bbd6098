"""Model artefacts on disk: skops files, a manifest per model, promotion.

Layout under ``Settings.models_dir``::

    <model>/manifest.json        every version (sha256, versions of the libraries, data,
                                 metrics) and which one is active, plus a promotion log
    <model>/<version>/model.skops

Never pickle: a pickle runs code when loaded. skops refuses types it does not know unless
they are named as trusted, and this module names only the model's own allow-list (kept in
code, not in the manifest: the manifest sits next to the file it vouches for). The bytes
are read once, their sha256 checked against the manifest, and only those bytes are parsed.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import orjson

from eldercare.errors import ArtefactRefused, ModelError, UnknownModel

MANIFEST: Final = "manifest.json"
ARTEFACT: Final = "model.skops"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Version:
    """One saved version of a model, as its manifest records it."""

    model: str
    version: int
    sha256: str
    created_at: str
    active: bool
    info: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "sha256": self.sha256,
            "created_at": self.created_at,
            "active": self.active,
            **self.info,
        }


def check_name(name: str) -> str:
    """A model name is also a folder name: lower-case words only."""
    if not _NAME.fullmatch(name):
        raise UnknownModel(f"not a model name: {name!r}")
    return name


def _untrusted(data: bytes) -> list[str]:
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises many kinds for a damaged file
        raise ArtefactRefused(f"not a readable skops artefact: {type(exc).__name__}") from exc


def _refuse_unknown(label: str, found: Iterable[str], trusted: frozenset[str]) -> None:
    unknown = sorted(set(found) - trusted)
    if unknown:
        raise ArtefactRefused(
            f"{label} holds types outside the model's allow-list: {', '.join(unknown)} "
            "(add them to the model's trusted_types only after reading what they do)"
        )


class ArtefactStore:
    """Save, list, promote and load model versions under ``root``."""

    def __init__(self, root: Path, clock: Callable[[], datetime] = _utcnow) -> None:
        self.root = Path(root)
        self._clock = clock

    # ------------------------------------------------------------ manifest

    def _dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def manifest(self, name: str) -> dict[str, Any]:
        path = self._dir(name) / MANIFEST
        if not path.exists():
            return {"model": name, "active": None, "versions": {}, "history": []}
        try:
            data: dict[str, Any] = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise ModelError(f"{path}: manifest is not valid JSON") from exc
        return data

    def _write_manifest(self, name: str, data: dict[str, Any]) -> None:
        # Written aside and renamed: a reader sees the old manifest or the new, never half.
        path = self._dir(name) / MANIFEST
        tmp = path.with_suffix(".json.tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
        os.replace(tmp, path)

    def versions(self, name: str) -> list[Version]:
        m = self.manifest(name)
        return [self._version(name, m, v) for v in sorted(m["versions"], key=int)]

    def version(self, name: str, version: int | None = None) -> Version:
        """``version``, or the active one when None."""
        m = self.manifest(name)
        if version is None:
            if m["active"] is None:
                raise UnknownModel(f"model {name!r} has no active version (promote one)")
            version = int(m["active"])
        if str(version) not in m["versions"]:
            raise UnknownModel(f"model {name!r} has no version {version}")
        return self._version(name, m, str(version))

    @staticmethod
    def _version(name: str, m: Mapping[str, Any], key: str) -> Version:
        entry = dict(m["versions"][key])
        return Version(
            model=name,
            version=int(key),
            sha256=entry.pop("sha256"),
            created_at=entry.pop("created_at"),
            active=m["active"] is not None and int(m["active"]) == int(key),
            info=entry,
        )

    # ------------------------------------------------------------ save / promote / load

    def save(
        self,
        name: str,
        estimator: Any,
        *,
        trusted_types: frozenset[str],
        info: Mapping[str, Any],
    ) -> Version:
        """A new version (not active until promoted). Refused, before anything is
        written, if the estimator holds a type its model does not allow: a file the
        server would refuse to load must not be produced in the first place."""
        import numpy
        import sklearn
        import skops
        import skops.io

        data = skops.io.dumps(estimator)
        _refuse_unknown(f"a new {name} artefact", _untrusted(data), trusted_types)
        folder = self._dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        m = self.manifest(name)
        number = max((int(v) for v in m["versions"]), default=0) + 1
        while True:
            vdir = folder / str(number)
            try:
                vdir.mkdir()  # reserves the number, even against a concurrent trainer
                break
            except FileExistsError:
                number += 1
        (vdir / ARTEFACT).write_bytes(data)
        now = self._clock().isoformat()
        m["versions"][str(number)] = {
            **info,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file": f"{number}/{ARTEFACT}",
            "bytes": len(data),
            "created_at": now,
            "trusted_types": sorted(trusted_types),
            "libraries": {
                "python": platform.python_version(),
                "numpy": numpy.__version__,
                "scikit-learn": sklearn.__version__,
                "skops": skops.__version__,
            },
        }
        m["history"].append({"at": now, "action": "saved", "version": number})
        self._write_manifest(name, m)
        return self.version(name, number)

    def promote(self, name: str, version: int, *, actor: str = "cli") -> Version:
        """Make ``version`` the one :meth:`load` returns by default (rollback = promote
        the previous one). Its artefact is verified first, so a damaged or tampered file
        is never made active."""
        m = self.manifest(name)
        if str(version) not in m["versions"]:
            raise UnknownModel(f"model {name!r} has no version {version}")
        trusted = frozenset(m["versions"][str(version)].get("trusted_types", ()))
        self._read_verified(name, self._version(name, m, str(version)), trusted)
        previous = m["active"]
        m["active"] = version
        m["history"].append(
            {
                "at": self._clock().isoformat(),
                "action": "promoted",
                "version": version,
                "previous": previous,
                "actor": actor,
            }
        )
        self._write_manifest(name, m)
        return self.version(name, version)

    def _read_verified(self, name: str, v: Version, trusted_types: frozenset[str]) -> bytes:
        path = self._dir(name) / str(v.version) / ARTEFACT
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtefactRefused(f"{name} v{v.version}: cannot read {path}: {exc}") from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != v.sha256:
            raise ArtefactRefused(
                f"{name} v{v.version}: sha256 {digest[:12]}… differs from the manifest's "
                f"{v.sha256[:12]}…; the file changed after it was saved"
            )
        _refuse_unknown(f"{name} v{v.version}", _untrusted(data), trusted_types)
        return data

    def load(
        self, name: str, *, trusted_types: frozenset[str], version: int | None = None
    ) -> tuple[Any, Version]:
        """The estimator of ``version`` (default: the active one), after its sha256 and
        stored types are checked against the manifest and ``trusted_types``."""
        import skops.io

        v = self.version(name, version)
        data = self._read_verified(name, v, trusted_types)
        try:
            estimator = skops.io.loads(data, trusted=sorted(trusted_types))
        except Exception as exc:  # skops' own errors, or a library version that cannot read it
            raise ArtefactRefused(f"{name} v{v.version}: skops refused to load it: {exc}") from exc
        return estimator, v
