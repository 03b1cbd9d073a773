"""Runs an experiment: python -m cpcjax.main --config=configs/pre_cpc.py:synthetic --workdir=DIR"""

from __future__ import annotations

import logging
import os
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Method config file[:arg].", lock_config=False
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory for checkpoints, metrics and "
    "the report; rerunning continues what is there.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    os.environ.get("JAX_COORDINATOR_ADDRESS"),
    "host:port of process 0 when several processes share a run (multi-host GPU, "
    "or CPU tests); with --num_processes and --process_id.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes",
    int(os.environ.get("JAX_NUM_PROCESSES", "1")),
    "Processes in the run.",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", int(os.environ.get("JAX_PROCESS_ID", "0")), "This process' index."
)
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Call jax.distributed.initialize() and let JAX find the "
    "cluster itself (TPU pod slices, SLURM).",
)
flags.mark_flags_as_required(["config", "workdir"])


def _start_distributed(jax) -> None:
    """Joins the processes of a multi-host run before JAX touches a device."""
    if _COORDINATOR.value and _NUM_PROCESSES.value > 1:
        if "cpu" in os.environ.get("JAX_PLATFORMS", "cpu"):
            # Without accelerators, cross-process collectives go through gloo.
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=_COORDINATOR.value,
            num_processes=_NUM_PROCESSES.value,
            process_id=_PROCESS_ID.value,
        )
    elif _DISTRIBUTED.value:
        jax.distributed.initialize()


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
    _start_distributed(jax)
    # Library chatter (Orbax, TFDS) stays at warnings; cpcjax says what it does.
    absl_logging.set_verbosity(absl_logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    log = logging.getLogger("cpcjax")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.info(
        "process %d/%d, %d devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
    )
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
