"""grass data download llm-adapters: all-or-nothing copy, and one clear line without GitHub."""
from __future__ import annotations

import urllib.error

import pytest

from grass.cli import main
from grass.data import download
from grass.errors import DataError


def test_download_from_a_mirror(adapters_dir, tmp_path):
    dest = download.download_llm_adapters(tmp_path / "copy", base_url=adapters_dir.as_uri() + "/")
    for rel in download.FILES:
        assert (dest / rel).read_bytes() == (adapters_dir / rel).read_bytes()


def test_unreachable_github_is_one_clear_error(monkeypatch, tmp_path, capsys):
    def refuse(url, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download.urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match="cannot reach GitHub .* set GRASS_DATA_DIR"):
        download.download_llm_adapters(tmp_path / "x")
    assert not (tmp_path / "x").exists()  # nothing half-written
    assert main(["data", "download", "llm-adapters", "--dest", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach GitHub")


def test_unknown_dataset(capsys):
    assert main(["data", "download", "alpaca"]) == 2
    assert "valid: llm-adapters" in capsys.readouterr().err
