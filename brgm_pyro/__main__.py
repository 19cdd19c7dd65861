"""``python -m brgm_pyro ...`` is the ``brgm`` command (also under ``torchrun -m brgm_pyro``)."""

from brgm_pyro.app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
