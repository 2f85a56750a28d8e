"""``vbf fetch``: download the standard pretrained extractors from pinned URLs, check them, and put
them where the metrics look.

Each download goes to a ``.part`` file next to its destination, is checked, and only then
renamed into place, so an interrupted or wrong download never leaves a file a metric would load.
The check is the sha256 where one is published with the file: OpenAI's CLIP URLs carry the full
hash, torchvision's file names carry its first 8 hex digits. Where no trustworthy hash is
published (the I3D conversions) the file must load strictly into the expected architecture, and
its sha256 is printed so a suite can pin it (``fvd: {args: {sha256: ...}}``). Offline, the error
names the URL and the exact path to place the file at; ``--from FILE`` installs a file copied over
by hand through the same checks.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from metrics.files import file_sha256

from vbench_flow.errors import ConfigError, VbfError


class FetchError(VbfError):
    """A download failed or the file did not pass its check; nothing was installed."""

    exit_code = 2


@dataclass(frozen=True)
class WeightsFile:
    name: str
    description: str
    url: str
    destination: Path
    sha256: str | None = None          # the full hash, when one is published
    sha256_prefix: str | None = None   # torchvision's convention: the first hex digits in the file name
    verify: Callable[[Path], None] | None = None  # loads the file; raises ValueError when it is not the model
    member: str | None = None  # the URL is a zip archive and the file is this member of it (RAFT's release)

    def check(self, path: Path) -> str:
        """The file's sha256 after every check passed; FetchError naming the mismatch otherwise."""
        digest = file_sha256(path)
        if self.sha256 and digest != self.sha256.lower():
            raise FetchError(f"{self.name}: sha256 of the file is {digest}, expected {self.sha256}",
                             fix="the download is corrupt or not the pinned file; fetch again with --force, or fetch it by hand")
        if self.sha256_prefix and not digest.startswith(self.sha256_prefix.lower()):
            raise FetchError(f"{self.name}: sha256 of the file is {digest}, which does not start with the published "
                             f"{self.sha256_prefix}", fix="the file is corrupt or not the pinned file; fetch again with --force")
        if self.verify is not None:
            try:
                self.verify(path)
            except Exception as exc:  # any load failure means "not the expected model file"
                raise FetchError(f"{self.name}: the file does not load as the expected model: "
                                 f"{type(exc).__name__}: {exc}",
                                 fix="delete it and fetch again (or pass --force), or check the file you gave") from None
        return digest

    @property
    def pinned(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}"
        if self.sha256_prefix:
            return f"sha256 starting {self.sha256_prefix}"
        return "no published sha256: checked by loading it strictly"


# ---------------------------------------------------------------- the catalogue


def _verify_i3d(path: Path) -> None:
    from metrics.i3d import load_i3d

    load_i3d(path)


def _verify_i3d_torchscript(path: Path) -> None:
    from metrics.i3d import load_i3d_torchscript

    load_i3d_torchscript(path)


def i3d_entry(torchscript: bool = False) -> WeightsFile:
    from metrics import i3d

    if torchscript:
        return WeightsFile("i3d-torchscript", "StyleGAN-V's TorchScript export of the Kinetics-400 I3D (FVD)",
                           f"{i3d.TORCHSCRIPT_URL}?dl=1", i3d.DEFAULT_WEIGHTS_PATH.with_name(i3d.TORCHSCRIPT_FILENAME),
                           sha256=i3d.TORCHSCRIPT_SHA256, verify=_verify_i3d_torchscript)
    return WeightsFile("i3d", "Kinetics-400 RGB I3D state dict i3d_pretrained_400.pt (FVD)", i3d.WEIGHTS_URL,
                       i3d.DEFAULT_WEIGHTS_PATH, sha256=i3d.WEIGHTS_SHA256, verify=_verify_i3d)


def raft_entry() -> WeightsFile:
    from metrics import warping

    prefix = warping.RAFT_FILENAME.rsplit("-", 1)[-1].split(".")[0]
    return WeightsFile("raft", f"torchvision RAFT-large ({warping.RAFT_WEIGHTS}) for the warping error",
                       warping.RAFT_URL, warping.DEFAULT_RAFT_PATH, sha256_prefix=prefix,
                       verify=lambda path: warping.raft_flow(path))


