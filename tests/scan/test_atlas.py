"""The report's channel atlas from a scan folder."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("jinja2")

import convscope as cs  # noqa: E402

from .nets import TinyNet  # noqa: E402
from .test_scan import _write_images  # noqa: E402


def test_report_links_an_atlas_of_lazy_cards(tmp_path):
    images = _write_images(tmp_path / "d", 6, size=12, seed=9)
    scope = cs.Scope(TinyNet().eval())
    scope.scan(tmp_path / "d", top_k=2, batch_size=4, out=tmp_path / "scan")
    index = scope.report(str(images[0]), tmp_path / "report", progress=False, scan=tmp_path / "scan")
    assert "href='atlas.html'" in index.read_text()
    atlas = (tmp_path / "report" / "atlas.html").read_text()
    assert atlas.count("loading='lazy'") == 4 + 6  # conv1 and conv2 channels
    assert "dead (never positive): [3]" in atlas
    assert (tmp_path / "report" / "atlas" / "cards" / "conv2" / "c0005.png").is_file()
