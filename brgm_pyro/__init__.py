"""brgm-pyro: Bayesian image reconstruction with deep generative priors, in Pyro."""

__version__ = "0.1.0"
