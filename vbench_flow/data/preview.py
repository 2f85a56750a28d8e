"""A contact sheet of videos: tiles upscaled by nearest neighbour, each captioned beneath.

Only builds frames; the CLI writes them (e.g. as a GIF through ``write_video``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vbench_flow.errors import ConfigError

GAP = 2  # pixels between tiles and around the sheet
BORDER_RGB = (40, 40, 40)
TEXT_RGB = (235, 235, 235)
LINE_SPACING = 2


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default()


def wrap_text(text: str, width: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> list[str]:
    """Greedy word wrap to ``width`` pixels; a word wider than a line is split by characters."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        line = ""
        for ch in word:
            if line and font.getlength(line + ch) > width:
                lines.append(line)
                line = ""
            line += ch
    if line:
        lines.append(line)
    return lines


def _check(videos: list[np.ndarray], captions: list[str], columns: int, scale: int) -> None:
    if not videos:
        raise ConfigError("no videos to preview", where="make_grid")
    if len(captions) != len(videos):
        raise ConfigError(f"{len(videos)} videos but {len(captions)} captions", where="make_grid",
                          fix="pass one caption per video")
    if columns < 1 or scale < 1:
        raise ConfigError(f"columns and scale must be >= 1, got {columns} and {scale}", where="make_grid")
    for i, v in enumerate(videos):
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3 or len(v) == 0:
            raise ConfigError(f"video {i} has shape {v.shape} and dtype {v.dtype}", where="make_grid",
                              fix="pass uint8 (T, H, W, 3) arrays with T >= 1")


def make_grid(videos: list[np.ndarray], captions: list[str], columns: int = 4, scale: int = 2) -> np.ndarray:
    """Grid frames (T_max, H, W, 3) uint8; videos shorter than T_max hold their last frame.

    Every cell is as large as the largest video (times ``scale``) plus a caption band as tall
    as the longest wrapped caption; tiles sit at the top-left of their cell.
    """
    _check(videos, captions, columns, scale)
    font = _font()
    columns = min(columns, len(videos))
    rows = -(-len(videos) // columns)
    tile_h = max(v.shape[1] for v in videos) * scale
    tile_w = max(v.shape[2] for v in videos) * scale
    wrapped = [wrap_text(c, tile_w - 2, font) for c in captions]
    left, top, right, bottom = font.getbbox("Ayg|")
    line_h = bottom - min(top, 0) + LINE_SPACING
    caption_h = max(len(lines) for lines in wrapped) * line_h + LINE_SPACING
    cell_h, cell_w = tile_h + caption_h, tile_w
    height, width = rows * (cell_h + GAP) + GAP, columns * (cell_w + GAP) + GAP

    # captions are static: draw them once on a template every frame starts from
    sheet = Image.new("RGB", (width, height), BORDER_RGB)
    draw = ImageDraw.Draw(sheet)
    origins = []
    for i, lines in enumerate(wrapped):
        y0, x0 = GAP + (i // columns) * (cell_h + GAP), GAP + (i % columns) * (cell_w + GAP)
        origins.append((y0, x0))
        draw.rectangle((x0, y0 + tile_h, x0 + cell_w - 1, y0 + cell_h - 1), fill=(0, 0, 0))
        for k, line in enumerate(lines):
            draw.text((x0 + 1, y0 + tile_h + LINE_SPACING + k * line_h - min(top, 0)), line, fill=TEXT_RGB, font=font)

    t_max = max(len(v) for v in videos)
    out = np.repeat(np.asarray(sheet)[None], t_max, axis=0)
    for v, (y0, x0) in zip(videos, origins):
        held = v[np.minimum(np.arange(t_max), len(v) - 1)]
        big = held.repeat(scale, axis=1).repeat(scale, axis=2)
        out[:, y0:y0 + big.shape[1], x0:x0 + big.shape[2]] = big
    return out
