"""The Pyro models of BRGM: priors, likelihoods and the composed model (imported as ``brgm_pyro.models``)."""
