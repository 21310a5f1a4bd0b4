"""A booby-trapped pickle never runs its payload unless the user passes trust."""

from __future__ import annotations

import pytest

import convscope
from convscope.errors import UntrustedFileError
from convscope.loading import load_state_dict_file

from .files import FACTORY, booby_trapped_pickle, booby_trapped_pt2, write_valid


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_payload_in_weights_file_is_refused_and_never_runs(tmp_path, suffix, legacy):
    sentinel = tmp_path / "sentinel"
    path = booby_trapped_pickle(tmp_path / f"w{suffix}", sentinel, legacy=legacy)
    with pytest.raises(UntrustedFileError, match="--trust"):
        convscope.load(FACTORY, weights=path)
    assert not sentinel.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth"])
def test_payload_in_model_file_is_refused_and_never_runs(tmp_path, suffix):
    sentinel = tmp_path / "sentinel"
    path = booby_trapped_pickle(tmp_path / f"model{suffix}", sentinel)
    with pytest.raises(UntrustedFileError, match="--trust"):
        convscope.load(path)
    assert not sentinel.exists()


def test_payload_refused_by_load_state_dict_file(tmp_path):
    sentinel = tmp_path / "sentinel"
    with pytest.raises(UntrustedFileError):
        load_state_dict_file(booby_trapped_pickle(tmp_path / "w.pt", sentinel))
    assert not sentinel.exists()


def test_payload_in_pt2_never_runs_without_trust(tmp_path):
    sentinel = tmp_path / "sentinel"
    valid = write_valid(tmp_path / "valid", ".pt2")
    path = booby_trapped_pt2(valid, tmp_path / "evil.pt2", sentinel)
    with pytest.raises(UntrustedFileError, match="--trust"):
        convscope.load(path)
    assert not sentinel.exists()


def test_pt2_payload_fixture_is_live_when_trusted(tmp_path):
    """Self-check of the fixture: with trust, torch.export.load does run it (so the test above means something)."""
    sentinel = tmp_path / "sentinel"
    path = booby_trapped_pt2(write_valid(tmp_path / "valid", ".pt2"), tmp_path / "evil.pt2", sentinel)
    try:
        convscope.load(path, trust=True)
    except ValueError:
        pass
    assert sentinel.exists()
