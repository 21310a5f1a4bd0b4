"""Find a U-Net's anatomy (levels, encoder, bottleneck, decoder, skips) in a :class:`~.graph.Graph`.

Framework-free: works on any backend's graph (numpy/stdlib only).

How it works:
0. **Layout.** Only feature maps ``(N, C, *spatial)`` take part
   (:func:`~.graph.feature_map_ids`: known from the ops that make or read a tensor, never from its
   shape). Transformer tokens ``(N, L, C)``, attention windows, channels-last grids and
   ``stack(..., dim=-1)`` tensors are followed through but never get a level or end a skip.
1. **Levels.** Every feature map gets a resolution level by propagation along the graph: a node
   keeps the level of its input (the input closest in size) unless it is a resampling *event*:
   pooling, upsampling (``Upsample``, ``interpolate``, pixel shuffle) and convolutions or transposed
   convolutions with a stride above 1 move the level by ``round(log2(ratio))`` (at least one) as
   soon as they change the size; unknown ops (and convs of unknown stride) move it when the size
   changes by at least 1.5x. Pads, crops, stride-1 (valid) convs, norms, activations, adds and
   concats never change the level, however much the size changes (3 -> 5 by ``F.pad`` included).
2. **Main path.** The main output is the spatial model output with the most ancestors (side
   outputs of deep supervision have fewer; an output that is not a feature map, such as a
   ``stack(..., dim=-1)`` of heads, stands for the heads it is made of). The lowest resolution is
   the deepest level the decoder comes back up from (an upsampling of globally pooled 1x1 context,
   as in ASPP/PSP image pooling, is a side excursion). The bottleneck output is the tensor the
   decoder upsamples first (of several upsampled from the lowest level: the one computed from the
   most, e.g. a transformer's last hidden state); the *decoder side* is everything computed from it.
3. **Skips.** A merge (concat/stack/add) at level ``l`` is a skip merge when one of its inputs comes
   straight from an upsampling (walking back through same-level ops, and through residual adds
   whose branches all come from that one upsampling) and another does not, and that lateral
   branch does not itself depend on the same upsampling. An upsampling that is not on the decoder
   side (a transposed-conv projection of transformer tokens) joining a decoder-side one is such a
   lateral branch too; a lateral branch whose source is on the decoder side (multi-scale output
   heads) is not. The skip source is the first tensor on the lateral branch (walking back through
   crops, pads, attention gates, convs) that feeds a downsampling (the encoder tensor), else the
   first tensor that forks (a dense UNet++ node); the graph input only when the branch starts at
   it. Residual adds inside one resolution have no upsampled input and are never skips. An
   attention gate's internal add is dropped in favour of the merge it gates. Nested concats read
   only by concats (``cat([cat([a, b]), up])``) are one dense merge. The innermost concat around the
   bottom block (``cat([x, block(x)])`` at the lowest level) is the bottom level's skip.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ..errors import NotAUNet
from .graph import MERGE_OPS, PASS_THROUGH_OPS, Graph, Node, feature_map_ids

__all__ = ["Level", "Skip", "UNetStructure", "find_unet", "LEVEL_CHANGE_RATIO"]

LEVEL_CHANGE_RATIO = 1.5
"""A size change by at least this factor along some axis moves a tensor to another level."""

_LOG_THRESHOLD = math.log2(LEVEL_CHANGE_RATIO)


@dataclass(frozen=True)
class Level:
    """One resolution level above the bottleneck (level 0 = the input's resolution).

    Attributes:
        index: 0 for the highest resolution, ``depth - 1`` just above the bottleneck.
        shape: ``(C, *spatial)`` of the level's encoder output (else its decoder output).
        encoder: ids of the encoder-side nodes at this level (before any upsampling), execution order.
        decoder: ids of the decoder-side nodes at this level (after an upsampling), execution order.
        encoder_output: the last encoder tensor at this level that feeds the downsampling (else the
            source of the level's primary skip, e.g. a transformer's projected hidden state), or None.
        decoder_output: the tensor the decoder produces at this level: the one it upsamples further
            (else the last one that is not the model output nor a multi-scale head), or None.
        skip_sources: the distinct sources of the skips merged at this level, execution order (a
            flow figure draws one tail per source: UNet++ levels have several).
        merges: the distinct merge nodes of the skips at this level, execution order (one arrow head
            per merge; each skip of ``UNetStructure.skips_at(index)`` joins one source to one merge).
    """

    index: int
    shape: tuple[int, ...]
    encoder: tuple[str, ...]
    decoder: tuple[str, ...]
    encoder_output: str | None
    decoder_output: str | None
    skip_sources: tuple[str, ...] = ()
    merges: tuple[str, ...] = ()

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def channels(self) -> int:
        return self.shape[0]


@dataclass(frozen=True)
class Skip:
    """One skip connection: an encoder-side tensor joined with the upsampled decoder at a merge.

    Attributes:
        level: level index of the merge (``depth`` for the bottom level's skip, see
            :attr:`UNetStructure.bottom_skip`).
        source: id of the skip's source tensor (the encoder tensor, a dense UNet++ node, or the
            transposed-conv projection of a transformer's hidden state).
        merge: id of the merge node.
        merge_kind: ``"concat"`` (concat or stack) or ``"add"``.
        skip_input: id of the skip branch's tensor as it enters the merge (after crop/pad/gating; a
            branch of a nested concat folded into the merge enters through the inner concat at
            ``skip_position``).
        decoder_input: id of the upsampled decoder tensor as it enters the merge.
        upsample: id of the node where the decoder branch came up to this level.
        skip_position: index of ``skip_input`` in the merge node's ``inputs``.
        decoder_position: index of ``decoder_input`` in the merge node's ``inputs``.
    """

    level: int
    source: str
    merge: str
    merge_kind: str
    skip_input: str
    decoder_input: str
    upsample: str
    skip_position: int
    decoder_position: int


@dataclass(frozen=True)
class UNetStructure:
    """The anatomy of a U-Net found in a graph. All node references are node ids.

    Attributes:
        spatial_dims: 1, 2 or 3.
        input: id of the graph input.
        output: id of the main output (the prediction).
        side_outputs: ids of other spatial outputs (deep supervision heads).
        levels: the levels above the bottleneck, index 0 first (``len(levels) == depth``).
        bottleneck: ids of the nodes at the lowest resolution, execution order.
        bottleneck_shape: ``(C, *spatial)`` of the bottleneck output.
        bottleneck_output: id of the bottleneck tensor that the decoder upsamples first.
        skips: every skip, ordered by level, then merge, then branch.
        downsamples / upsamples: ids of the resolution-changing nodes on the main path.
        level_of: node id -> level index for the nodes listed in levels and bottleneck.
    """

    spatial_dims: int
    input: str
    output: str
    side_outputs: tuple[str, ...]
    levels: tuple[Level, ...]
    bottleneck: tuple[str, ...]
    bottleneck_shape: tuple[int, ...]
    bottleneck_output: str
    skips: tuple[Skip, ...]
    downsamples: tuple[str, ...]
    upsamples: tuple[str, ...]
    level_of: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)
    objective: str | None = None
    """The model output ``output`` belongs to (differentiated for gradient shares): ``output`` itself,
    or the tensor a ``stack(..., dim=-1)`` / mean of heads returns; None means ``output``."""

    @property
    def depth(self) -> int:
        """Number of levels above the bottleneck (= number of downsamplings on the main path)."""
        return len(self.levels)

    @property
    def num_levels(self) -> int:
        """Number of resolution levels including the bottleneck (a classic U-Net has 5)."""
        return len(self.levels) + 1

    def level(self, index: int) -> Level:
        if not 0 <= index < len(self.levels):
            raise ValueError(
                f"level {index} does not exist: this U-Net has levels 0..{len(self.levels) - 1} above the bottleneck"
            )
        return self.levels[index]

    @property
    def bottom_skip(self) -> Skip | None:
        """The skip at the bottleneck level (``level == depth``): the concat of the deepest encoder
        tensor with the bottom block's output around it (residual-unit U-Nets' innermost skip
        wrapper), or None. Its ``upsample`` is the bottom block's output (no upsampling between)."""
        return next((s for s in self.skips if s.level == len(self.levels)), None)

    def skips_at(self, level: int) -> tuple[Skip, ...]:
        """The skips whose merge is at ``level``."""
        return tuple(s for s in self.skips if s.level == level)

    def primary_skip(self, level: int) -> Skip | None:
        """The skip a one-level view shows: into the last merge of the level, preferring the encoder output."""
        at = self.skips_at(level)
        if not at:
            return None
        last_merge = at[-1].merge
        into_last = [s for s in at if s.merge == last_merge]
        enc = self.levels[level].encoder_output
        for skip in into_last:
            if skip.source == enc:
                return skip
        return into_last[0]

    def summary(self, graph: Graph | None = None) -> str:
        """A few lines of text: levels, bottleneck, skips (names from ``graph`` when given)."""

        def nm(nid: str | None) -> str:
            if nid is None:
                return "-"
            return graph.name_of(nid) if graph is not None and nid in graph else nid

        lines = [f"U-Net, {self.spatial_dims}D, {self.num_levels} resolution levels, {len(self.skips)} skips"]
        for lvl in self.levels:
            lines.append(
                f"  level {lvl.index} {'x'.join(map(str, lvl.spatial))} ({lvl.channels} ch): "
                f"encoder {nm(lvl.encoder_output)}, decoder {nm(lvl.decoder_output)}"
            )
        lines.append(f"  bottleneck {'x'.join(map(str, self.bottleneck_shape[1:]))}: {nm(self.bottleneck_output)}")
        for skip in self.skips:
            lines.append(f"  skip L{skip.level} {nm(skip.source)} -> {nm(skip.merge)} ({skip.merge_kind})")
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------------


