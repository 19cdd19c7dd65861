"""Inference for BRGM: guides, MAP / SVI / MCMC runners and diagnostics (imported as ``brgm_pyro.inference``)."""
