"""What a run prints: cpcjax's own lines on stderr, other libraries' chatter hidden.

Orbax and TFDS log through absl and warn on routine events (Orbax on every
partial restore); TensorFlow's C++ side logs on import. Their errors still
show: only what sits below ERROR is dropped.

`setup` is for entry points; a library module only gets its logger with
`logging.getLogger(__name__)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings

from absl import logging as absl_logging

# Python loggers of the libraries whose warnings are noise in a run's output.
QUIET_LOGGERS = ("absl", "orbax", "tensorflow", "tensorflow_datasets", "clu")
# Modules whose Python warnings (DeprecationWarning and the like) are dropped.
QUIET_WARNINGS = r"(absl|orbax|tensorflow|tensorflow_datasets|clu)(\.|$)"
# Loggers that log a failed request with its traceback and then raise it: the
# raised error reaches cpcjax's own one-line report, so their copy is dropped.
RAISING_LOGGERS = ("gcsfs",)


class _Handler(logging.StreamHandler):
    """The stderr handler `setup` installs; its own class so a second call finds it."""


def setup(level: int = logging.INFO) -> logging.Logger:
    """Sends the `cpcjax` loggers to stderr and hides third-party warnings.

    Call it at the start of an entry point, before TensorFlow is imported:
    TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once, at import. Calling it
    again changes nothing but the level.

    Args:
      level: the lowest level of cpcjax's own lines that is shown.

    Returns:
      The `cpcjax` logger.
    """
    # 2 drops TensorFlow's C++ info and warnings but keeps its errors.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TensorFlow only reads files here (tf.data, TFDS), so its oneDNN kernels
    # never do cpcjax's math; the notice that they are on is logged before
    # TF_CPP_MIN_LOG_LEVEL takes effect, and only turning them off drops it.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    absl_logging.set_verbosity(absl_logging.ERROR)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in RAISING_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=QUIET_WARNINGS)

    log = logging.getLogger("cpcjax")
    if not any(isinstance(h, _Handler) for h in log.handlers):
        handler = _Handler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.setLevel(level)
    # absl installs its own handler on the root logger; without this every
    # line would print twice.
    log.propagate = False
    return log


@contextlib.contextmanager
def _native_stderr_hidden():
    """Points file descriptor 2 at /dev/null: what C++ libraries write there
    bypasses Python's logging and TF_CPP_MIN_LOG_LEVEL alike."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow():
    """TensorFlow, imported without its C++ start-up lines.

    On a machine without CUDA, the `tensorflow` package (which cpcjax depends
    on rather than `tensorflow-cpu`, so that it never replaces the
    `tensorflow` a Colab or GPU image ships) probes for CUDA drivers at import
    and says it found none; those lines are not cpcjax's to show. An import
    that fails still raises, with its traceback on the restored stderr.
    """
    if "tensorflow" not in sys.modules:
        with _native_stderr_hidden():
            import tensorflow  # noqa: F401
    return sys.modules["tensorflow"]