def _log_ratio(big: tuple[int, ...], small: tuple[int, ...]) -> float:
    """The per-axis ``log2(big / small)`` with the largest magnitude (anisotropic pooling counts)."""
    best = 0.0
    for a, b in zip(big, small):
        if a <= 0 or b <= 0:
            continue
        value = math.log2(a / b)
        if abs(value) > abs(best):
            best = value
    return best


def _step(size_in: tuple[int, ...], size_out: tuple[int, ...]) -> int:
    """Level change from ``size_in`` to ``size_out``: 0 for small changes, else +-round(log2 ratio)."""
    value = _log_ratio(size_in, size_out)
    if abs(value) < _LOG_THRESHOLD:
        return 0
    return int(math.copysign(max(1, round(abs(value))), value))


_RESAMPLING_OPS = frozenset({"conv", "conv_transpose", "pool", "upsample", "reduce", "linear", "other"})
"""Ops that may change the resolution; every other op (crops, pads, norms, activations, adds, concats,
copies) keeps the level of its input however much the map's size changes."""


def _stride(node: Node) -> tuple[int, ...] | None:
    stride = node.attrs.get("stride", node.attrs.get("strides"))
    if stride is None:
        return None
    try:
        return (int(stride),) if isinstance(stride, int) else tuple(int(v) for v in stride)
    except (TypeError, ValueError):
        return None


