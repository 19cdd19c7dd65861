"""The application on top of the library: the ``brgm`` command line (``cli``, its argument checks in
``cli_args``), single-image and data-set runs (``reconstruction``, ``dataset_run``, ``dataset_cli``,
``distributed`` for torchrun), the evaluation against classical baselines (``evaluation``) and the
written outputs (``report``). Nothing below this package imports it."""

from ..threads import prefer_passive_wait as _prefer_passive_wait

_prefer_passive_wait()  # before torch is imported: libgomp reads OMP_WAIT_POLICY once (brgm_pyro.threads)
