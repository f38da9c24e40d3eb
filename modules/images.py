"""Decoding item images into the HxWx3 uint8 arrays programs run on."""

from __future__ import annotations

import io
import warnings

import numpy as np

from modules.errors import ExecutionError

MAX_PIXELS = 4096 * 4096


class ImageDecodeError(ExecutionError):
    """Bytes that are not a readable image (corrupt, truncated, or too large)."""


def decode_image(data: bytes) -> np.ndarray:
    """Decode PNG/JPEG/... bytes into an RGB uint8 array; ImageDecodeError says why not."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("image is empty (0 bytes)")
    try:
        # PIL checks the declared size when it opens the file: a warning past 89 megapixels,
        # DecompressionBombError past twice that. Both become this item's error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise ImageDecodeError(
                        f"image is {img.width}x{img.height}, over the {MAX_PIXELS} pixel limit")
                rgb = img.convert("RGB")
                rgb.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"image too large ({len(data)} bytes): {exc} "
                               f"(the limit is {MAX_PIXELS} pixels)") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not a readable image ({len(data)} bytes, starts {data[:8]!r})") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageDecodeError(f"corrupt image: {exc}") from None
    return np.asarray(rgb, dtype=np.uint8)