def _keeps_level(node: Node) -> bool:
    """Ops that never resample: everything but pooling, upsampling, strided convolutions and unknown ops."""
    if node.op not in _RESAMPLING_OPS:
        return True
    if node.op in ("conv", "conv_transpose"):
        stride = _stride(node)
        return stride is not None and all(v == 1 for v in stride)
    return False


def _is_event(node: Node) -> bool:
    """A resampling op whose kind says it resamples (pooling, upsampling, a stride > 1 convolution):
    any size change it makes is a level change, however small the ratio."""
    if node.op in ("pool", "upsample"):
        return True
    if node.op in ("conv", "conv_transpose"):
        stride = _stride(node)
        return stride is not None and any(v > 1 for v in stride)
    return False


def _event_step(size_in: tuple[int, ...], size_out: tuple[int, ...]) -> int:
    """Level change of a resampling event: 0 if the size is unchanged, else at least one level."""
    if tuple(size_in) == tuple(size_out):
        return 0
    value = _log_ratio(size_in, size_out)
    if value == 0.0:
        return 0
    return int(math.copysign(max(1, round(abs(value))), value))


class _Finder:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.fmap = feature_map_ids(graph)
        self.tag: dict[str, int | None] = {}
        self.ref: dict[str, str | None] = {}
        self.size: dict[str, tuple[int, ...] | None] = {}
        self._walks: dict[str, tuple[str, list[str]]] = {}

    # -- step 1: levels -----------------------------------------------------------------------
    def assign_levels(self, input_size: tuple[int, ...]) -> None:
        g = self.g
        for node in g.nodes:
            size = g.spatial(node.id) if node.id in self.fmap else None
            self.size[node.id] = size
            self.ref[node.id] = None
            if size is None:
                self.tag[node.id] = None
                continue
            if node.op == "input":
                self.tag[node.id] = 0 if node.id == g.input_ids[0] else _step(input_size, size)
                continue
            best: tuple[float, str] | None = None
            for source in node.inputs:
                source_size = self.size.get(source)
                if self.tag.get(source) is None or source_size is None:  # a tagged tensor has a size
                    continue
                distance = abs(_log_ratio(source_size, size))
                if best is None or distance < best[0]:
                    best = (distance, source)
            if best is None:
                self.tag[node.id] = _step(input_size, size)
            else:
                source = best[1]
                source_size, source_tag = self.size[source], self.tag[source]
                assert source_size is not None and source_tag is not None  # chosen among the tagged inputs
                self.ref[node.id] = source
                if _keeps_level(node):
                    step = 0
                elif _is_event(node):
                    step = _event_step(source_size, size)
                else:
                    step = _step(source_size, size)
                self.tag[node.id] = source_tag + step

    def _levels(self, nid: str) -> tuple[int, int] | None:
        """(level of ``nid``, level of its reference input), or None when it has no reference."""
        r = self.ref[nid]
        if r is None:
            return None
        level, ref_level = self.tag[nid], self.tag[r]
        if level is None or ref_level is None:
            return None
        return level, ref_level

    def is_up(self, nid: str) -> bool:
        levels = self._levels(nid)
        return levels is not None and levels[0] < levels[1]

    def is_down(self, nid: str) -> bool:
        levels = self._levels(nid)
        return levels is not None and levels[0] > levels[1]

    def full_inputs(self, node: Node) -> list[str]:
        """Distinct inputs with exactly the node's spatial size (the branches of a merge)."""
        size = self.size[node.id]
        return list(dict.fromkeys(i for i in node.inputs if self.size.get(i) == size and self.tag.get(i) is not None))

    def gate_main(self, node: Node, full: list[str]) -> str:
        """The gated tensor of ``x * gate``: most channels, then not an activation output, then first."""

        def key(nid: str) -> tuple[int, int, int]:
            n = self.g.node(nid)
            return (-(n.channels or 0), 1 if n.op == "activation" else 0, full.index(nid))

        return min(full, key=key)

    def direct_ups(self, merge: str) -> set[str]:
        """The upsampling nodes that feed the merge ``merge`` directly (through same-level ops)."""
        ups = set()
        for source in self.full_inputs(self.g.node(merge)):
            kind, path = self.walk(source)
            if kind == "up":
                ups.add(path[-1])
        return ups

    # -- step 3: branch walk ------------------------------------------------------------------
    def walk(self, start: str) -> tuple[str, list[str]]:
        """Walk back from ``start`` through same-level single-branch ops.

        Returns ``(kind, path)``: kind is ``"up"`` (reached an upsampling; ``path[-1]`` is it),
        ``"down"``, ``"merge"``, ``"input"`` or ``"source"``; path lists the visited ids from ``start``.
        A residual add whose branches all come from the same upsampling (a residual unit right after
        a transposed conv) is walked through: it leads to that upsampling.
        """
        if start in self._walks:
            return self._walks[start]
        g = self.g
        path: list[str] = []
        nid = start
        result: tuple[str, list[str]]
        while True:
            path.append(nid)
            node = g.node(nid)
            if node.op == "input":
                result = ("input", path)
                break
            r = self.ref[nid]
            if r is None:
                result = ("source", path)
                break
            if self.is_up(nid):
                result = ("up", path)
                break
            if self.is_down(nid):
                result = ("down", path)
                break
            full = self.full_inputs(node)
            if len(full) >= 2:
                if node.op == "mul":
                    nid = self.gate_main(node, full)
                    continue
                if node.op == "add":
                    branches = [self.walk(i) for i in full]
                    ups = {b[1][-1] for b in branches if b[0] == "up"}
                    if len(ups) == 1 and all(b[0] == "up" for b in branches):
                        result = ("up", path + branches[0][1])
                        break
                result = ("merge", path)
                break
            nid = full[0] if full else r
        self._walks[start] = result
        return result


