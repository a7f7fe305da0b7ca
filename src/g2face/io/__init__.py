"""Image input and output: decoding any common image, atomic metadata-free writing, input expansion.

Crop ↔ tensor conversion lives in `g2face.nn.crops` (models use it too), so that code which only
reads and writes images (e.g. `g2face detect`) never pays for importing torch."""

from g2face.io.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    output_format,
    read_image,
    write_image,
    write_json,
)
from g2face.io.inputs import ExpandedInputs, InputFile, InputProblem, expand_inputs

__all__ = [
    "IMAGE_SUFFIXES",
    "ExpandedInputs",
    "ImageReadError",
    "ImageWriteError",
    "InputFile",
    "InputProblem",
    "LoadedImage",
    "expand_inputs",
    "output_format",
    "read_image",
    "write_image",
    "write_json",
]
