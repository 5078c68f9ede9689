"""Opening an item's image for a model, the same way for every model: upright
(EXIF orientation applied, so boxes match what a browser shows), and refused
with a PermanentError when it is unreadable or too large to decode."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from shared.inference.base import PermanentError


def open_upright(file: Path, mode: str = "RGB") -> Image.Image:
    """The decoded image in `mode`. Pillow reads the header first, so that a
    decompression bomb is refused before any pixel is decoded."""
    try:
        with Image.open(file) as image:
            limit = Image.MAX_IMAGE_PIXELS
            # Pillow only warns between the limit and twice the limit; a
            # worker should not spend minutes and gigabytes there either.
            if limit is not None and image.width * image.height > limit:
                raise PermanentError(
                    f"The image is too large to process: {image.width}x{image.height} pixels "
                    f"(at most {limit})."
                )
            image.load()
            return ImageOps.exif_transpose(image).convert(mode)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PermanentError(f"The image is too large to process: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise PermanentError(f"The image cannot be read: {error}") from error
