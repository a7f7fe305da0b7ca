"""Video: streaming io (timestamps, audio stream copy, rotation), the sidecar, tracking, fail-closed
anonymization and exact recovery, on a clip generated here (two faces from committed public-domain
photos moving over a synthetic background, a sine tone as audio) with the tiny random model."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest

av = pytest.importorskip("av", reason="PyAV (the `video` extra) is not installed")

from click.testing import CliRunner  # noqa: E402

from conftest import FIXTURES  # noqa: E402
from g2face.cli import cli  # noqa: E402
from g2face.detection import YuNetDetector  # noqa: E402
from g2face.io import read_image  # noqa: E402
from g2face.io.sidecar import (  # noqa: E402
    NO_FRAME,
    FrameChain,
    SidecarError,
    SidecarReader,
    frame_binding,
    sidecar_path,
    write_sidecar,
)
from g2face.io.video import EncoderSettings, probe_video, read_frames, transcode_video  # noqa: E402
from g2face.models.checkpoints import save_g2face  # noqa: E402
from g2face.models.zoo import build_model, tiny_config  # noqa: E402
from g2face.payload import Secret, kdf  # noqa: E402
from g2face.payload.carriers import open_container, seal_regions  # noqa: E402
from g2face.pipeline.g2face import G2FacePipeline, UnverifiedRecoveryError  # noqa: E402
from g2face.types import FaceDetection  # noqa: E402
from g2face.video import DummyPolicy, FaceTracker, VideoAnonymizer, anonymize_video, recover_video  # noqa: E402
from g2face.video.clips import GeometrySmoother, is_small_face, landmarks_covered  # noqa: E402

W, H, FPS, N = 320, 240, 25, 48
HIDDEN_FROM = 20  # the second face leaves the picture at this frame
FACE = 96


def _face_patch(path, size: int) -> np.ndarray:
    import cv2

    rgb = read_image(path).rgb
    (x0, y0, x1, y1) = YuNetDetector().detect(rgb)[0].box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, 1.5 * max(x1 - x0, y1 - y0)
    crop = rgb[
        int(max(0, cy - side / 2)) : int(cy + side / 2), int(max(0, cx - side / 2)) : int(cx + side / 2)
    ]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _background(i: int) -> np.ndarray:
    x = np.linspace(0, 1, W)[None, :, None]
    y = np.linspace(0, 1, H)[:, None, None]
    base = 60 + 80 * x + 40 * y + 20 * np.sin(6.28 * (x * 3 + i / N))
    return np.broadcast_to(base * np.array([1.0, 0.9, 0.7]), (H, W, 3)).astype(np.uint8)


def _frame(i: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    frame = _background(i).copy()
    ax, ay = 10 + 2 * i, 40
    frame[ay : ay + FACE, ax : ax + FACE] = a
    if i < HIDDEN_FROM:
        bx, by = 210 - i, 120
        frame[by : by + FACE, bx : bx + FACE] = b
    return frame


def write_test_clip(path) -> None:
    """48 frames 320x240 at 25 fps (H.264) with a 440 Hz AAC tone (also what docs/video.md measures
    as "the generated clip")."""
    a = _face_patch(FIXTURES / "grace_hopper.jpg", FACE)
    b = _face_patch(FIXTURES / "obama.jpg", FACE)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "12"})
        video.width, video.height, video.pix_fmt = W, H, "yuv420p"
        audio = out.add_stream("aac", rate=16000)
        for i in range(N):
            frame = av.VideoFrame.from_ndarray(_frame(i, a, b), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        t = np.arange(16000 * N // FPS) / 16000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, tone.size, 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start : start + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = 16000, start
            out.mux(audio.encode(chunk))
        out.mux(video.encode(None))
        out.mux(audio.encode(None))


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_test_clip(path)
    return path


@pytest.fixture(scope="module")
def pipeline() -> G2FacePipeline:
    return G2FacePipeline(build_model(tiny_config()))


@pytest.fixture(scope="module")
def secret() -> Secret:
    return Secret(bytes(range(32)), "key")


@pytest.fixture(scope="module")
def anonymized(tmp_path_factory, clip, pipeline, secret):
    out = tmp_path_factory.mktemp("anon") / "anon.mp4"
    report = anonymize_video(pipeline, clip, out, secret, progress=False)
    return out, report


def _audio_packets(path):
    with av.open(str(path)) as c:
        return [(p.pts, p.dts, bytes(p)) for p in c.demux(c.streams.audio[0]) if p.dts is not None]


def _pts(path):
    return [f.pts for f in read_frames(path)]


def test_output_keeps_frames_timestamps_and_audio_bit_for_bit(clip, anonymized):
    out, report = anonymized
    assert report.frames == N and _pts(out) == _pts(clip)
    assert probe_video(out).time_base == probe_video(clip).time_base
    original_audio = _audio_packets(clip)
    assert original_audio and _audio_packets(out) == original_audio
    assert report.audio_packets == len(original_audio)


def test_every_detected_face_is_anonymized_with_stable_tracks(clip, anonymized):
    out, report = anonymized
    detector = YuNetDetector()
    for original, result in zip(read_frames(clip), read_frames(out), strict=True):
        for face in detector.detect(original.rgb):
            x0, y0, x1, y1 = (int(v) for v in face.box)
            change = np.abs(original.rgb[y0:y1, x0:x1].astype(int) - result.rgb[y0:y1, x0:x1]).mean()
            assert change > 8, f"frame {original.index}: face at {face.box} unchanged ({change:.1f})"
    # one track per person: A in every frame, B until it leaves (a few missed detections allowed)
    assert len(report.tracks) == 2
    a, b = sorted(report.tracks, key=lambda t: -t["frames_detected"])
    assert a["frames_detected"] >= N - 3 and a["first_frame"] == 0
    assert HIDDEN_FROM - 3 <= b["frames_detected"] <= HIDDEN_FROM


def test_a_lost_face_is_blurred_and_reported(anonymized):
    _, report = anonymized
    lost = [e for e in report.fail_closed if e["reason"] == "track lost"]
    frames = sorted(e["frame"] for e in lost)
    # predicted for 5 frames after it left, then covered for 10 more and reported
    assert frames == list(range(HIDDEN_FROM + 5, HIDDEN_FROM + 15))
    assert all(e["time"] == pytest.approx(e["frame"] / FPS) for e in lost)


def test_sidecar_recovery_restores_face_regions_exactly(tmp_path, clip, anonymized, pipeline, secret):
    out, _ = anonymized
    back = tmp_path / "back.mkv"
    report = recover_video(
        pipeline, out, back, secret, sidecar=sidecar_path(out), encoder=EncoderSettings(lossless=True),
        progress=False,
    )  # fmt: skip
    assert report.recovery["exact_frames"] == N
    # Matroska shifts the AAC priming packet's negative timestamp to 0; the packets are the same bytes
    assert [p[2] for p in _audio_packets(back)] == [p[2] for p in _audio_packets(clip)]
    with SidecarReader(sidecar_path(out)) as sidecar:
        for original, restored in zip(read_frames(clip), read_frames(back), strict=True):
            opened = open_container(
                sidecar.get(original.index), secret, associated_data=sidecar.binding(original.index)
            )
            for region in opened.regions:
                x0, y0, x1, y1 = region.box
                np.testing.assert_array_equal(
                    restored.rgb[y0:y1, x0:x1][region.mask], original.rgb[y0:y1, x0:x1][region.mask]
                )


def _rewrite_sidecar(source, target, secret, *, swap=(), drop=(), end=True, version=3):
    """A copy of a sidecar with the containers of the frames in `swap` exchanged and the records of
    `drop` left out (their neighbours' containers untouched, as a deletion would leave them),
    without its end record unless `end`; or every container sealed again as an older release
    wrote it: version 1 without a frame binding, version 2 bound to its frame but not chained."""
    with SidecarReader(source) as reader:
        header = {k: v for k, v in reader.header.items() if k != "clip_id"}
        blobs = {i: reader.get(i) for i in reader.frames}
        previous = {i: reader._previous[i] for i in reader.frames}
        clip_id, end_record, end_names = reader.clip_id, reader.end_record(), reader.end[0]
        if version < 3:
            for i, blob in blobs.items():
                opened = open_container(blob, secret, associated_data=reader.binding(i))
                binding = frame_binding(clip_id, i) if version == 2 else b""
                blobs[i] = seal_regions(opened.regions, secret, opened.image_shape, associated_data=binding)
    if swap:
        a, b = swap
        blobs[a], blobs[b] = blobs[b], blobs[a]
    frames = [i for i in sorted(blobs) if i not in drop]
    if version == 3:
        encoded = json.dumps(header | {"clip_id": clip_id.hex()}, sort_keys=True).encode()
        records = b"".join(struct.pack(">III", i, previous[i], len(blobs[i])) + blobs[i] for i in frames)
        if end:
            blob, _ = end_record
            records += struct.pack(">III", NO_FRAME, end_names, len(blob)) + blob
    else:
        encoded = json.dumps(header | ({"clip_id": clip_id.hex()} if version == 2 else {})).encode()
        records = b"".join(struct.pack(">II", i, len(blobs[i])) + blobs[i] for i in frames)
    target.write_bytes(b"G2FV" + bytes([version]) + struct.pack(">I", len(encoded)) + encoded + records)


def test_sidecar_records_are_bound_to_their_frame(tmp_path, anonymized, pipeline, secret):
    out, _ = anonymized
    swapped = tmp_path / "swapped.g2face"
    _rewrite_sidecar(sidecar_path(out), swapped, secret, swap=(3, 4))
    report = recover_video(pipeline, out, tmp_path / "back.mp4", secret, sidecar=swapped, progress=False)
    assert report.recovery["damaged_frames"] == 2 and report.recovery["exact_frames"] == N - 2
    assert sorted(e["frame"] for e in report.fail_closed) == [3, 4]
    assert all("another place" in e["reason"] for e in report.fail_closed)


def test_a_removed_sidecar_record_is_reported_not_skipped(tmp_path, anonymized, pipeline, secret):
    """Version 3 chains the records: a record deleted from the middle or the end, or a sidecar cut
    before its end record, is reported (that frame stays anonymized), never silently passed over."""
    out, _ = anonymized
    cut = tmp_path / "cut.g2face"
    _rewrite_sidecar(sidecar_path(out), cut, secret, drop=(5, N - 1))
    report = recover_video(pipeline, out, tmp_path / "back.mp4", secret, sidecar=cut, progress=False)
    assert report.recovery["damaged_frames"] == 2 and report.recovery["exact_frames"] == N - 2
    assert report.recovery["sidecar_complete"] is True
    assert sorted(e["frame"] for e in report.fail_closed) == [5, N - 1]
    assert all("record was removed" in e["reason"] for e in report.fail_closed)
    _rewrite_sidecar(sidecar_path(out), cut, secret, end=False)
    report = recover_video(pipeline, out, tmp_path / "back2.mp4", secret, sidecar=cut, progress=False)
    assert report.recovery["exact_frames"] == N and report.recovery["sidecar_complete"] is False
    assert [e["frame"] for e in report.fail_closed] == [None]
    assert "end record" in report.fail_closed[0]["reason"]


def test_the_record_chain_names_each_record_s_predecessor(tmp_path, secret):
    """`FrameChain` seals in frame order what `SidecarWriter` writes; the reader opens each record
    with the predecessor its header names and finds the gaps a deletion leaves."""
    clip_id = bytes(16)
    chain = FrameChain(clip_id)

    def seal(binding):
        return seal_regions([], secret, (2, 2, 3), associated_data=binding)

    def fill(writer):
        for frame in (0, 3, 4, 9):
            writer.add(frame, seal(chain.binding(frame)))

    path = tmp_path / "x.g2face"
    write_sidecar(path, {"width": 2, "height": 2}, clip_id, fill, seal)
    with SidecarReader(path) as reader:
        assert reader.version == 3 and reader.frames == [0, 3, 4, 9] and reader.removed() == {}
        for frame in reader.frames:
            open_container(reader.get(frame), secret, associated_data=reader.binding(frame))
        blob, binding = reader.end_record()
        open_container(blob, secret, associated_data=binding)
    with pytest.raises(ValueError, match="must increase"):
        chain.binding(9)


def test_a_version_2_sidecar_is_still_read(tmp_path, anonymized, pipeline, secret):
    out, _ = anonymized
    old = tmp_path / "v2.g2face"
    _rewrite_sidecar(sidecar_path(out), old, secret, version=2)
    report = recover_video(pipeline, out, tmp_path / "back.mp4", secret, sidecar=old, progress=False)
    assert report.recovery["exact_frames"] == N and "sidecar_complete" not in report.recovery
    assert report.fail_closed == []


def test_an_unbound_version_1_sidecar_is_still_read(tmp_path, anonymized, secret):
    out, _ = anonymized
    old = tmp_path / "old.g2face"
    _rewrite_sidecar(sidecar_path(out), old, secret, version=1)
    with SidecarReader(old) as reader, SidecarReader(sidecar_path(out)) as bound:
        assert reader.version == 1 and reader.frames == bound.frames
        for i in reader.frames:  # recover_video opens each record exactly this way
            assert reader.binding(i) == b""
            opened = open_container(reader.get(i), secret, associated_data=reader.binding(i))
            assert opened.regions


def test_wrong_secret_recovers_nothing(tmp_path, anonymized, pipeline):
    out, _ = anonymized
    target = tmp_path / "back.mp4"
    with pytest.raises(UnverifiedRecoveryError, match="wrong password"):
        recover_video(
            pipeline, out, target, Secret(b"x" * 32, "key"), sidecar=sidecar_path(out), progress=False
        )
    assert list(tmp_path.iterdir()) == []


def test_damaged_sidecar_is_one_line_error(tmp_path):
    bad = tmp_path / "x.g2face"
    bad.write_bytes(b"G2FV\x01\x00\x00\x00\x02{}" + b"\x00\x00\x00\x01\x00\x00\x01\x00abc")
    with pytest.raises(SidecarError, match="truncated"):
        SidecarReader(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(SidecarError, match="not a g2face video sidecar"):
        SidecarReader(bad)


def test_rotation_metadata_is_kept_and_frames_come_upright(tmp_path):
    source = tmp_path / "rotated.mp4"
    stored = np.zeros((48, 64, 3), np.uint8)
    stored[:8, :] = 255  # a white band along the stored top edge
    with av.open(str(source), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={"crf": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.set_display_rotation(90)
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    seen = []
    target = tmp_path / "copy.mp4"
    transcode_video(source, target, lambda f: seen.append(f.rgb.shape) or f.rgb, progress=False)
    assert seen == [(64, 48, 3)] * 3  # upright: rotated by 90° for processing
    assert probe_video(target).rotation == 90
    first = next(read_frames(target)).rgb
    assert first[:, :6].mean() > 200 and first[:, -6:].mean() < 50  # band on the upright left edge


def test_tracker_keeps_ids_and_predicts_through_a_gap():
    def det(x: float) -> FaceDetection:
        pts = ((x + 10, 20), (x + 30, 20), (x + 20, 30), (x + 12, 40), (x + 28, 40))
        return FaceDetection((x, 0, x + 40, 50), pts, 0.9)

    tracker = FaceTracker(25.0, max_predicted=2, max_lost=1)
    for i in range(5):
        faces = tracker.update([det(3.0 * i), det(200 - 3.0 * i)], i).faces
        assert sorted(f.track.id for f in faces) == [0, 1]
    states = [tracker.update([det(15.0)], 5 + k).faces for k in range(4)]
    gone = [[f.state for f in frame if f.track.id == 1] for frame in states]
    assert gone == [["predicted"], ["predicted"], ["lost"], []]
    predicted = next(f for f in states[0] if f.track.id == 1).detection
    assert predicted.box[0] < 200 - 12  # kept moving left


def test_cli_video_round_trip(tmp_path, clip, pipeline, secret):
    weights = tmp_path / "tiny.safetensors"
    save_g2face(pipeline.model.net, weights)
    key = tmp_path / "key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    runner = CliRunner()
    out, report = tmp_path / "anon.mkv", tmp_path / "report.json"
    common = ["--model", str(weights), "--key-file", str(key)]
    result = runner.invoke(
        cli,
        [
            "anonymize",  # the top-level command dispatches a single clip to the video path
            str(clip),
            "-o",
            str(out),
            "--method",
            "blur",
            "--report",
            str(report),
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text())
    assert document["frames"] == N and document["details"]["method"] == "blur"
    assert any(e["reason"] == "track lost" for e in document["fail_closed"])
    back = tmp_path / "back.mkv"
    result = runner.invoke(cli, ["video", "recover", str(out), "-o", str(back), *common])
    assert result.exit_code == 0, result.output
    assert f"{N} frames restored exactly" in result.output and back.is_file()
    result = runner.invoke(cli, ["recover", str(out), "-o", str(tmp_path / "again.mkv"), *common])
    assert result.exit_code == 0 and f"{N} frames restored exactly" in result.output, result.output


def test_a_track_keeps_the_dummy_its_first_frame_chose(clip, secret):
    """The candidate search runs once per track (its first frame, from the keyed track seed); every
    later frame renders the chosen seed as is (search=False)."""
    pipe = G2FacePipeline(build_model(tiny_config()))
    calls = []
    render = pipe.model.anonymize

    def choosing(crops, secret, *, seeds=None, search=True, **kwargs):
        calls.append((tuple(seeds), search))
        if search:  # stands in for a search that keeps another candidate than the keyed seed
            seeds = [s ^ 1 for s in seeds]
        return render(crops, secret, seeds=seeds, search=search, **kwargs)

    pipe.model.anonymize = choosing
    video = VideoAnonymizer(pipe, secret, seal=False)
    for frame in read_frames(clip, limit=6):
        video.process(frame.rgb, frame.index)
    keyed = {video.track_seed(k) for k in (0, 1)}
    searched = [seeds for seeds, search in calls if search]
    assert sorted(s for seeds in searched for s in seeds) == sorted(keyed)  # once per track
    rendered = {s for seeds, search in calls if not search for s in seeds}
    assert rendered == {s ^ 1 for s in keyed} == set(video.dummy_seeds.values())
    assert len(calls) >= 6


def test_a_track_whose_fake_misses_the_model_goals_is_listed_for_review(tmp_path, clip, secret):
    """Face-frames whose fake misses some of the model's goals (`AnonymizedFaces.shortfalls`) are
    counted per track, the first one's reasons given, in the report and the CLI's summary."""
    import dataclasses

    from g2face.cli.video import _to_review

    pipe = G2FacePipeline(build_model(tiny_config()))
    render = pipe.model.anonymize

    def falling_short(crops, secret, **kwargs):
        result = render(crops, secret, **kwargs)
        return dataclasses.replace(result, shortfalls=tuple(("glasses added",) for _ in result.dummy_seeds))

    pipe.model.anonymize = falling_short
    report = anonymize_video(pipe, clip, tmp_path / "out.mp4", secret, sidecar=False, progress=False)
    assert len(report.tracks) == 2
    for track in report.tracks:
        assert track["review"] == ["glasses added"]
        assert 1 <= track["frames_to_review"] <= track["frames_detected"] + track["frames_predicted"]
    summary = _to_review(report.tracks)
    assert summary.startswith("; to review (see the report): track ") and summary.count("frames)") == 2
    assert _to_review([{"id": 0, "frames_to_review": 0}]) == ""


def test_bench_video_times_frames_and_face_frames(tmp_path, clip, pipeline):
    weights = tmp_path / "tiny.safetensors"
    save_g2face(pipeline.model.net, weights)
    out = tmp_path / "bench.json"
    args = ["bench", "--video", str(clip), "--model", str(weights), "--frames", "4", "--height", "120"]
    result = CliRunner().invoke(cli, [*args, "--json", str(out)])
    assert result.exit_code == 0, result.output
    timed = json.loads(out.read_text())["video"]
    assert timed["frames"] == 4 and timed["size"] == [160, 120] and timed["scaled_from"] == [W, H]
    assert timed["face_frames"] >= 4 and timed["search_frames"] >= 1  # the first frame searches
    assert timed["frames_per_second"] > 0 and "frames/s" in result.output


def test_a_face_the_smoothed_place_misses_is_covered_and_reported(secret):
    """A tracked face whose smoothed place lies off its detection (here the filter is forced one
    face width to the left and frozen) is blurred at the detection and reported."""
    frame = _background(0).copy()
    frame[60 : 60 + FACE, 150 : 150 + FACE] = _face_patch(FIXTURES / "grace_hopper.jpg", FACE)
    video = VideoAnonymizer(G2FacePipeline(build_model(tiny_config())), secret, seal=False)
    video.tracker.reset_iou = 0.0  # never restart the filter at the detection
    assert not video.process(frame, 0).fail_closed
    track = video.tracker.tracks[0]
    track.filter.value = track.filter.value - np.tile([track.detection.width, 0.0], 7)
    track.filter.min_cutoff = track.filter.beta = 1e-9  # frozen there
    second = video.process(frame, 1)
    assert [e["reason"] for e in second.fail_closed] == ["anonymized place missed the detected face"]
    assert all(landmarks_covered(second.covered, d) for d in YuNetDetector().detect(frame))
    assert [f["track"] for f in second.faces] == [0]


def test_the_tracker_restarts_its_filter_after_a_jump():
    def det(x: float) -> FaceDetection:
        pts = ((x + 10, 20), (x + 30, 20), (x + 20, 30), (x + 12, 40), (x + 28, 40))
        return FaceDetection((x, 0, x + 40, 50), pts, 0.9)

    tracker = FaceTracker(25.0)
    for i in range(5):
        tracker.update([det(0.0)], i)
    sluggish = tracker.tracks[0].filter
    sluggish.min_cutoff = sluggish.beta = 1e-3  # would lag far behind the jump
    jumped = tracker.update([det(20.0)], 5).faces[0]  # half a face width in one frame: IoU 0.33
    assert jumped.track.id == 0 and jumped.detection.box == det(20.0).box


def _scripted_similarity(pipe: G2FacePipeline, first: float, searched_again: dict[int, float], calls: list):
    """Make the tiny model report identity cosines: every render of a track's first dummy `first`,
    a dummy found by a re-search the value `searched_again` gives for its keyed start seed."""
    render = pipe.model.anonymize
    chosen: dict[int, float] = {}  # rendered seed -> its cosine

    def scripted(crops, secret, *, seeds=None, search=True, **kwargs):
        calls.append((tuple(seeds), search))
        out = render(crops, secret, seeds=seeds, search=search, **kwargs)
        values = []
        for seed in seeds:
            if search:
                chosen[seed] = searched_again.get(seed, first)
            values.append(chosen[seed])
        return dataclasses.replace(out, similarities=tuple(values))

    pipe.model.anonymize = scripted


@pytest.mark.parametrize("found", [0.2, 0.58])
def test_a_track_above_the_bound_searches_again_and_switches_only_to_a_further_dummy(clip, secret, found):
    """Both tracks stay at cosine 0.6 > 0.3: after 3 frames each searches again from its next keyed
    seed; it switches (from the next frame on) only when the new dummy is further from the original
    by `min_gain`, at most `max_re_searches` times, and every search is reported."""
    pipe = G2FacePipeline(build_model(tiny_config()))
    calls: list = []
    video = VideoAnonymizer(
        pipe,
        secret,
        seal=False,
        dummies=DummyPolicy(re_search_after=3, max_re_searches=2, max_similarity=0.3),
    )
    retries = {video.track_seed(k, n): found for k in (0, 1) for n in (1, 2)}
    _scripted_similarity(pipe, 0.6, retries, calls)
    events = []
    for frame in read_frames(clip, limit=10):
        calls.clear()
        events += video.process(frame.rgb, frame.index).re_searches
    switched = found == 0.2
    assert [(e["frame"], e["attempt"], e["switched"]) for e in events if e["track"] == 0] == (
        [(2, 1, True)] if switched else [(2, 1, False), (5, 2, False)]
    )
    assert all(e["similarity_before"] == 0.6 and e["similarity_after"] == found for e in events)
    first = video.track_seed(0)
    later = {s for seeds, search in calls for s in seeds}  # frame 9: both tracks rendered as chosen
    assert not any(search for _, search in calls)
    assert (video.track_seed(0, 1) in later) == switched and (first in later) != switched
    assert video.re_searches[0] == (1 if switched else 2) and video.switches.get(0, 0) == switched


def test_small_faces_get_the_filter_and_no_dummy_search(clip, secret):
    pipe = G2FacePipeline(build_model(tiny_config()))
    calls: list = []
    _scripted_similarity(pipe, 0.6, {}, calls)
    video = VideoAnonymizer(
        pipe, secret, seal=False, dummies=DummyPolicy(min_face=10 * FACE, max_similarity=0.3)
    )
    for frame in read_frames(clip, limit=4):
        result = video.process(frame.rgb, frame.index)
        assert {f["method"] for f in result.faces} == {"blur"} and not result.re_searches
        assert all(landmarks_covered(result.covered, d) for d in YuNetDetector().detect(frame.rgb))
    assert calls == [] and video.dummy_seeds == {} and video.small_face_frames == {0: 4, 1: 4}


def test_a_small_face_stays_filtered_until_clearly_above_the_threshold():
    assert is_small_face(39, 40, was_small=False) and not is_small_face(41, 40, was_small=False)
    assert is_small_face(45, 40, was_small=True) and not is_small_face(47, 40, was_small=True)


def test_cli_small_face_filter_is_reported(tmp_path, clip, pipeline):
    from g2face.cli.video import MAX_RE_SEARCHES, MIN_FACE, TRACK_CANDIDATES

    assert (DummyPolicy.min_face, DummyPolicy.max_re_searches) == (MIN_FACE, MAX_RE_SEARCHES)
    assert DummyPolicy.track_candidates == TRACK_CANDIDATES
    weights = tmp_path / "tiny.safetensors"
    save_g2face(pipeline.model.net, weights)
    key = tmp_path / "key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    out, report = tmp_path / "anon.mp4", tmp_path / "report.json"
    args = ["video", "anonymize", str(clip), "-o", str(out), "--model", str(weights), "--key-file", str(key)]
    options = [
        "--min-face",
        str(10 * FACE),
        "--small-faces",
        "pixelate",
        "--no-container",
        "--report",
        str(report),
    ]
    result = CliRunner().invoke(cli, [*args, *options])
    assert result.exit_code == 0, result.output
    document = json.loads(report.read_text())
    assert document["details"]["dummies"]["min_face"] == 10 * FACE
    assert sum(t["frames_small_face_filter"] for t in document["tracks"]) == document["face_frames"] > 0
    assert "small ones with the pixelate filter" in result.output


class _RegionScripted:
    """Stands in for a geometric-fusion model around the tiny one: `with_fusion(render_only=...)`
    gives a view, and track 0's render needs the whole face region from frame `turn` on (as the
    model's anonymity fallback reports for a head turn), track 1's never."""

    def __init__(self, inner, calls: list, turn: int, whole_seeds: set, render_only: bool = True):
        self.inner, self.calls, self.turn, self.whole_seeds = inner, calls, turn, whole_seeds
        self.render_only, self.frame = render_only, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_candidates(self, **changes):
        return self

    def with_fusion(self, **changes):
        view = _RegionScripted(self.inner, self.calls, self.turn, self.whole_seeds, **changes)
        view.frame_of = self.frame_of
        return view

    def anonymize(self, crops, secret, *, seeds=None, search=True, **kwargs):
        out = self.inner.anonymize(crops, secret, seeds=seeds, search=search, **kwargs)
        frame = self.frame_of()
        self.calls.append((frame, tuple(out.dummy_seeds), self.render_only))
        whole = tuple(
            not self.render_only or (s in self.whole_seeds and frame >= self.turn) for s in out.dummy_seeds
        )
        return dataclasses.replace(out, whole_region=whole)


def test_a_track_that_needed_the_whole_region_once_keeps_it(clip, secret):
    """The fusion model's anonymity fallback (the whole face region replaced) decided per frame
    switched a turning head's face shape back and forth; once a track needed it, every later frame
    renders it that way, and the frame report says so. Other tracks are untouched."""
    pipe = G2FacePipeline(build_model(tiny_config()))
    calls: list = []
    frame_index = [0]
    video = VideoAnonymizer(pipe, secret, seal=False)
    first_seed = video.track_seed(0)
    model = _RegionScripted(pipe.model, calls, turn=3, whole_seeds={first_seed})
    model.frame_of = lambda: frame_index[0]
    pipe.model = model
    video = VideoAnonymizer(pipe, secret, seal=False, clip_salt=video.clip_salt)
    reported = []
    for frame in read_frames(clip, limit=8):
        frame_index[0] = frame.index
        result = video.process(frame.rgb, frame.index)
        reported.append({f["track"]: f.get("whole_region", False) for f in result.faces})
    assert video.whole_region_tracks == {0}
    track0 = [(frame, render_only) for frame, seeds, render_only in calls if first_seed in seeds]
    assert all(render_only for frame, render_only in track0 if frame <= 3)
    assert all(not render_only for frame, render_only in track0 if frame > 3)  # sticky from then on
    assert [r[0] for r in reported] == [False] * 3 + [True] * 5
    assert not any(r.get(1) for r in reported)


class _TurnScripted:
    """Stands in for a geometric-fusion model around the tiny one that reports every face as turned
    too far to render (`AnonymizedFaces.fallbacks`) before frame `turn`."""

    def __init__(self, inner, calls: list, turn: int):
        self.inner, self.calls, self.turn = inner, calls, turn

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def with_candidates(self, **changes):
        return self

    def with_fusion(self, **changes):
        return self

    def anonymize(self, crops, secret, *, seeds=None, search=True, **kwargs):
        from g2face.models.base import Fallback

        out = self.inner.anonymize(crops, secret, seeds=seeds, search=search, **kwargs)
        frame = self.frame_of()
        self.calls.append((frame, search))
        if frame >= self.turn:
            return out
        return dataclasses.replace(out, fallbacks=(Fallback("blur", "turned 60 degrees"),) * len(out.salts))


def test_a_track_turned_too_far_to_render_chooses_its_dummy_once_it_turns_back(clip, secret):
    """Frames where the model filtered a face it cannot render (turned away) choose no dummy: the
    track searches on its first rendered frame, and the report counts the filtered frames."""
    pipe = G2FacePipeline(build_model(tiny_config()))
    calls: list = []
    frame_index = [0]
    model = _TurnScripted(pipe.model, calls, turn=3)
    model.frame_of = lambda: frame_index[0]
    pipe.model = model
    video = VideoAnonymizer(pipe, secret, seal=False)
    for frame in read_frames(clip, limit=6):
        frame_index[0] = frame.index
        result = video.process(frame.rgb, frame.index)
        assert {f["method"] for f in result.faces} == ({"blur"} if frame.index < 3 else {"g2face"})
    assert video.turned_face_frames == {0: 3, 1: 3} and video.small_face_frames == {}
    assert {frame for frame, _ in calls} == set(range(6))
    assert all(search for frame, search in calls if frame <= 3)  # no dummy chosen before frame 3
    assert not any(search for frame, search in calls if frame > 3)
    assert set(video.dummy_seeds) == {0, 1}


class _YawScripted:
    """Stands in for a geometric-fusion model around the tiny one whose faces are turned by
    `yaws[frame]` degrees: beyond its `fusion.max_yaw` it reports the turned-face fallback."""

    def __init__(self, inner, yaws: list[float], frame_of, fusion=None):
        from g2face.models.fusion import FusionSettings

        self.inner, self.yaws, self.frame_of = inner, yaws, frame_of
        self.fusion = fusion or FusionSettings(max_yaw=40.0)

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def with_candidates(self, **changes):
        return self

    def with_fusion(self, **changes):
        return _YawScripted(self.inner, self.yaws, self.frame_of, dataclasses.replace(self.fusion, **changes))

    def anonymize(self, crops, secret, *, seeds=None, search=True, **kwargs):
        from g2face.models.base import Fallback

        out = self.inner.anonymize(crops, secret, seeds=seeds, search=search, **kwargs)
        if self.yaws[self.frame_of()] <= self.fusion.max_yaw:
            return out
        return dataclasses.replace(out, fallbacks=(Fallback("blur", "turned"),) * len(out.salts))


@pytest.mark.parametrize(
    ("hysteresis", "expected"),
    [
        (5.0, ["g2face", "blur", "blur", "blur", "g2face", "g2face"]),
        (0.0, ["g2face", "blur", "g2face", "g2face", "g2face", "g2face"]),
    ],
)
def test_a_head_held_near_the_yaw_bound_does_not_flip(clip, secret, hysteresis, expected):
    """Once filtered as turned too far (beyond 40°), a track is rendered again only below
    40° - `DummyPolicy.turned_hysteresis`; a track that was rendered keeps 40° as its bound."""
    yaws = [38.0, 42.0, 38.0, 36.0, 34.0, 38.0]
    pipe = G2FacePipeline(build_model(tiny_config()))
    frame_index = [0]
    pipe.model = _YawScripted(pipe.model, yaws, lambda: frame_index[0])
    video = VideoAnonymizer(pipe, secret, seal=False, dummies=DummyPolicy(turned_hysteresis=hysteresis))
    methods = []
    for frame in read_frames(clip, limit=len(yaws)):
        frame_index[0] = frame.index
        result = video.process(frame.rgb, frame.index)
        methods.append({f["method"] for f in result.faces})
    assert methods == [{m} for m in expected]
    assert video.turned_face_frames == {0: expected.count("blur"), 1: expected.count("blur")}


@pytest.fixture(scope="module")
def blur_pipeline() -> G2FacePipeline:
    from g2face.models.classic import ClassicAnonymizer

    return G2FacePipeline(ClassicAnonymizer("blur", build_model(tiny_config())))


def test_a_track_carries_one_payload_on_every_frame(clip, blur_pipeline, secret):
    """With the in-pixel payload, a track's later frames carry the bits its first frame carried
    (not a fresh payload per frame)."""
    calls = []
    anonymize = blur_pipeline.anonymize

    def spy(*args, **kwargs):
        result = anonymize(*args, **kwargs)
        calls.append((kwargs["payload_bits"], [f.payload_bits for f in result.faces]))
        return result

    video = VideoAnonymizer(blur_pipeline, secret, seal=False, pixel_payload=True)
    video.pipeline.anonymize = spy  # the anonymizer's own copy of the pipeline
    for frame in read_frames(clip, limit=4):
        video.process(frame.rgb, frame.index)
    assert set(video.track_payloads) == {0, 1}
    first_given, first_carried = calls[0]
    assert first_given == [None, None]  # first frame: the model's own payloads, recorded
    for given, carried in calls[1:]:
        assert all(g is not None for g in given)
        assert [c.tolist() for c in carried] == [g.tolist() for g in given]
    assert [c.tolist() for c in first_carried] == [video.track_payloads[t].tolist() for t in (0, 1)]


def test_clip_without_sidecar_recovers_tracks_from_their_payloads(tmp_path, clip, blur_pipeline, secret):
    """Lossy H.264 keeps a track's one payload in some of its frames: the reading pass decodes each
    track, and every face-frame is rendered back with its own payload or its track's. (CRF 12: this
    clip's faces are ~60 px wide, half the width the payload is sized for.)"""
    out = tmp_path / "anon.mp4"
    anonymize_video(
        blur_pipeline,
        clip,
        out,
        secret,
        sidecar=False,
        pixel_payload=True,
        encoder=EncoderSettings(crf=12),
        progress=False,
    )
    back = tmp_path / "back.mp4"
    report = recover_video(blur_pipeline, out, back, secret, progress=False)
    counts = report.recovery
    assert counts["path"] == "identity (in-pixel)" and back.is_file()
    # both people's tracks (a fresh clip salt each run: once in a clean-clone run of session 37 the
    # reading pass split one track in two, each recovered from its payload, and counted 3)
    assert counts["tracks_recovered"] >= 2
    assert counts["identity_faces"] == counts["own_payload_faces"] + counts["track_payload_faces"]
    assert counts["identity_faces"] >= N + HIDDEN_FROM - 6  # both faces while detected
    with pytest.raises(UnverifiedRecoveryError, match="wrong password"):
        recover_video(blur_pipeline, out, tmp_path / "wrong.mp4", Secret(b"x" * 32, "key"), progress=False)
    assert not (tmp_path / "wrong.mp4").exists()


def test_a_password_is_stretched_once_per_clip_not_per_frame(clip, blur_pipeline):
    """Every frame's payloads and sidecar container share the clip's image salt: the memory-hard
    KDF runs for it once (and once for the clip's dummy seeds), however many frames are sealed."""
    secret = Secret.from_password("a long enough test password")
    video = VideoAnonymizer(blur_pipeline, secret, seal=True, pixel_payload=True)
    containers = [video.process(frame.rgb, frame.index).container for frame in read_frames(clip, limit=3)]
    assert all(c is not None for c in containers)
    stretched = {salt for kdf_id, salt in secret._derived if kdf_id == kdf.PASSWORD_KDF_ID}
    assert stretched == {video.image_salt, video.clip_salt[: len(video.image_salt)]}


def test_cli_pixel_payload_recovers_a_clip_without_its_sidecar(tmp_path, clip, pipeline):
    weights = tmp_path / "tiny.safetensors"
    save_g2face(pipeline.model.net, weights)
    key = tmp_path / "key"
    key.write_bytes(bytes(range(32)))
    key.chmod(0o600)
    common = ["--model", str(weights), "--key-file", str(key)]
    out, back = tmp_path / "anon.mp4", tmp_path / "back.mp4"
    runner = CliRunner()
    args = ["video", "anonymize", str(clip), "-o", str(out), "--method", "blur", "--no-container"]
    result = runner.invoke(cli, [*args, "--pixel-payload", "--crf", "12", *common])
    assert result.exit_code == 0, result.output
    assert not sidecar_path(out).exists()
    result = runner.invoke(cli, ["video", "recover", str(out), "-o", str(back), *common])
    assert result.exit_code == 0, result.output
    assert "from their track's; 2 tracks)" in result.output and back.is_file()


def test_a_tracks_geometry_is_smoothed_per_dummy_seed_and_follows_a_real_change():
    """`GeometrySmoother`: per seed, a steady vector comes back as it is, frame-to-frame jitter is
    damped, a lasting change (a smile, a head turn) is reached within a few frames, and two seeds
    (two tracks) never mix."""
    import torch

    rng = np.random.default_rng(0)
    smoother = GeometrySmoother(rate=25.0)
    base = torch.tensor([0.3, 0.1, 0.0, 5.0, -3.0, 1.0])  # (shape, expression ..., yaw, pitch, roll)
    other = torch.tensor([0.3, 0.9, 0.7, -20.0, 10.0, 0.0])
    steady = [smoother([1, 2], torch.stack([base, other])) for _ in range(5)]
    assert torch.allclose(steady[-1], torch.stack([base, other]), atol=1e-6)
    noise = [torch.from_numpy(rng.normal(0, [0, 0.03, 0.03, 1.5, 1.5, 0.5])).float() for _ in range(40)]
    raw = [base + n for n in noise]
    out = [smoother([1], r[None])[0] for r in raw]
    raw_step = torch.stack(raw).diff(dim=0).abs().mean()
    out_step = torch.stack(out).diff(dim=0).abs().mean()
    assert out_step < 0.5 * raw_step
    smiling = base + torch.tensor([0.0, 0.6, 0.4, 25.0, 0.0, 0.0])
    followed = [smoother([1], smiling[None])[0] for _ in range(8)]
    assert (followed[-1] - smiling).abs().max() < 0.1 * (smiling - base).abs().max()
    assert torch.allclose(smoother([2], other[None])[0], other, atol=1e-6)  # untouched by seed 1
    assert smoother([3], base[None]).dtype == base.dtype


def test_video_renders_tracks_through_the_smoother_unless_asked_not_to(clip, secret):
    """A model with a geometry-filter view gets the clip's smoother on every pipeline the video
    uses; `DummyPolicy(smooth_geometry=False)` leaves the per-frame geometry."""
    pipe = G2FacePipeline(build_model(tiny_config()))
    views = []

    class Filtered(_YawScripted):
        def with_geometry_filter(self, geometry_filter):
            views.append(geometry_filter)
            return self

    pipe.model = Filtered(pipe.model, [0.0] * 10, lambda: 0)
    video = VideoAnonymizer(pipe, secret, seal=False, rate=30.0)
    assert views == [video.geometry_smoother] and video.geometry_smoother.rate == 30.0
    plain = VideoAnonymizer(pipe, secret, seal=False, dummies=DummyPolicy(smooth_geometry=False))
    assert plain.geometry_smoother is None and len(views) == 1
