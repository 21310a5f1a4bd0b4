"""Scan state (mergeable, checkpointable) and :class:`ScanResult`, the user-facing object (numpy only).

On disk a scan is a folder::

    DIR/scan.json      human/JS-readable summary (schema "convscope.scan", version 1; see docs)
    DIR/state.npz      the complete mergeable state (np.load(allow_pickle=False) reads it)
    DIR/cards/...      one "channel card" PNG per channel (when rendered)
    DIR/manifest.json  the files written
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.stats import ChannelStats, DuplicateImagesError, Example, LayerStats, check_disjoint
from ..errors import ConvscopeError

__all__ = ["ScanState", "ScanResult", "ChannelView", "SCHEMA", "SCHEMA_VERSION", "ScanError"]

SCHEMA = "convscope.scan"
SCHEMA_VERSION = 1
STATE_NAME = "state.npz"
JSON_NAME = "scan.json"


class ScanError(ConvscopeError):
    """A scan folder or state that cannot be read, resumed or merged."""


MODEL_KEYS = ("normalize", "slices")
"""Config entries two scans must share to be merged (how inputs were prepared), besides the weights.
(``--size`` is not compared as written: ``64`` and ``64x64`` are one size; the input shapes are.)"""


def weights_differ(config: dict[str, Any], weights: str | None, framework: str | None) -> bool:
    """True when a scan config's weights digest and ``weights`` are both known, were taken in the same
    framework (the same weights read by another framework list other arrays: a .pt2 export, an ONNX
    file with folded BatchNorm) and differ. Scans made before digests were recorded compare as equal."""
    recorded = config.get("weights")
    return bool(recorded and weights and config.get("framework") == framework and recorded != weights)


def check_same_model(mine: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Raise :class:`ScanError` when two scan configs were made with other weights
    (:func:`weights_differ`) or disagree on :data:`MODEL_KEYS` (a key missing on either side is not
    compared)."""
    if weights_differ(mine, theirs.get("weights"), theirs.get("framework")):
        raise ScanError(
            f"cannot merge scans of different models (weights differ: {mine.get('model')} vs "
            f"{theirs.get('model')}); scan every shard with the same model file"
        )
    for key in MODEL_KEYS:
        if key in mine and key in theirs and mine[key] != theirs[key]:
            raise ScanError(
                f"cannot merge scans made with different --{key} ({mine[key]!r} vs {theirs[key]!r}); scan every "
                f"shard with the same --{key}"
            )


