"""The application on top of the library: the ``brgm`` command line (``cli``, its argument checks in
``cli_args``), the feature network by name (``features``), data-set runs (``dataset_run``,
``dataset_cli``, ``distributed`` for torchrun), the evaluation against classical baselines
(``evaluation``) and the written outputs (``report``).  The methods themselves run through
``brgm_pyro.inference.run_method``.  Nothing below this package imports it."""

from ..threads import prefer_passive_wait as _prefer_passive_wait

_prefer_passive_wait()  # before torch is imported: libgomp reads OMP_WAIT_POLICY once (brgm_pyro.threads)
