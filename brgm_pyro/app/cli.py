"""The ``brgm`` command line's entry point: parse (``brgm_pyro.app.parser``, no torch, so that
``brgm --help`` is instant), resolve the settings once (``brgm_pyro.app.settings``, where every
check runs), then run the command (``brgm_pyro.app.commands``).

Errors a user can act on print one line and exit 2; Ctrl-C prints one line and exits 130 (a
data-set run says what finished and how to resume).
"""

from __future__ import annotations

import sys
from typing import Sequence

from .parser import build_parser

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT), as shells use."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can act on (bad flag, image, mask, --out, device, path, checkpoint, missing weights,
    exhausted memory): one line on stderr and exit code 2.  Anything else is a bug and keeps its traceback."""
    from ..generators import CheckpointError, UnsafeCheckpointError

    return (ValueError, OSError, MemoryError, CheckpointError, UnsafeCheckpointError)


def out_of_memory(err: BaseException) -> bool:
    """torch's allocators report exhausted memory as a RuntimeError."""
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # imported after parsing: --help and parse errors never pay for torch
    from .commands import COMMANDS
    from .settings import resolve_settings

    errors = user_errors()
    try:
        settings = resolve_settings(args, argv)
        return int(COMMANDS[settings.command](settings) or 0)
    except (*errors, RuntimeError) as err:
        if isinstance(err, RuntimeError) and not out_of_memory(err):
            raise
        message = " ".join(str(err).split())[:2000] or type(err).__name__
        if isinstance(err, MemoryError) or out_of_memory(err):
            message = f"out of memory ({message})"
        print(f"brgm {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        detail = " ".join(str(interrupt).split())
        print(f"brgm {args.command}: interrupted" + (f"; {detail}" if detail else ""), file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