def _fmt_size(size: tuple[int, ...] | None) -> str:
    return "x".join(map(str, size)) if size else "?"


def find_unet(graph: Graph) -> UNetStructure:
    """Find encoder, bottleneck, decoder and every skip connection of a U-Net-shaped graph.

    Args:
        graph: the dataflow graph of one forward pass; node shapes ``(C, *spatial)`` without batch.

    Returns:
        :class:`UNetStructure` (node ids; in the torch backend ids are the node names).

    Raises:
        NotAUNet: the graph is not U-Net shaped; the message says what was found (no spatial output,
            no downsampling, no upsampling after the lowest resolution, or no skip connection).
    """
    if not graph.input_ids:
        raise NotAUNet("the graph has no input node, so there is nothing to follow from input to output")
    dims = graph.spatial_dims
    inp = graph.input_ids[0]
    input_shape = graph.node(inp).shape
    if dims is None or dims not in (1, 2, 3):
        raise NotAUNet(
            f"the input has shape {input_shape}: a U-Net takes (C, L), (C, H, W) or (C, D, H, W) inputs "
            "(channels first, without the batch axis)"
        )
    input_size = graph.spatial(inp)
    assert input_size is not None  # dims checked above
    finder = _Finder(graph)
    finder.assign_levels(input_size)
    tag = finder.tag

    # -- main output and main path ---------------------------------------------------------------
    spatial_outputs = _spatial_outputs(finder)
    if not spatial_outputs:
        shown = ", ".join(f"{graph.name_of(o)} {graph.node(o).shape}" for o in graph.output_ids) or "none"
        raise NotAUNet(
            f"the model's output ({shown}) is not a spatial map, so there is no decoder: a U-Net returns "
            f"a {dims}D map {('(C, L)', '(C, H, W)', '(C, D, H, W)')[dims - 1]}; this looks like a "
            "classifier or a plain CNN"
        )
    ancestry = {o: graph.ancestors(o, include_self=True) for o in spatial_outputs}
    main_out = max(spatial_outputs, key=lambda o: (len(ancestry[o]), -tag[o], -spatial_outputs.index(o)))  # type: ignore[operator]
    main = ancestry[main_out]
    order = [n.id for n in graph.nodes if n.id in main and tag.get(n.id) is not None]

    downs = [n for n in order if finder.is_down(n)]
    ups = [n for n in order if finder.is_up(n)]
    deepest = max(tag[n] for n in order)  # type: ignore[type-var]
    if not downs:
        raise NotAUNet(
            f"no downsampling: every tensor from the input to the output {graph.name_of(main_out)!r} keeps the "
            f"input resolution {_fmt_size(input_size)}; a U-Net's encoder lowers the resolution "
            "(pooling or strided convolutions)"
        )
    if not ups:
        deep_node = next(n for n in order if tag[n] == deepest)
        raise NotAUNet(
            f"no upsampling after the lowest resolution: the resolution goes down from {_fmt_size(input_size)} "
            f"to {_fmt_size(finder.size[deep_node])} ({graph.name_of(deep_node)!r}, {deepest} level(s) down) and "
            f"never comes back up, so there is no decoder; this looks like an encoder-only network or a plain CNN"
        )
    # an interpolation of a globally pooled (1x1) context back by several levels (ASPP/PSP image
    # pooling, global-context blocks) is a side excursion, not the way up from the bottleneck
    trunk_ups = [u for u in ups if not _global_excursion(finder, u)]
    if not trunk_ups:
        raise NotAUNet(
            "no upsampling after the lowest resolution: the only upsamplings bring globally pooled (1x1) context "
            "back to a feature map, so there is no decoder; this looks like an encoder with a context module"
        )
    bottom: int = max(tag[finder.ref[u]] for u in trunk_ups)  # type: ignore[index,type-var,assignment]
    # the tensor the decoder comes up from: of the tensors upsampled from the lowest level, the one
    # computed from the most (a transformer's last hidden state, not the projections of earlier ones)
    from_bottom = [u for u in trunk_ups if tag[finder.ref[u]] == bottom]  # type: ignore[index]
    bottleneck_output = max(
        (finder.ref[u] for u in from_bottom),
        key=lambda b: (len(graph.ancestors(b)), -graph.position(b)),  # type: ignore[arg-type]
    )
    assert bottleneck_output is not None
    decoder_side = graph.descendants(bottleneck_output, include_self=True)

    tags_used = sorted({t for n in order if (t := tag[n]) is not None and t <= bottom})
    rank = {t: i for i, t in enumerate(tags_used)}
    bottom_rank = rank[bottom]

    # -- skip candidates -------------------------------------------------------------------------
    live: set[str] = set().union(*ancestry.values())
    residual_adds = 0
    candidates: list[Skip] = []
    folded = _folded_concats(finder)
    for node in graph.nodes:
        if node.op not in MERGE_OPS or node.id not in live or tag.get(node.id) is None:
            continue
        if node.id in folded:
            continue  # a concat read only by a concat: its branches are that concat's branches
        entry_of = _branches(finder, node, folded)
        full = list(entry_of)
        if len(full) < 2:
            continue
        walks = {i: finder.walk(i) for i in full}
        up_inputs = [i for i in full if walks[i][0] == "up"]
        lateral = [i for i in full if walks[i][0] != "up"]
        if up_inputs and any(i in decoder_side for i in up_inputs):
            # an encoder-side upsampling (a transposed-conv projection of transformer tokens) joining the
            # decoder's upsampled tensor is the skip's encoder side
            projections = [i for i in up_inputs if i not in decoder_side and walks[i][1][-1] not in decoder_side]
            up_inputs = [i for i in up_inputs if i not in projections]
            lateral = [i for i in full if i in projections or i in lateral]
        if not up_inputs or not lateral:
            if node.op == "add":
                residual_adds += 1  # every branch from the same side: a residual add within one resolution
            continue
        if tag[node.id] not in rank or tag[node.id] >= bottom:  # type: ignore[operator]
            continue  # merges at the bottleneck (e.g. with pooled context) are not skips
        dec = up_inputs[0]
        up_node = walks[dec][1][-1]
        for lat in lateral:
            kind, path = walks[lat]
            if kind == "merge" and up_node in finder.direct_ups(path[-1]):
                continue  # the lateral branch comes from a merge with this same upsampling: a residual, not a skip
            source = _pick_source(finder, graph, walks[lat][1], bottom, main)
            if source in decoder_side and dec in decoder_side:
                continue  # both branches come from the decoder (a multi-scale output head): not a skip
            candidates.append(
                Skip(
                    level=rank[tag[node.id]],  # type: ignore[index]
                    source=source,
                    merge=node.id,
                    merge_kind="add" if node.op == "add" else "concat",
                    skip_input=lat,
                    decoder_input=dec,
                    upsample=up_node,
                    skip_position=node.inputs.index(entry_of[lat]),
                    decoder_position=node.inputs.index(entry_of[dec]),
                )
            )

    # an attention gate's add (x-branch + upsampled g) precedes the concat it gates: keep the later merge
    skips: list[Skip] = []
    merge_ancestors: dict[str, set[str]] = {}

    def ancestors_of(merge: str) -> set[str]:
        if merge not in merge_ancestors:
            merge_ancestors[merge] = graph.ancestors(merge)
        return merge_ancestors[merge]

    for cand in candidates:
        shadowed = any(
            other is not cand
            and other.source == cand.source
            and other.upsample == cand.upsample
            and cand.merge in ancestors_of(other.merge)
            for other in candidates
        )
        if not shadowed:
            skips.append(cand)
    if not skips:
        raise NotAUNet(
            f"no skip connection: the resolution goes down from {_fmt_size(input_size)} to "
            f"{_fmt_size(_size_at(finder, order, bottom))} and comes back up ({len(ups)} upsampling step(s)), but no "
            f"merge (concat/add) joins an encoder tensor with an upsampled decoder tensor at the same resolution"
            + (f" ({residual_adds} residual add(s) within one resolution were ignored)" if residual_adds else "")
            + "; this is an encoder-decoder without skips, not a U-Net"
        )
    bottom_skip = _bottom_skip(finder, graph, bottleneck_output, bottom, bottom_rank, live)
    if bottom_skip is not None:
        skips.append(bottom_skip)
    skips.sort(key=lambda s: (s.level, graph.position(s.merge), s.skip_position))
    decoder_nodes = set(decoder_side)
    for skip in skips:
        if skip.level < bottom_rank:
            decoder_nodes |= graph.descendants(skip.merge, include_self=True)

    # -- levels ----------------------------------------------------------------------------------
    level_of: dict[str, int] = {}
    per_level_enc: dict[int, list[str]] = {i: [] for i in range(bottom_rank)}
    per_level_dec: dict[int, list[str]] = {i: [] for i in range(bottom_rank)}
    bottleneck: list[str] = []
    for nid in order:
        t = tag[nid]
        if nid == inp or t not in rank:
            continue
        r = rank[t]
        level_of[nid] = r
        if r == bottom_rank:
            bottleneck.append(nid)
        elif nid in decoder_nodes:
            per_level_dec[r].append(nid)
        else:
            per_level_enc[r].append(nid)

    levels: list[Level] = []
    for index in range(bottom_rank):
        enc = per_level_enc[index]
        dec_nodes = per_level_dec[index]
        feeding = [n for n in enc if any(c in main and finder.is_down(c) for c in graph.consumers(n))]
        primary = structure_primary(skips, index, feeding[-1] if feeding else None)
        enc_out = feeding[-1] if feeding else (primary.source if primary is not None else (enc[-1] if enc else None))
        dec_out = _decoder_output(finder, graph, dec_nodes, main_out, skips, decoder_nodes)
        rep = enc_out or dec_out or (inp if index == 0 else None)
        shape = graph.node(rep).shape if rep is not None else None
        if shape is None:
            shape = (0,) + (0,) * dims
        levels.append(
            Level(
                index=index,
                shape=tuple(shape),
                encoder=tuple(enc),
                decoder=tuple(dec_nodes),
                encoder_output=enc_out,
                decoder_output=dec_out,
                skip_sources=_in_order(graph, (k.source for k in skips if k.level == index)),
                merges=_in_order(graph, (k.merge for k in skips if k.level == index)),
            )
        )
    bshape = graph.node(bottleneck_output).shape or ()
    return UNetStructure(
        spatial_dims=dims,
        input=inp,
        output=main_out,
        side_outputs=tuple(o for o in spatial_outputs if o != main_out),
        levels=tuple(levels),
        bottleneck=tuple(bottleneck),
        bottleneck_shape=tuple(bshape),
        bottleneck_output=bottleneck_output,
        skips=tuple(skips),
        downsamples=tuple(downs),
        upsamples=tuple(ups),
        level_of=level_of,
        objective=_objective_of(graph, main_out),
    )


