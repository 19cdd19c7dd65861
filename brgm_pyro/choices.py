"""The names the command line offers: tasks, super-resolution kernels, blind parameters, feature
networks and inference methods.

Standard library only (no torch), so that ``brgm --help`` builds its parser without importing
torch; the modules that implement these names (``brgm_pyro.corruptions``, the application's
feature networks, the inference runner) import them from here.
"""

from __future__ import annotations

TASKS = ("super-resolution", "inpainting", "denoising", "blur", "grayscale", "compressed-sensing")
"""Corruption tasks of ``brgm_pyro.corruptions.make_corruption``."""

SR_KERNELS = ("box", "bicubic", "bicubic-antialias", "gaussian")
"""Down-sampling kernels of ``SuperResolution``; "bicubic" (no antialiasing) is the authors' release."""

BLIND_CHOICES = ("blur", "kernel", "shift", "gain")
"""Corruption parameters ``--blind`` can infer (``brgm_pyro.corruptions.make_blind``)."""

FEATURE_CHOICES = ("auto", "domain", "lpips-vgg", "lpips-alex", "none")
"""Perceptual feature networks (``brgm_pyro.app.features.build_features``)."""

METHODS = ("map", "vi", "fullrank", "mcmc")
"""Inference methods of ``brgm reconstruct --method`` (``brgm_pyro.inference.run_method``): map: MAP
(AutoDelta, Eq. 6); vi: the paper's mean-field Gaussian guide (Eq. 7; overconfident); fullrank: the
recommended posterior (``fit_recommended_posterior``); mcmc: NUTS."""
