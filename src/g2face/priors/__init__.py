"""Pretrained priors (generative, identity, geometry, perceptual) behind small interfaces."""

from g2face.nn.allocator import tune_cpu_allocator

# Every heavy path (anonymize, recover, training, evaluation) loads priors: tune malloc here, once,
# before the first large tensors (generator 3–3.5× faster on a CPU; see g2face.nn.allocator).
tune_cpu_allocator()
