"""Face detection: the `FaceDetector` interface, the YuNet and CenterFace backends and a drawing helper."""

from g2face.detection.base import FaceDetector
from g2face.detection.centerface import CenterFaceDetector
from g2face.detection.draw import draw_detections
from g2face.detection.yunet import YuNetDetector

__all__ = ["CenterFaceDetector", "FaceDetector", "YuNetDetector", "draw_detections"]
