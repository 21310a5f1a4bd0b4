"""Medical volumes in one canonical orientation: the :class:`Volume` record (numpy only).

Convention (the same as nibabel's and MONAI's ``Orientation(axcodes="RAS")``): ``data`` is
``(C, X, Y, Z)`` float32 where increasing ``X`` goes towards the patient's **R**\\ ight,
increasing ``Y`` towards **A**\\ nterior and increasing ``Z`` towards **S**\\ uperior (RAS+).
``affine`` maps a voxel index ``(x, y, z, 1)`` of ``data`` to RAS+ world millimetres.

A file stored in any other orientation is brought to the closest RAS+ orientation by permuting
and flipping voxel axes only: no value is interpolated. An oblique acquisition stays oblique (its
affine keeps off-diagonal terms); only the axis order and directions change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

__all__ = ["Volume", "axcodes", "closest_canonical", "canonical_transform", "LPS_TO_RAS", "as_triple"]

_T = TypeVar("_T")


def as_triple(values: Iterable[_T]) -> tuple[_T, _T, _T]:
    """The three values of a per-axis ``(X, Y, Z)`` iterable as a 3-tuple (ValueError for any other count)."""
    x, y, z = values
    return x, y, z

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""DICOM patient coordinates are LPS+ (x to the Left, y Posterior); this maps them to RAS+."""

_POSITIVE = ("R", "A", "S")
_NEGATIVE = ("L", "P", "I")