@dataclass
class ClassStats:
    """Per predicted class of a segmentation model: activation sums inside the class's predicted region.

    Attributes:
        sums: ``(K, C)`` float64 sum of each channel's activation over the pixels predicted as class k
            (the prediction nearest-resized to the layer's grid).
        pixels: ``(K,)`` int64 number of such layer-grid positions.
    """

    sums: np.ndarray
    pixels: np.ndarray

    def merge(self, other: ClassStats) -> None:
        if other.sums.shape != self.sums.shape:
            raise ScanError("cannot merge per-class statistics of different class counts")
        self.sums = self.sums + other.sums
        self.pixels = self.pixels + other.pixels

    def means(self) -> np.ndarray:
        """``(K, C)`` mean activation per class region (NaN for a class never predicted)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums / np.where(self.pixels > 0, self.pixels, np.nan)[:, None]


@dataclass
class ScanState:
    """Everything a scan accumulated; merging two states of disjoint images is exact.

    Attributes:
        layers: layer name -> :class:`LayerStats` (in model order).
        ids: image ids scanned (sorted on save).
        paths: image id -> file path (for pass 2).
        skipped: ``[(file, reason)]`` of files left out.
        done: chunk indices already folded in (resume).
        classes: layer name -> :class:`ClassStats` (segmentation models only).
        config: how the scan was run (model, layers, k, score, batch size, size, normalize...).
        input_shape: ``(C, *spatial)`` of the scanned inputs.
    """

    layers: dict[str, LayerStats] = field(default_factory=dict)
    ids: set[str] = field(default_factory=set)
    paths: dict[str, str] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    classes: dict[str, ClassStats] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None

    def merge(self, other: ScanState, *, check: bool = True) -> ScanState:
        """Fold ``other`` into this state (in place); returns self.

        Raises:
            DuplicateImagesError: an image is in both (e.g. the same shard merged twice), or a file
                whose content changed between the scans.
        """
        if check:
            check_disjoint(self.ids, other.ids)
            mine = {i.rsplit("@", 1)[0]: i for i in self.ids}  # rel (with its slice tag) -> id
            changed = sorted(r for r in (i.rsplit("@", 1)[0] for i in other.ids) if r in mine)
            if changed:
                raise DuplicateImagesError(
                    f"{len(changed)} file(s) are in both scans with different contents ({', '.join(changed[:3])}): "
                    "they changed between the scans; rescan them in one place"
                )
        if check:
            check_same_model(self.config, other.config)
        if self.layers and other.layers and list(self.layers) != list(other.layers):
            raise ScanError(
                f"cannot merge scans of different layers ({', '.join(list(self.layers)[:3])} ... vs "
                f"{', '.join(list(other.layers)[:3])} ...); scan the same --layer patterns"
            )
        if self.input_shape is not None and other.input_shape is not None and self.input_shape != other.input_shape:
            raise ScanError(f"cannot merge scans of {self.input_shape} inputs with {other.input_shape} inputs")
        for name, stats in other.layers.items():
            if name in self.layers:
                self.layers[name].merge(stats)
            else:
                self.layers[name] = stats.copy()
        for name, cls in other.classes.items():
            if name in self.classes:
                self.classes[name].merge(cls)
            else:
                self.classes[name] = ClassStats(cls.sums.copy(), cls.pixels.copy())
        self.ids |= other.ids
        self.paths.update(other.paths)
        known = {f for f, _ in self.skipped}
        self.skipped.extend((f, r) for f, r in other.skipped if f not in known)
        self.done |= other.done
        if self.input_shape is None:
            self.input_shape = other.input_shape
        if not self.config:
            self.config = dict(other.config)
        return self

    # -- bytes --------------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        names = list(self.layers)
        for i, name in enumerate(names):
            for key, value in self.layers[name].to_arrays().items():
                arrays[f"layer{i}/{key}"] = value
            if name in self.classes:
                arrays[f"layer{i}/class_sums"] = self.classes[name].sums
                arrays[f"layer{i}/class_pixels"] = self.classes[name].pixels
        ids = sorted(self.ids)
        arrays["ids"] = np.asarray(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
        arrays["paths"] = np.asarray([self.paths.get(i, "") for i in ids], dtype=str) if ids else np.zeros(0, dtype="<U1")
        arrays["skipped"] = np.asarray(self.skipped, dtype=str).reshape(-1, 2) if self.skipped else np.zeros((0, 2), dtype="<U1")
        arrays["done"] = np.asarray(sorted(self.done), dtype=np.int64)
        meta = {
            "schema": SCHEMA + ".state",
            "version": SCHEMA_VERSION,
            "layers": names,
            "config": self.config,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
        }
        arrays["meta"] = np.asarray(json.dumps(meta))
        return arrays

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        arrays: dict[str, Any] = self.to_arrays()  # Any: numpy's stubs match ``**`` against ``allow_pickle: bool``
        np.savez(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_arrays(cls, arrays: Any) -> ScanState:
        try:
            meta = json.loads(_scalar(arrays["meta"]))
        except (KeyError, ValueError) as exc:
            raise ScanError(f"not a convscope scan state (no valid {exc} entry); give the -o folder of a finished "
                            "convscope scan") from None
        if meta.get("schema") != SCHEMA + ".state" or int(meta.get("version", 0)) > SCHEMA_VERSION:
            raise ScanError(
                f"scan state has schema {meta.get('schema')} version {meta.get('version')}; this convscope reads "
                f"version {SCHEMA_VERSION} or older: upgrade convscope"
            )
        state = cls(config=dict(meta.get("config") or {}))
        shape = meta.get("input_shape")
        state.input_shape = tuple(shape) if shape is not None else None
        keys = set(arrays.keys()) if hasattr(arrays, "keys") else set(arrays)
        for i, name in enumerate(meta["layers"]):
            prefix = f"layer{i}/"
            sub = {k[len(prefix):]: np.asarray(arrays[k]) for k in keys if k.startswith(prefix)}
            state.layers[name] = LayerStats.from_arrays(sub)
            if "class_sums" in sub:
                state.classes[name] = ClassStats(sub["class_sums"], sub["class_pixels"])
        ids = [str(i) for i in np.asarray(arrays["ids"]).tolist()]
        paths = [str(p) for p in np.asarray(arrays["paths"]).tolist()]
        state.ids = set(ids)
        state.paths = {i: p for i, p in zip(ids, paths) if p}
        state.skipped = [(str(a), str(b)) for a, b in np.asarray(arrays["skipped"]).reshape(-1, 2).tolist()]
        state.done = {int(d) for d in np.asarray(arrays["done"]).tolist()}
        return state

    @classmethod
    def from_bytes(cls, data: bytes) -> ScanState:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return cls.from_arrays({k: npz[k] for k in npz.files})

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the state atomically (temporary file + rename) to ``path``."""
        from ..io.files import atomic_write_bytes

        return atomic_write_bytes(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScanState:
        file = Path(path)
        if not file.is_file():
            raise ScanError(f"no scan state at {file}")
        try:
            with np.load(file, allow_pickle=False) as npz:
                return cls.from_arrays({k: npz[k] for k in npz.files})
        except (OSError, ValueError, KeyError, EOFError) as exc:
            if isinstance(exc, ConvscopeError):
                raise
            raise ScanError(f"{file} is not a readable scan state ({_reason(exc)}); rerun the scan") from None

    def equal(self, other: ScanState, *, rtol: float = 0.0) -> bool:
        """Same layers, ids, skipped files and statistics (exact, or mean/variance within ``rtol``)."""
        if list(self.layers) != list(other.layers) or self.ids != other.ids:
            return False
        if sorted(self.skipped) != sorted(other.skipped):
            return False
        for name in self.layers:
            if not self.layers[name].equal(other.layers[name], rtol=rtol):
                return False
        for name in self.classes:
            o = other.classes.get(name)
            if o is None or not np.array_equal(o.pixels, self.classes[name].pixels):
                return False
            if not np.allclose(o.sums, self.classes[name].sums, rtol=max(rtol, 1e-12)):
                return False
        return True


@dataclass(frozen=True)
class ChannelView:
    """One channel of a scanned layer.

    Attributes:
        layer, channel: which.
        examples: top-k :class:`Example` (best first) with ``crop_box`` when pass 2 ran.
        bottom: bottom-k examples (lowest score first).
        stats: :class:`ChannelStats`.
        class_means: predicted class -> mean activation inside its predicted region (segmentation).
        card: path of the channel card PNG, when rendered.
    """

    layer: str
    channel: int
    examples: list[Example]
    bottom: list[Example]
    stats: ChannelStats
    class_means: dict[str, float] | None = None
    card: Path | None = None

    def _repr_png_(self) -> bytes | None:  # Jupyter shows the channel card, when one was drawn
        return self.card.read_bytes() if self.card is not None and self.card.is_file() else None


class ScanResult:
    """Per-channel statistics and dataset examples of a scan (see :meth:`convscope.Scope.scan`).

    ``result.channel("enc2.conv", 5).examples`` -> ``[Example(image_id, score, position, crop_box), ...]``;
    ``.stats`` -> count, mean, std, min, max, zero and positive fraction, histogram.
    """

    def __init__(
        self,
        state: ScanState,
        *,
        crops: dict[str, np.ndarray] | None = None,
        path: Path | None = None,
        cards: dict[str, list[str]] | None = None,
        class_names: list[str] | None = None,
    ) -> None:
        self.state = state
        self.crops = dict(crops or {})  # layer -> (C, k, 2 * dims) int64 half-open boxes, -1 unknown
        self.path = path
        self.cards = dict(cards or {})
        self.class_names = class_names

    def __repr__(self) -> str:
        return f"ScanResult({len(self.state.ids)} images, {len(self.layers)} layers, k={self.state.config.get('top_k')})"

    def _repr_html_(self) -> str:  # Jupyter: a table of the scanned layers, every model-derived string escaped
        import html

        config = self.state.config
        rows = []
        for name, stats in self.state.layers.items():
            dead, always = stats.dead_channels(), stats.always_on_channels()
            cards = "yes" if self.cards.get(name) else "-"
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                name, stats.channels, "x".join(map(str, stats.spatial)), len(dead), len(always), cards)) + "</tr>")
        skipped = len(self.state.skipped)
        caption = (f"scan of {html.escape(str(config.get('model')))}: {self.images} image{'' if self.images == 1 else 's'}"
                   f" ({skipped} skipped), {len(self.state.layers)} layer{'' if len(self.state.layers) == 1 else 's'},"
                   f" top-{html.escape(str(config.get('top_k')))} by spatial {html.escape(str(config.get('score')))}")
        head = "".join(f"<th>{h}</th>" for h in ("layer", "channels", "grid", "dead", "always on", "cards"))
        return f"<table><caption>{caption}</caption><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    @property
    def layers(self) -> list[str]:
        return list(self.state.layers)

    @property
    def images(self) -> int:
        return len(self.state.ids)

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """``[(file, reason)]`` of files left out of the scan."""
        return list(self.state.skipped)

    def layer(self, name: str) -> LayerStats:
        if name not in self.state.layers:
            from ..errors import LayerNotFoundError, close_matches

            near = close_matches(name, self.state.layers)
            raise LayerNotFoundError(
                f"the scan has no layer {name!r}" + (f"; did you mean: {', '.join(near)}?" if near else "")
                + f" (scanned: {', '.join(list(self.state.layers)[:8])})"
            )
        return self.state.layers[name]

    def channel(self, layer: str, channel: int) -> ChannelView:
        stats = self.layer(layer)
        info = stats.channel(channel)  # validates the index
        examples = stats.examples(channel)
        boxes = self.crops.get(layer)
        if boxes is not None:
            examples = [
                Example(e.image_id, e.score, e.position, tuple(int(v) for v in boxes[channel, j]) if boxes[channel, j][0] >= 0 else None)
                for j, e in enumerate(examples)
            ]
        class_means = None
        if layer in self.state.classes:
            means = self.state.classes[layer].means()[:, channel]
            names = self._class_names(means.shape[0])
            class_means = {names[k]: float(v) for k, v in enumerate(means)}
        card = None
        if layer in self.cards and self.path is not None and self.cards[layer][channel]:
            card = self.path / self.cards[layer][channel]
        return ChannelView(layer, int(channel), examples, stats.examples(channel, bottom=True), info, class_means, card)

    def _class_names(self, count: int) -> list[str]:
        if self.class_names and len(self.class_names) == count:
            return list(self.class_names)
        return [f"class {k}" for k in range(count)]

    def dead_channels(self, layer: str) -> list[int]:
        return self.layer(layer).dead_channels()

    def always_on_channels(self, layer: str) -> list[int]:
        return self.layer(layer).always_on_channels()

    def merge(self, other: ScanResult | ScanState) -> ScanResult:
        """A new result holding both scans (exact; refuses overlapping images). Crop boxes and cards are
        dropped (the winners change): redo pass 2 with ``convscope.scan.crops.compute_crops(scope, merged)``
        and ``convscope.scan.cards.write_scan(scope, merged, DIR)``."""
        merged = ScanState()
        merged.merge(self.state, check=False)
        merged.merge(other.state if isinstance(other, ScanResult) else other)
        return ScanResult(merged, class_names=self.class_names)

    def check_model(self, scope: Any) -> None:
        """Raise :class:`ScanError` unless this scan was made with ``scope``'s model.

        Every scanned layer must be one of the model's, and the weights digests must agree (when
        the scan recorded one and the adapter, of the same framework, can compute it): a report or
        viewer never shows another model's channels as this one's.
        """
        where = self.path if self.path is not None else "the scan"
        scanned_with = self.state.config.get("model")
        redo = f"scan this model first: convscope scan {scope.name} DATA -o DIR"
        from ..adapters._capture import call_base

        known = {info.name for info in scope.adapter.layers()}
        # a module called twice is scanned as name and name#1 (the #k rule): its later calls count as it
        missing = [name for name in self.layers if name not in known and call_base(name) not in known]
        if missing:
            shown = ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise ScanError(f"{where} was made with {scanned_with}: {len(missing)} of its layers ({shown}) are not in "
                            f"{scope.name}; {redo}")
        config = self.state.config
        # the model's digest is computed only when there is a comparable one to check it against
        if config.get("weights") and config.get("framework") == scope.adapter.framework \
                and weights_differ(config, scope.weights_digest(), scope.adapter.framework):
            raise ScanError(f"{where} is a scan of other weights than {scope.name}'s (it was made with "
                            f"{scanned_with}); {redo}")

    # -- files --------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """The ``scan.json`` document (schema ``convscope.scan`` version 1)."""
        state = self.state
        layers = []
        for name, stats in state.layers.items():
            entry: dict[str, Any] = {
                "name": name,
                "channels": stats.channels,
                "spatial": list(stats.spatial),
                "dead": stats.dead_channels(),
                "always_on": stats.always_on_channels(),
                "histogram_edges": [float(stats.edges[0]), float(stats.edges[-1]), int(stats.edges.shape[0] - 1)],
                "stats": [stats.channel(c).to_dict() for c in range(stats.channels)],
                "examples": [[e.to_dict() for e in self.channel(name, c).examples] for c in range(stats.channels)],
                "bottom": [[e.to_dict() for e in stats.examples(c, bottom=True)] for c in range(stats.channels)],
                "cards": self.cards.get(name),
            }
            if name in state.classes:
                means = state.classes[name].means()
                entry["class_means"] = {
                    "classes": self._class_names(means.shape[0]),
                    "pixels": state.classes[name].pixels.tolist(),
                    "means": [[None if not np.isfinite(v) else float(v) for v in row] for row in means],
                }
            layers.append(entry)
        return _finite(
            {
                "schema": SCHEMA,
                "version": SCHEMA_VERSION,
                "model": state.config.get("model"),
                "config": state.config,
                "input_shape": list(state.input_shape) if state.input_shape is not None else None,
                "images": len(state.ids),
                "skipped": [{"file": f, "reason": r} for f, r in state.skipped],
                "layers": layers,
                "state": STATE_NAME,
            }
        )

    def save(self, out: str | os.PathLike[str], *, output: Any = None) -> Path:
        """Write ``scan.json`` and ``state.npz`` (and crop boxes) into ``out``; returns ``out/scan.json``."""
        from ..io.output import OutputDir

        own = output is None
        folder = OutputDir(out, info={"command": "scan"}) if own else output
        try:
            arrays = self.state.to_arrays()
            for i, name in enumerate(self.state.layers):
                if name in self.crops:
                    arrays[f"layer{i}/crops"] = np.asarray(self.crops[name], dtype=np.int64)
            if self.cards:
                arrays["cards"] = np.asarray(json.dumps(self.cards))
            if self.class_names:
                arrays["class_names"] = np.asarray(self.class_names, dtype=str)
            folder.add_arrays(STATE_NAME, arrays, kind="scan-state")
            folder.add_json(JSON_NAME, self.to_json(), kind="scan")
        finally:
            if own:
                folder.close()
        self.path = Path(out)
        return Path(out) / JSON_NAME

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScanResult:
        """Read a scan folder (or its ``state.npz``)."""
        folder = Path(path)
        file = folder / STATE_NAME if folder.is_dir() else folder
        if not file.is_file():
            raise ScanError(f"{folder} is not a scan folder (no {STATE_NAME}); run convscope scan ... -o {folder}")
        try:
            with np.load(file, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, EOFError) as exc:
            raise ScanError(f"{file} is not a readable scan state ({_reason(exc)}); give the -o folder of a "
                            f"finished convscope scan") from None
        try:
            state = ScanState.from_arrays(arrays)
        except ScanError as exc:
            raise ScanError(f"{file}: {exc}") from None
        crops = {name: arrays[f"layer{i}/crops"] for i, name in enumerate(state.layers) if f"layer{i}/crops" in arrays}
        cards = json.loads(_scalar(arrays["cards"])) if "cards" in arrays else None
        names = [str(n) for n in arrays["class_names"].tolist()] if "class_names" in arrays else None
        return cls(state, crops=crops, path=file.parent, cards=cards, class_names=names)


def _reason(exc: BaseException) -> str:
    """Why numpy could not read a state file, in words that do not suggest unsafe loading."""
    text = str(exc)
    if "pickle" in text:  # np.load's "...load it unsafely using allow_pickle=..." advice is not ours
        return "not a .npz of plain arrays"
    if isinstance(exc, EOFError) or not text:
        return "empty or truncated"
    return text.splitlines()[0][:200]


def _scalar(value: Any) -> str:
    """A string stored as a 0-d (or, after ``ascontiguousarray``, 1-element) array."""
    return str(np.asarray(value).reshape(-1)[0])


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj

