"""Image input and output: decoding any common image, atomic metadata-free writing, input expansion.

Crop ↔ tensor conversion lives in `g2face.nn.crops` (models use it too), so that code which only
reads and writes images (e.g. `g2face detect`) never pays for importing torch."""

from g2face.io.images import (
    IMAGE_SUFFIXES,
    ImageMetadataWarning,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    OutputExistsError,
    check_output_free,
    output_format,
    read_image,
    write_image,
    write_json,
)
from g2face.io.inputs import ExpandedInputs, InputFile, InputProblem, expand_inputs, printable

__all__ = [
    "IMAGE_SUFFIXES",
    "ExpandedInputs",
    "ImageMetadataWarning",
    "ImageReadError",
    "ImageWriteError",
    "InputFile",
    "InputProblem",
    "LoadedImage",
    "OutputExistsError",
    "check_output_free",
    "expand_inputs",
    "output_format",
    "printable",
    "read_image",
    "write_image",
    "write_json",
]