def _axis_assignment(affine: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """For each voxel axis: the world axis it runs closest to and the direction (+1/-1).

    Greedy on the direction cosines (largest absolute cosine first), so every world axis gets
    exactly one voxel axis; the same choice as ``nibabel.io_orientation`` for non-degenerate affines.
    """
    rot = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(rot, axis=0)
    if np.any(norms == 0) or not np.all(np.isfinite(rot)):
        raise ValueError("the volume's affine has a zero or non-finite voxel axis; the file's geometry is broken")
    cos = rot / norms
    world_of = [-1, -1, -1]
    sign_of = [1, 1, 1]
    free_world, free_voxel = {0, 1, 2}, {0, 1, 2}
    order = np.dstack(np.unravel_index(np.argsort(-np.abs(cos), axis=None), cos.shape))[0]
    for w, v in order:
        if w in free_world and v in free_voxel:
            world_of[v] = int(w)
            sign_of[v] = 1 if cos[w, v] >= 0 else -1
            free_world.discard(w)
            free_voxel.discard(v)
    return tuple(world_of), tuple(sign_of)


def axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    """Orientation codes of the voxel axes (``("L", "A", "S")`` ...), like ``nibabel.aff2axcodes``."""
    world_of, sign_of = _axis_assignment(affine)
    return as_triple((_POSITIVE if s > 0 else _NEGATIVE)[w] for w, s in zip(world_of, sign_of))


def canonical_transform(affine: np.ndarray, shape: tuple[int, int, int]) -> tuple[tuple[int, int, int], tuple[bool, bool, bool], np.ndarray]:
    """How to bring a volume of spatial ``shape`` with ``affine`` to the closest RAS+ orientation.

    Returns:
        ``(perm, flip, new_affine)``: new spatial axis ``w`` is old axis ``perm[w]``, reversed when
        ``flip[w]``; ``new_affine`` maps the new voxel indices to the same world points.
    """
    world_of, sign_of = _axis_assignment(affine)
    perm = tuple(world_of.index(w) for w in range(3))
    flip = tuple(sign_of[perm[w]] < 0 for w in range(3))
    # new index n along world axis w -> old index along voxel axis perm[w]: n, or size-1-n if flipped
    to_old = np.zeros((4, 4), dtype=np.float64)
    to_old[3, 3] = 1.0
    for w in range(3):
        v = perm[w]
        if flip[w]:
            to_old[v, w] = -1.0
            to_old[v, 3] = shape[v] - 1
        else:
            to_old[v, w] = 1.0
    return perm, flip, np.asarray(affine, dtype=np.float64) @ to_old  # type: ignore[return-value]


def closest_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C, i, j, k)`` data with ``affine`` -> the same voxels as ``(C, X, Y, Z)`` RAS+ and its affine.

    Axis permutation and flips only (a view where possible; the caller copies when it needs to).
    """
    perm, flip, new_affine = canonical_transform(affine, tuple(data.shape[1:4]))
    out = np.transpose(data, (0, *(p + 1 for p in perm)))
    index = tuple(slice(None, None, -1) if f else slice(None) for f in flip)
    key = (slice(None), *index)
    return out[key], new_affine


@dataclass(frozen=True, eq=False)
class Volume:
    """A scan in canonical RAS+ orientation.

    Attributes:
        data: ``(C, X, Y, Z)`` float32, axes towards patient Right, Anterior, Superior (see the
            module docstring). ``C`` is 1 for one scan, the modality count for multi-modal inputs.
        affine: ``(4, 4)`` float64, voxel index of ``data`` -> RAS+ world mm.
        spacing: voxel size in mm along ``X``, ``Y``, ``Z`` (the affine's column lengths; for a
            DICOM series the slice step comes from the slice positions, never SliceThickness).
        orientation: the axis codes of the file as stored (``("L", "P", "S")`` for a usual DICOM
            axial series), before the volume was brought to RAS+.
        source: a short description for manifests (file or folder name, series UID ...).
        units: the meaning of the values (``"HU"`` for CT after RescaleSlope/Intercept) or ``""``.
        channel_names: one name per channel (file names for ``--channels``).
        info: further provenance (modality, transfer syntax, photometric interpretation ...).
    """

    data: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    orientation: tuple[str, str, str]
    source: str
    units: str = ""
    channel_names: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.data.ndim != 4 or self.data.dtype != np.float32:
            raise ValueError(f"Volume data must be (C, X, Y, Z) float32, got {self.data.shape} {self.data.dtype}")
        if np.asarray(self.affine).shape != (4, 4):
            raise ValueError("Volume affine must be 4x4")

    @classmethod
    def from_array(
        cls,
        data: np.ndarray,
        affine: np.ndarray,
        *,
        source: str,
        units: str = "",
        channel_names: tuple[str, ...] = (),
        info: dict[str, Any] | None = None,
    ) -> Volume:
        """Build from ``(C, i, j, k)`` (or ``(i, j, k)``) voxels stored with any ``affine`` (to RAS+).

        The voxels are permuted/flipped to RAS+ (no resampling) and copied once as float32.
        """
        arr = np.asarray(data)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValueError(f"a volume needs 3 spatial axes (and optionally channels), got shape {arr.shape}")
        affine = np.asarray(affine, dtype=np.float64)
        codes = axcodes(affine)
        canon, new_affine = closest_canonical(arr, affine)
        spacing = as_triple(float(v) for v in np.linalg.norm(new_affine[:3, :3], axis=0))
        return cls(
            data=np.ascontiguousarray(canon, dtype=np.float32),
            affine=new_affine,
            spacing=spacing,
            orientation=codes,
            source=source,
            units=units,
            channel_names=tuple(channel_names),
            info=dict(info or {}),
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """Spatial shape ``(X, Y, Z)``."""
        return as_triple(int(v) for v in self.data.shape[1:])

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    def describe(self) -> dict[str, Any]:
        """JSON-ready geometry for manifests: shape, affine, spacing, orientations, units."""
        out: dict[str, Any] = {
            "source": self.source,
            "shape": [self.channels, *self.shape],
            "layout": "C,X,Y,Z (RAS+: X to patient Right, Y Anterior, Z Superior)",
            "affine": [[round(float(v), 6) for v in row] for row in self.affine],
            "spacing_mm": [round(s, 6) for s in self.spacing],
            "stored_orientation": "".join(self.orientation),
            "orientation": "RAS",
        }
        if self.units:
            out["units"] = self.units
        if self.channel_names:
            out["channels"] = list(self.channel_names)
        out.update({k: v for k, v in self.info.items() if isinstance(v, (str, int, float, bool, list))})
        return out