def _objective_of(graph: Graph, main_out: str) -> str:
    """The model output that ``main_out`` is, or the first model output made from it."""
    if main_out in graph.output_ids:
        return main_out
    after = graph.descendants(main_out)
    return next((o for o in graph.output_ids if o in after), main_out)


def _in_order(graph: Graph, ids: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(ids), key=graph.position))


def structure_primary(skips: list[Skip], level: int, encoder_output: str | None) -> Skip | None:
    """The skip a one-level view shows (see :meth:`UNetStructure.primary_skip`)."""
    at = [s for s in skips if s.level == level]
    if not at:
        return None
    last_merge = at[-1].merge
    into_last = [s for s in at if s.merge == last_merge]
    for skip in into_last:
        if skip.source == encoder_output:
            return skip
    return into_last[0]


def _folded_concats(finder: _Finder) -> set[str]:
    """Concats read only by concats along the same axis at the same size: ``cat([cat([a, b]), c])``
    is one dense merge of ``a, b, c`` (what one ONNX exporter writes as a single Concat)."""
    graph = finder.g
    out: set[str] = set()
    for node in graph.nodes:
        if node.op != "concat" or finder.size.get(node.id) is None:
            continue
        readers = [graph.node(r) for r in graph.consumers(node.id)]
        if readers and all(
            r.op == "concat" and finder.size.get(r.id) == finder.size[node.id] and _same_axis(node, r) for r in readers
        ):
            out.add(node.id)  # (an exporter that shares one inner concat between two outer ones: still folded)
    return out


