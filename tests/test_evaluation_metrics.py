"""Every evaluation metric on synthetic inputs with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from g2face.evaluation import metrics as m


def _unit_vectors(n: int, d: int, seed: int) -> np.ndarray:
    return m.normalize_rows(np.random.default_rng(seed).normal(size=(n, d)))


def test_cosine_scores_known_values():
    a = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    b = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    np.testing.assert_allclose(m.cosine_scores(a, b), [1.0, -1.0, np.sqrt(0.5)])


def test_roc_auc_known_values():
    scores, same = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0], dtype=bool)
    roc = m.roc_curve(scores, same)
    assert roc.auc == pytest.approx(0.75)  # 3 of the 4 genuine/impostor pairs are ordered correctly
    np.testing.assert_allclose(roc.far, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(roc.tar, [0, 0.5, 0.5, 1, 1])
    assert m.roc_curve(np.array([2.0, 1.0]), np.array([True, False])).auc == 1.0
    assert m.roc_curve(np.array([1.0, 2.0]), np.array([True, False])).auc == 0.0
    assert m.roc_curve(np.ones(6), np.arange(6) % 2 == 0).auc == pytest.approx(0.5)  # all tied
    with pytest.raises(ValueError):
        m.roc_curve(np.ones(3), np.ones(3, dtype=bool))


def test_threshold_and_tar_at_far():
    impostors = np.arange(1000) / 1000.0  # 0.000 .. 0.999
    assert m.threshold_at_far(impostors, 1e-3) == pytest.approx(0.998)  # admits exactly 1 impostor
    assert m.threshold_at_far(impostors, 1e-2) == pytest.approx(0.989)  # admits exactly 10
    assert m.threshold_at_far(impostors, 1e-4) == pytest.approx(0.999)  # admits none
    genuine = np.array([0.5, 0.9985, 0.999, 1.0])
    assert m.tar_at_far(genuine, impostors, 1e-3) == pytest.approx(0.75)
    assert m.tar_at_far(genuine, impostors, 1.0) == 1.0


def test_kfold_tar_of_identical_embeddings_is_one():
    rng = np.random.default_rng(0)
    n_folds, per = 10, 60
    same = np.tile(np.r_[np.ones(per // 2), np.zeros(per // 2)].astype(bool), n_folds)
    folds = np.repeat(np.arange(n_folds), per)
    first = _unit_vectors(len(same), 32, 1)
    second = np.where(same[:, None], first, _unit_vectors(len(same), 32, 2))  # genuine = identical
    scores = m.cosine_scores(first, second)
    stats = m.kfold_tar_at_far(scores, scores, same, folds, 1e-3)
    assert stats.mean == 1.0 and stats.std == 0.0 and len(stats.per_fold) == n_folds
    # A perfect anonymizer makes genuine pairs look like impostors: TAR collapses to about FAR.
    anonymized = np.where(same, rng.uniform(-0.3, 0.3, len(same)), scores)
    assert m.kfold_tar_at_far(scores, anonymized, same, folds, 1e-3).mean < 0.05


def test_kfold_threshold_uses_only_other_folds():
    # Fold 1's impostors score high; fold 0 must not see them when thresholding its own test pairs.
    same = np.array([True, False, True, False])
    folds = np.array([0, 0, 1, 1])
    reference = np.array([0.9, 0.1, 0.9, 0.8])
    test = np.array([0.5, 0.1, 0.5, 0.8])
    stats = m.kfold_tar_at_far(reference, test, same, folds, 0.0)
    assert stats.per_fold == (0.0, 1.0)  # fold 0: t=0.8 from fold 1 → 0.5 rejected; fold 1: t=0.1


def test_rank1_accuracy():
    gallery = np.eye(4)
    ids = np.array([10, 11, 12, 13])
    assert m.rank1_accuracy(gallery * 3, ids, gallery, ids) == 1.0
    assert m.rank1_accuracy(gallery[[1, 0, 2, 3]], ids, gallery, ids) == 0.5


def test_psnr_ssim_mae_known_values():
    a = torch.rand(2, 3, 32, 32) * 2 - 1
    assert np.all(m.psnr(a, a) == m.PSNR_CAP_DB)
    np.testing.assert_allclose(m.ssim(a, a), 1.0)
    np.testing.assert_allclose(m.mae(a, a), 0.0)
    black, grey = -torch.ones(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)  # 0.0 and 0.5 on [0, 1]
    np.testing.assert_allclose(m.mae(black, grey), [0.5])
    np.testing.assert_allclose(m.psnr(black, grey), [10 * np.log10(4)])  # mse 0.25
    noise = torch.randn_like(a)
    slight, strong = (a + 0.05 * noise).clamp(-1, 1), (a + 0.4 * noise).clamp(-1, 1)
    assert np.all(m.ssim(a, strong) < m.ssim(a, slight)) and np.all(m.ssim(a, slight) < 1)
    assert np.all(m.psnr(a, strong) < m.psnr(a, slight)) and np.all(m.psnr(a, slight) < 40)


def test_ssim_matches_the_closed_form_for_constant_images():
    # Constant images: SSIM reduces to the luminance term (2μxμy + C1) / (μx² + μy² + C1).
    x, y, c1 = 0.25, 0.75, 0.01**2
    a, b = torch.full((1, 3, 24, 24), x * 2 - 1), torch.full((1, 3, 24, 24), y * 2 - 1)
    np.testing.assert_allclose(m.ssim(a, b), [(2 * x * y + c1) / (x * x + y * y + c1)], rtol=1e-6)


def test_bit_error_and_verified_rates():
    sent = np.array([[0, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_allclose(m.bit_error_rate(sent, [[0, 1, 1, 0], [0, 0, 1, 1]]), [0.0, 0.5])
    assert m.verified_rate(np.array([True, True, False, True])) == 0.75
    assert np.isnan(m.verified_rate(np.array([], dtype=bool)))


def test_landmark_nme_pose_and_blendshape_errors():
    ref = np.zeros((1, 300, 3))
    ref[0, 33, 0], ref[0, 263, 0] = 0.3, 0.7  # outer eye corners 0.4 apart
    shifted = ref.copy()
    shifted[..., 1] += 0.04  # every point moves by 0.04 = 10% of the ocular distance
    np.testing.assert_allclose(m.landmark_nme(shifted, ref), [0.1])
    np.testing.assert_allclose(m.landmark_nme(ref, ref), [0.0])
    np.testing.assert_allclose(m.pose_error([[179.0, 10.0, -5.0]], [[-179.0, 4.0, 5.0]]), [[2.0, 6.0, 10.0]])
    np.testing.assert_allclose(m.blendshape_l1([[0.1, 0.5, 0.9]], [[0.2, 0.5, 0.6]]), [(0.1 + 0.3) / 3])


def test_kid_same_distribution_near_zero_shifted_positive():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    same = m.kid(x, y, n_subsets=10, subset_size=150)
    shifted = m.kid(x, y + 1.0, n_subsets=10, subset_size=150)
    assert abs(same.mean) < 0.05 and same.subset_size == 150
    assert shifted.mean > 1.0 and shifted.mean > 20 * abs(same.mean)
    assert m.kid(x[:50], y, n_subsets=2, subset_size=1000).subset_size == 50


def test_gender_kept_is_also_given_where_the_estimators_agree_on_the_original():
    from g2face.evaluation.attributes import compare_attributes
    from g2face.priors.attributes import Attributes

    # Faces are told apart by their first pixel; each estimator reads P(male) from a table.
    originals, anonymized = torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)
    originals[:, 0, 0, 0] = torch.arange(4.0)
    anonymized[:, 0, 0, 0] = torch.arange(4.0) + 10

    def estimator(name, table):
        def read(crops):
            p = torch.tensor([table[int(k)] for k in crops[:, 0, 0, 0]])
            return Attributes(age=torch.full((len(crops),), 30.0), male_probability=p)

        return type(name, (), {"name": name, "__call__": staticmethod(read)})()

    # Originals 0-3: both read 0 and 1 male, 3 female; they disagree on 2.
    a = estimator("a", {0: 0.9, 1: 0.9, 2: 0.9, 3: 0.1, 10: 0.9, 11: 0.1, 12: 0.9, 13: 0.1})
    b = estimator("b", {0: 0.9, 1: 0.9, 2: 0.1, 3: 0.1, 10: 0.9, 11: 0.9, 12: 0.9, 13: 0.1})
    comparison = compare_attributes(originals, anonymized, [a, b])
    assert comparison.summary()["gender_kept/a"] == pytest.approx(0.75)
    agree, kept = comparison.gender_kept_where_estimators_agree()
    assert agree == pytest.approx(0.75)
    assert kept == {"a": pytest.approx(2 / 3), "b": pytest.approx(1.0)}


def test_gender_kept_is_also_given_where_the_original_is_clear_to_each_estimator():
    from g2face.evaluation.attributes import compare_attributes
    from g2face.priors.attributes import Attributes

    originals, anonymized = torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8)
    originals[:, 0, 0, 0] = torch.arange(4.0)
    anonymized[:, 0, 0, 0] = torch.arange(4.0) + 10
    # Original 1 is read near 0.5 (0.55) and its fake as female: lost, but not clear; original 3
    # is clear (0.1) and its fake read male: lost and counted.
    table = {0: 0.9, 1: 0.55, 2: 0.2, 3: 0.1, 10: 0.95, 11: 0.3, 12: 0.1, 13: 0.8}

    def read(crops):
        p = torch.tensor([table[int(k)] for k in crops[:, 0, 0, 0]])
        return Attributes(age=torch.full((len(crops),), 30.0), male_probability=p)

    estimator = type("a", (), {"name": "a", "__call__": staticmethod(read)})()
    comparison = compare_attributes(originals, anonymized, [estimator])
    assert comparison.summary()["gender_kept/a"] == pytest.approx(0.5)
    share, kept = comparison.gender_kept_where_clear()["a"]
    assert share == pytest.approx(0.75) and kept == pytest.approx(2 / 3)
    # with no margin every original counts
    assert comparison.gender_kept_where_clear(0.0)["a"] == (pytest.approx(1.0), pytest.approx(0.5))
    # over a chosen subset of faces (e.g. those rendered, not filtered): 0 kept, 3 lost
    assert comparison.gender_kept_among(np.array([True, False, False, True]))["a"] == pytest.approx(0.5)
    assert comparison.gender_kept_among(np.array([True, False, False, False]))["a"] == pytest.approx(1.0)
    assert np.isnan(comparison.gender_kept_among(np.zeros(4, bool))["a"])


def test_whole_face_skin_tone_sees_what_the_cheeks_alone_miss():
    """Two faces with the same cheeks, one with a much lighter forehead, nose and chin: the cheeks'
    ITA reads them alike, the whole face's does not; a uniformly darker face reads darker."""
    from importlib import resources

    import cv2
    from safetensors.numpy import load_file

    from g2face.evaluation.attributes import compare_attributes, face_skin_tones, skin_tones
    from g2face.priors.base import Geometry
    from g2face.priors.skin_tone import cheek_mask

    basis = load_file(str(resources.files("g2face") / "assets" / "mediapipe_shape_basis.safetensors"))
    mesh = basis["mean"].reshape(468, 3)[:, :2].astype(np.float64)
    unit = np.stack([0.5 + 8 * mesh[:, 0] / 256, 0.5 - 8 * mesh[:, 1] / 256], 1)

    class MeanFace:
        name, shape_dim, expression_dim = "mean-face", 1, 1

        def __call__(self, crops):
            b = len(crops)
            landmarks = torch.from_numpy(np.concatenate([unit, np.zeros((468, 1))], 1)).float()
            return Geometry(
                torch.zeros(b, 1), torch.zeros(b, 1), torch.zeros(b, 3), landmarks.expand(b, -1, -1)
            )

    def face(skin, rest=None):
        image = np.full((256, 256, 3), (30, 40, 60), np.uint8)
        hull = cv2.convexHull(np.round(unit * 256 - 0.5).astype(np.int32))
        cv2.fillConvexPoly(image, hull, rest or skin)
        image[cheek_mask(256, unit)] = skin
        noise = np.random.default_rng(0).normal(0, 2, image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)

    crops = [face((200, 150, 120)), face((200, 150, 120), (245, 215, 200)), face((110, 75, 55))]
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 127.5 - 1
    cheeks, whole = skin_tones(MeanFace(), x), face_skin_tones(MeanFace(), x)
    assert abs(cheeks[0] - cheeks[1]) < 1
    assert whole[1] - whole[0] > 10
    assert whole[2] < whole[0] - 20
    comparison = compare_attributes(x[[0, 0]], x[[1, 2]], [], MeanFace())
    summary = comparison.summary()
    assert summary["face_ita_faces"] == 2 and summary["face_ita_over_10"] == pytest.approx(1.0)
    assert summary["face_ita_difference"] > summary["ita_difference"] / 2
