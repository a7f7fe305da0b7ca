"""Streaming video input and output through PyAV (FFmpeg): decode frames as upright RGB uint8 with
their timestamps, re-encode processed frames with the same size, time base and timestamps, and copy
every audio stream packet for packet.

Frames are handed out upright: a clip with a display matrix (phones record sideways and tag the
rotation) is turned by multiples of 90° for processing, turned back before encoding, and the
output stream carries the input's display matrix unchanged. Only one decoded frame is held at a
time (plus what the codecs buffer), so memory does not grow with the clip's length.

    for frame in read_frames("clip.mp4"): ...                       # VideoFrame: index, rgb, pts
    transcode_video("clip.mp4", "out.mp4", lambda f: process(f.rgb))  # atomic, audio copied
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from g2face.io.images import _atomic_write, check_output_free
from g2face.types import InputError

try:  # PyAV is the optional `video` extra
    import av
except ImportError:  # pragma: no cover - exercised only without the extra
    av = None

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"})
"""Suffixes dispatched to the video path (by the CLI and by `is_video`)."""

# output suffix -> FFmpeg muxer
_MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}


class VideoReadError(InputError):
    """A video that is missing, damaged, has no video stream, or that PyAV cannot decode."""


class VideoWriteError(InputError):
    """An output video that cannot be written (unknown container, missing encoder, disk error)."""


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _require_av() -> None:
    if av is None:
        raise InputError("video needs PyAV: pip install 'g2face[video]' (or pip install av)")


@dataclass(frozen=True)
class VideoInfo:
    """What the output must keep: stored size, timing, orientation and the other streams."""

    width: int  # stored (not display) size
    height: int
    frames: int  # as the container declares it; 0 when unknown
    rate: Fraction | None  # average frame rate
    time_base: Fraction
    rotation: int  # counter-clockwise degrees the display applies (a multiple of 90)
    display_matrix: tuple[int, ...] | None  # FFmpeg's 3x3 display matrix, copied to the output
    codec: str
    audio_streams: int
    other_streams: int  # subtitle / data streams, not copied


@dataclass(frozen=True, eq=False)
class VideoFrame:
    index: int  # decode order = presentation order after the decoder's reordering
    rgb: np.ndarray  # upright RGB uint8 [H, W, 3]
    pts: int | None
    time_base: Fraction

    @property
    def time(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass(frozen=True)
class EncoderSettings:
    """How processed frames are encoded. `lossless`: libx264rgb at QP 0 (RGB kept bit for bit, for
    archives and for in-pixel payloads; large files); otherwise H.264 (libx264, yuv420p) at `crf`,
    VP9 for .webm, MPEG-4 part 2 where the FFmpeg build lacks libx264."""

    crf: int = 18
    lossless: bool = False
    preset: str = "medium"


@dataclass(frozen=True)
class TranscodeSummary:
    info: VideoInfo
    frames: int  # frames decoded, processed and encoded
    audio_packets: int  # audio packets copied
    encoder: str


def _open_input(path: Path):
    _require_av()
    if not path.is_file():
        raise VideoReadError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoReadError(f"{path}: cannot open as a video ({e})") from None
    if not container.streams.video:
        container.close()
        raise VideoReadError(f"{path}: has no video stream")
    return container


def _rotation_of(frame) -> tuple[int, tuple[int, ...] | None]:
    matrix = None
    for entry in frame.side_data:
        # PyAV up to 18.1.0 iterates the side data itself, 18.1.1 the types it is keyed by
        side = entry if hasattr(entry, "type") else frame.side_data[entry]
        if side.type == av.sidedata.sidedata.Type.DISPLAYMATRIX:
            matrix = tuple(np.frombuffer(bytes(side), dtype="<i4").tolist())
    return int(round(frame.rotation)) % 360 if matrix is not None else 0, matrix


def probe_video(path: str | Path) -> VideoInfo:
    """The clip's layout; decodes the first frame to read its display matrix."""
    path = Path(path)
    with contextlib.closing(_open_input(path)) as container:
        stream = container.streams.video[0]
        rotation, matrix = 0, None
        try:
            for frame in container.decode(stream):
                rotation, matrix = _rotation_of(frame)
                break
        except av.FFmpegError as e:
            raise VideoReadError(f"{path}: cannot decode ({e})") from None
        if rotation % 90:
            raise VideoReadError(f"{path}: rotation {rotation}° is not a multiple of 90°; not supported")
        return VideoInfo(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            frames=stream.frames or 0,
            rate=stream.average_rate,
            time_base=stream.time_base,
            rotation=rotation,
            display_matrix=matrix,
            codec=stream.codec_context.name,
            audio_streams=len(container.streams.audio),
            other_streams=len(container.streams) - 1 - len(container.streams.audio),
        )


