"""Pretrained priors (generative, identity, geometry, perceptual) behind small interfaces."""
