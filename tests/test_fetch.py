"""`vbf fetch`: pinned downloads are checked before they are installed; offline it says where to put the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vbench_flow import fetch as fetching
from vbench_flow.fetch import FetchError, WeightsFile, clip_entry, fetch, raft_entry
from tests.test_runner import vbf


def _file(tmp_path: Path, content: bytes = b"weights" * 100) -> tuple[Path, str]:
    path = tmp_path / "upstream.bin"
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_download_checks_the_hash_then_installs(tmp_path):
    upstream, digest = _file(tmp_path)
    entry = WeightsFile("demo", "a test file", upstream.as_uri(), tmp_path / "cache" / "demo.bin", sha256=digest)
    path, got, installed = fetch(entry, progress=False)
    assert installed and got == digest and path.read_bytes() == upstream.read_bytes()
    assert fetch(entry, progress=False)[2] is False  # already in place, checked again, kept
    assert not list(path.parent.glob("*.part"))


def test_wrong_hash_installs_nothing(tmp_path):
    upstream, digest = _file(tmp_path)
    entry = WeightsFile("demo", "a test file", upstream.as_uri(), tmp_path / "demo.bin", sha256="0" * 64)
    with pytest.raises(FetchError, match="expected 0000"):
        fetch(entry, progress=False)
    assert not (tmp_path / "demo.bin").exists() and not (tmp_path / "demo.bin.part").exists()
    prefixed = WeightsFile("demo", "a test file", upstream.as_uri(), tmp_path / "demo.bin", sha256_prefix=digest[:8])
    assert fetch(prefixed, progress=False)[1] == digest
    wrong_prefix = WeightsFile("demo", "x", upstream.as_uri(), tmp_path / "other.bin", sha256_prefix="ffffffff")
    with pytest.raises(FetchError, match="does not start with"):
        fetch(wrong_prefix, progress=False)


def test_a_file_that_does_not_load_is_refused(tmp_path):
    upstream, _ = _file(tmp_path)

    def refuse(path: Path) -> None:
        raise ValueError("not the classic layout")

    entry = WeightsFile("demo", "x", upstream.as_uri(), tmp_path / "demo.bin", verify=refuse)
    with pytest.raises(FetchError, match="classic layout"):
        fetch(entry, progress=False)
    assert not (tmp_path / "demo.bin").exists()


def test_offline_names_the_url_and_the_path(tmp_path):
    entry = WeightsFile("demo", "x", "http://127.0.0.1:9/nothing.pt", tmp_path / "where" / "demo.pt", sha256="ab" * 32)
    with pytest.raises(FetchError) as info:
        fetch(entry, progress=False, timeout=5)
    text = info.value.render()
    assert "http://127.0.0.1:9/nothing.pt" in text and str(tmp_path / "where" / "demo.pt") in text and "--from" in text


def test_from_file_installs_offline(tmp_path):
    upstream, digest = _file(tmp_path)
    entry = WeightsFile("demo", "x", "http://127.0.0.1:9/unreachable", tmp_path / "demo.bin", sha256=digest)
    assert fetch(entry, source=upstream, progress=False)[2] is True
    assert (tmp_path / "demo.bin").read_bytes() == upstream.read_bytes()


def test_pins_come_from_the_published_names():
    clip = clip_entry("ViT-B-32", "openai")
    assert clip.sha256 == "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
    assert raft_entry().sha256_prefix == "ff5fadd5"


def test_cli_fetch_offline_exits_2_with_instructions(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(fetching, "raft_entry",
                        lambda: WeightsFile("raft", "x", "http://127.0.0.1:9/raft.pth", tmp_path / "raft.pth", sha256_prefix="ff5fadd5"))
    assert vbf("fetch", "raft") == 2
    err = capsys.readouterr().err
    assert "could not download raft" in err and str(tmp_path / "raft.pth") in err and "Traceback" not in err
    assert vbf("fetch", "clip", "--model", "ViT-B-32", "--pretrained", "nope") == 4
    assert "not a pretrained tag" in capsys.readouterr().err
    assert vbf("fetch", "list") == 0
    assert "i3d_pretrained_400.pt" in capsys.readouterr().out