def _upright(frame, rotation: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb


def read_frames(path: str | Path, *, limit: int | None = None) -> Iterator[VideoFrame]:
    """Every frame of the first video stream, upright, one at a time (at most `limit`)."""
    path = Path(path)
    info = probe_video(path)
    with contextlib.closing(_open_input(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream)):
                if limit is not None and index >= limit:
                    return
                yield VideoFrame(index, _upright(frame, info.rotation), frame.pts, frame.time_base)
        except av.FFmpegError as e:
            raise VideoReadError(f"{path}: decoding failed at frame {index} ({e})") from None


def _video_encoder(suffix: str, settings: EncoderSettings) -> tuple[str, dict[str, str], str]:
    """(codec, options, pixel format) for the output container."""
    if settings.lossless:
        if suffix == ".webm":
            return "libvpx-vp9", {"lossless": "1"}, "gbrp"
        return "libx264rgb", {"qp": "0", "preset": settings.preset}, "rgb24"
    if suffix == ".webm":
        return "libvpx-vp9", {"crf": str(settings.crf), "b:v": "0"}, "yuv420p"
    if "libx264" in av.codecs_available:
        return "libx264", {"crf": str(settings.crf), "preset": settings.preset}, "yuv420p"
    # MPEG-4 part 2 has no CRF: a fixed quantiser of similar quality (2 best .. 31 worst)
    return "mpeg4", {"qscale:v": str(max(2, min(31, settings.crf // 6)))}, "yuv420p"


def transcode_video(
    source: str | Path,
    target: str | Path,
    process: Callable[[VideoFrame], np.ndarray],
    *,
    encoder: EncoderSettings | None = None,
    force: bool = False,
    progress: bool = True,
) -> TranscodeSummary:
    """Decode `source`, pass every frame through `process` (upright RGB in → upright RGB of the same
    shape out), encode the results into `target` with the same size, time base, timestamps and
    display matrix, and copy every audio stream packet for packet. Subtitle and data streams are
    not copied (they may hold text naming people; `TranscodeSummary.info.other_streams` counts them).
    The output appears atomically when everything succeeded; nothing is left behind otherwise."""
    source, target = Path(source), Path(target)
    encoder = encoder or EncoderSettings()
    muxer = _MUXERS.get(target.suffix.lower())
    if muxer is None:
        raise VideoWriteError(f"{target}: cannot write '{target.suffix}' videos; use {', '.join(_MUXERS)}")
    info = probe_video(source)
    check_output_free(target, protected=[source], force=force)
    codec, options, pix_fmt = _video_encoder(target.suffix.lower(), encoder)
    counts = {"frames": 0, "audio": 0}

    def write(file: BinaryIO) -> None:
        with contextlib.closing(_open_input(source)) as inp, av.open(file, "w", format=muxer) as out:
            counts.update(_transcode(inp, out, info, process, codec, options, pix_fmt, progress))

    try:
        _atomic_write(target, write, replace=force)
    except av.FFmpegError as e:
        raise VideoWriteError(f"{target}: encoding failed ({e})") from None
    return TranscodeSummary(info, counts["frames"], counts["audio"], codec)


def _transcode(inp, out, info: VideoInfo, process, codec, options, pix_fmt, progress) -> dict[str, int]:
    video_in = inp.streams.video[0]
    video_in.thread_type = "AUTO"
    # the rate only sizes the encoder's rate control; timestamps are copied from the input frames
    video_out = out.add_stream(codec, rate=info.rate or Fraction(25), options=options)
    video_out.width, video_out.height, video_out.pix_fmt = info.width, info.height, pix_fmt
    video_out.time_base = info.time_base
    video_out.codec_context.time_base = info.time_base
    if info.display_matrix is not None:
        video_out.set_display_matrix(list(info.display_matrix))
    audio = {s.index: out.add_stream_from_template(s) for s in inp.streams.audio}
    frames = audio_packets = 0
    with tqdm(total=info.frames or None, unit="frame", disable=None if progress else True) as bar:
        for packet in inp.demux(video_in, *inp.streams.audio):
            if packet.stream.index in audio:
                if packet.dts is None:  # the demuxer's end-of-stream marker, not data
                    continue
                packet.stream = audio[packet.stream.index]
                out.mux(packet)
                audio_packets += 1
                continue
            for frame in packet.decode():
                upright = _upright(frame, info.rotation)
                processed = process(VideoFrame(frames, upright, frame.pts, frame.time_base))
                if processed.shape != upright.shape or processed.dtype != np.uint8:
                    raise ValueError(
                        f"process returned {processed.dtype} {processed.shape}, not {upright.shape}"
                    )
                stored = np.rot90(processed, -(info.rotation // 90)) if info.rotation else processed
                encoded = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="rgb24")
                encoded.pts, encoded.time_base = frame.pts, frame.time_base
                out.mux(video_out.encode(encoded))
                frames += 1
                bar.update(1)
        out.mux(video_out.encode(None))
    return {"frames": frames, "audio": audio_packets}
