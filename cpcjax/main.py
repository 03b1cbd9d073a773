"""Runs an experiment: python -m cpcjax.main --config=configs/pre_cpc.py:synthetic --workdir=DIR"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Method config file[:arg].",
                                          lock_config=False)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and "
                               "the report; rerunning continues what is there.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    del argv
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import jax
    import tensorflow as tf

    from cpcjax import experiment
    from cpcjax.config import ConfigError
    from cpcjax.data.sources import CorpusNotPrepared
    from cpcjax.train import loop

    # tf.data and TFDS only read files; the accelerators belong to JAX.
    tf.config.set_visible_devices([], "GPU")
    # Library chatter (Orbax, TFDS) stays at warnings; cpcjax says what it does.
    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("cpcjax")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info("process %d/%d, %d devices (%s)", jax.process_index(),
                 jax.process_count(), jax.device_count(), jax.devices()[0].device_kind)
    loop.stop_on_sigterm()
    try:
        experiment.run(_CONFIG.value, _WORKDIR.value)
    except loop.Preempted as e:
        print(str(e), file=sys.stderr)
        sys.exit(0)
    except (ConfigError, CorpusNotPrepared, loop.TrainingDiverged) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if jax.process_index() == 0:
        with open(os.path.join(_WORKDIR.value, "report.md")) as f:
            print(f.read())


if __name__ == "__main__":
    app.run(main)