def _same_axis(a: Node, b: Node) -> bool:
    da, db = a.attrs.get("dim", a.attrs.get("axis")), b.attrs.get("dim", b.attrs.get("axis"))
    if da is None or db is None or a.shape is None or b.shape is None:
        return da is None and db is None
    rank = len(a.shape) + 1
    return int(da) % rank == int(db) % rank


def _branches(finder: _Finder, node: Node, folded: set[str]) -> dict[str, str]:
    """The merge's branches (full-size inputs, folded concats expanded) -> the input of ``node`` they enter by."""
    out: dict[str, str] = {}
    for entry in finder.full_inputs(node):
        stack = [entry]
        while stack:
            nid = stack.pop(0)
            if nid in folded:
                stack[:0] = finder.full_inputs(finder.g.node(nid))
            elif nid not in out:
                out[nid] = entry
    return out


def _decoder_output(
    finder: _Finder, graph: Graph, dec: list[str], main_out: str, skips: list[Skip], decoder_nodes: set[str]
) -> str | None:
    """The tensor the decoder produces at a level: the last one the decoder upsamples further (to a level
    with a skip merge), else the last one not made from several upsamplings into the level (a
    multi-scale output head) and not the model output."""
    if not dec:
        return None
    merges = {s.merge for s in skips}
    feeding = []
    for nid in dec:
        for consumer in graph.consumers(nid):
            if finder.is_up(consumer) and finder.ref[consumer] == nid and consumer in decoder_nodes:
                if graph.descendants(consumer) & merges:
                    feeding.append(nid)
                    break
    if feeding:
        return feeding[-1]
    heads: set[str] = set()
    for n in dec:
        if finder.is_up(n) and n not in heads:
            below = graph.descendants(n, include_self=True)
            if not below & merges:
                heads |= below  # a multi-scale head's upsampling and what is made from it
    plain = [n for n in dec if n != main_out and n not in heads]
    # a tensor the net goes on with as a feature map (or returns), not one only turned into something
    # else (a flow field made a sampling grid)
    kept = [n for n in plain if n in finder.g.output_ids or any(finder.tag.get(c) is not None for c in graph.consumers(n))]
    if kept:
        return kept[-1]
    if plain:
        return plain[-1]
    others = [n for n in dec if n != main_out]
    return others[-1] if others else dec[-1]