def clip_entry(model: str = "ViT-B-32", pretrained: str = "openai") -> WeightsFile:
    import open_clip

    from metrics.clipsim import default_weights_path

    if model not in open_clip.list_models():
        raise ConfigError(f"unknown open_clip model {model!r}", where="--model", fix="e.g. ViT-B-32 or ViT-L-14")
    cfg = dict(open_clip.get_pretrained_cfg(model, pretrained))
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise ConfigError(f"{pretrained!r} is not a pretrained tag of {model}", where="--pretrained", fix=f"its tags: {tags}")
    url = cfg.get("url", "")
    if url:
        # OpenAI's URLs are .../models/<sha256>/<file>
        parts = url.rstrip("/").split("/")
        published = parts[-2] if "openaipublic" in url and len(parts[-2]) == 64 else None
        return WeightsFile(f"clip {model} {pretrained}", f"open_clip {model} weights '{pretrained}' (CLIPSIM)", url,
                           default_weights_path(model, pretrained, ".pt"), sha256=published,
                           verify=lambda path: _verify_clip(model, path))
    repo, _, filename = cfg["hf_hub"].rpartition("/")
    filename = filename or "open_clip_model.safetensors"
    return WeightsFile(f"clip {model} {pretrained}", f"open_clip {model} weights '{pretrained}' (CLIPSIM)",
                       f"https://huggingface.co/{repo}/resolve/main/{filename}",
                       default_weights_path(model, pretrained, ".safetensors" if filename.endswith(".safetensors") else ".pt"),
                       verify=lambda path: _verify_clip(model, path))


def extractor_entry(name: str) -> WeightsFile:
    """A standard extractor of ``metrics.extractors`` (VBench's dimensions) by its name."""
    from metrics import extractors

    if name not in extractors.NAMES:
        raise ConfigError(f"unknown extractor {name!r}", where="vbf fetch", fix=f"one of {', '.join(extractors.NAMES)}")
    spec = extractors.extractor_file(name)
    member = "models/raft-things.pth" if spec.url.endswith(".zip") else None
    return WeightsFile(name, spec.description, spec.url, spec.default_path, sha256=spec.sha256,
                       sha256_prefix=spec.sha256_prefix, verify=lambda path: extractors.load(name, path), member=member)


def _verify_clip(model: str, path: Path) -> None:
    from metrics.clipsim import ClipScorer

    ClipScorer.from_open_clip(model, str(path))


# ---------------------------------------------------------------- fetching


def _download(url: str, target: Path, *, progress: bool, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "vbench-flow"})
    with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name.removesuffix(".part"),
                  disable=not progress, file=sys.stderr) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def _extract_member(archive: Path, member: str) -> None:
    """Replace the downloaded zip ``archive`` by its ``member`` (same path)."""
    import zipfile

    try:
        with zipfile.ZipFile(archive) as handle, handle.open(member) as data:
            content = data.read()
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FetchError(f"the download is not the expected zip archive with {member} ({exc})",
                         fix="fetch again, or download it by hand and use --from") from None
    archive.write_bytes(content)


def fetch(entry: WeightsFile, *, source: Path | None = None, destination: Path | None = None, force: bool = False,
          progress: bool = True, timeout: float = 60.0) -> tuple[Path, str, bool]:
    """Install ``entry`` at ``destination`` (default its own): downloaded, or copied from ``source``.

    Returns (path, sha256, installed_now); a file already in place that passes the checks is kept
    unless ``force``. Raises FetchError when the download fails or a check fails (nothing is left
    behind), ConfigError when ``source`` does not exist.
    """
    destination = Path(destination or entry.destination).expanduser()
    if destination.is_file() and not force and source is None:
        return destination, entry.check(destination), False
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    try:
        if source is not None:
            source = Path(source).expanduser()
            if not source.is_file():
                raise ConfigError(f"file not found: {source}", where="--from")
            shutil.copyfile(source, partial)
        else:
            try:
                _download(entry.url, partial, progress=progress, timeout=timeout)
                if entry.member:
                    _extract_member(partial, entry.member)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                reason = getattr(exc, "reason", exc)
                raise FetchError(f"could not download {entry.name} from {entry.url} ({reason})",
                                 fix=f"on a machine with internet, download that URL and save the file as exactly "
                                     f"{destination} ({entry.pinned}); or copy it here and run "
                                     f"`vbf fetch ... --from FILE`") from None
        digest = entry.check(partial)
        os.replace(partial, destination)
        return destination, digest, True
    finally:
        partial.unlink(missing_ok=True)