def _spatial_outputs(finder: _Finder) -> list[str]:
    """The model's feature-map outputs; an output that is not one (a ``stack(..., dim=-1)`` of heads, its
    mean) stands for the feature maps it was made of."""
    graph = finder.g
    out: list[str] = []
    for o in dict.fromkeys(graph.output_ids):
        if finder.tag.get(o) is not None:
            out.append(o)
            continue
        stack = [o]
        seen: set[str] = set()
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            node = graph.node(nid)
            if nid != o and finder.tag.get(nid) is not None:
                out.append(nid)
            elif node.op in ("stack", "concat", "reduce", "reshape", "identity", "add", "mean", "activation"):
                stack.extend(reversed(node.inputs))
    return list(dict.fromkeys(out))


def _bottom_skip(
    finder: _Finder, graph: Graph, bottleneck_output: str, bottom: int, bottom_rank: int, live: set[str]
) -> Skip | None:
    """The concatenation around the bottom block: the deepest encoder tensor joined with the bottleneck
    block's output at the lowest resolution (``cat([x, block(x)])`` just before the first upsampling)."""
    tag = finder.tag
    chain = graph.ancestors(bottleneck_output, include_self=True)
    best: Skip | None = None
    for node in graph.nodes:
        if node.op != "concat" or node.id not in chain or node.id not in live or tag.get(node.id) != bottom:
            continue
        full = finder.full_inputs(node)
        if len(full) != 2:
            continue
        for lat, dec in (full, full[::-1]):
            if lat not in graph.ancestors(dec):
                continue
            between = graph.ancestors(dec, include_self=True) - graph.ancestors(lat, include_self=True)
            if not any(graph.node(n).op == "conv" for n in between):
                continue
            if any(tag.get(n) != bottom for n in between if tag.get(n) is not None):
                continue  # the block leaves the level: a deeper part, not the bottom block
            best = Skip(
                level=bottom_rank,
                source=lat,
                merge=node.id,
                merge_kind="concat",
                skip_input=lat,
                decoder_input=dec,
                upsample=dec,
                skip_position=node.inputs.index(lat),
                decoder_position=node.inputs.index(dec),
            )
            break
    return best


def _global_excursion(finder: _Finder, up: str) -> bool:
    """An upsampling of globally pooled context: from a 1x1 map that a global pooling made (adaptive
    pooling to 1, a mean over the spatial axes), as in ASPP/PSP image pooling. A U-Net whose bottleneck
    happens to be 1x1 (a small input) is not one: its 1x1 map comes from ordinary pooling or strided convs."""
    source = finder.ref[up]
    size = finder.size.get(source) if source is not None else None
    if source is None or size is None or any(s != 1 for s in size):
        return False
    kind, path = finder.walk(source)
    if kind != "down":
        return False
    return _is_global_pool(finder.g.node(path[-1]))


def _is_global_pool(node: Node) -> bool:
    if node.op == "reduce":
        return True
    if node.op != "pool":
        return False
    what = f"{node.name} {node.module_type or ''} {node.attrs.get('func', '')} {node.attrs.get('type', '')}".lower()
    return "adaptive" in what or "global" in what


def _size_at(finder: _Finder, order: list[str], tag: int) -> tuple[int, ...] | None:
    for nid in order:
        if finder.tag[nid] == tag:
            return finder.size[nid]
    return None


def _pick_source(finder: _Finder, graph: Graph, path: list[str], bottom: int, main: set[str]) -> str:
    """The skip's source on a lateral branch ``path`` (merge input first, walking back).

    The graph input is a source only when the branch starts at it: a conv block on the input (a
    transformer U-Net's level-0 skip) starts the skip, not the input it shares with the encoder.
    """
    tag = finder.tag
    inner = [nid for nid in path if nid == path[0] or graph.node(nid).op != "input"]
    for nid in inner:
        for consumer in graph.consumers(nid):
            t = tag.get(consumer)
            if consumer in main and finder.is_down(consumer) and finder.ref[consumer] == nid and t is not None and t <= bottom:
                return nid
    for nid in inner:
        if len(graph.consumers(nid)) > 1:
            return nid
    for nid in path:
        node = graph.node(nid)
        if node.op not in PASS_THROUGH_OPS and node.op != "mul":
            return nid
    return path[0]
