"""Runs an experiment: pretraining, fine-tuning per fold and seed, the report.

  python -m cpcjax.main --config=configs/pre_cpc.py          # IEMOCAP
  python -m cpcjax.main --config=configs/pre_cpc.py:synthetic --config.seeds=1
  python -m cpcjax.main --config=demo                        # by name, installed

--config takes a config file (`configs/<name>.py`, or a shipped config by
name) and an optional `:corpus` (iemocap, msp_podcast, synthetic). Any field
can be overridden with --config.FIELD=VALUE. The workdir defaults to
runs/<config>_<corpus>; rerunning the same command continues what is there.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import traceback

from absl import flags
from ml_collections import config_flags

from cpcjax import cli, logs
from cpcjax import config as config_lib

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file or shipped config name, [:corpus].", lock_config=False
)
_WORKDIR = flags.DEFINE_string(
    "workdir",
    None,
    "Directory for checkpoints, metrics and the report; rerunning continues "
    "what is there. Default: runs/<config>_<corpus>.",
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
    "Call jax.distributed.initialize() and let JAX find the cluster itself "
    "(TPU pod slices, SLURM).",
)
flags.mark_flags_as_required(["config"])
# A process of a multi-process run that stops answering for this long is
# taken for dead, and the others stop with an error instead of waiting.
HEARTBEAT_TIMEOUT_S = 60


def _help_extra() -> str:
    from cpcjax import configs

    base = config_lib.load("sup:iemocap")
    fields = config_lib.flatten(base.to_dict())
    width = max(len(k) for k in fields)
    return "\n".join(
        [
            f"Shipped configs (--config=NAME or configs/NAME.py): "
            f"{', '.join(configs.NAMES)}",
            "Config fields (--config.FIELD=VALUE; IEMOCAP defaults, see "
            "configs/base.py):",
            *(f"  {k:<{width}}  {v!r}" for k, v in fields.items()),
        ]
    )


def default_workdir(config_file: str, corpus: str) -> str:
    """runs/<config>_<corpus>, e.g. runs/pre_cpc_iemocap."""
    name = os.path.splitext(os.path.basename(config_file))[0]
    return os.path.join("runs", f"{name}_{corpus}")


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
            heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S,
        )
    elif _DISTRIBUTED.value:
        jax.distributed.initialize(heartbeat_timeout_seconds=HEARTBEAT_TIMEOUT_S)
    else:
        return
    # A process whose peer stops sending heartbeats (rather than breaking a
    # collective's connection) is ended by JAX's client itself, with its own
    # "Terminating process because the JAX distributed service detected fatal
    # errors" line and an abort. Python's fault handler, which absl turns on,
    # would bury that line under every thread's stack and ~190 module names.
    faulthandler.disable()


def _fail(jax, message: str, code: int = cli.EXIT_USAGE) -> None:
    """Stops on `message`; in a multi-process run, this process at once.

    A normal exit would wait at jax.distributed's shutdown barrier for the
    other processes, which may be waiting for this one in a collective. Gone
    at once, it breaks their collectives' connections (or misses its
    heartbeats), and they stop too.
    """
    if jax.process_count() == 1:
        cli.fail(message, code)
    first = (str(message).strip().splitlines() or [""])[0]
    print(
        f"error: process {jax.process_index()}/{jax.process_count()}: {first}",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os._exit(code)


def _leave_the_others(jax, error: Exception) -> None:
    """Ends this process of a multi-process run on `error`, in one line where
    the error is understood."""
    first = (str(error).strip().splitlines() or [""])[0]
    if isinstance(error, jax.errors.JaxRuntimeError):
        # A collective or barrier failed: another process died or cannot be
        # reached; its own log says why.
        _fail(
            jax,
            f"lost contact with another process of the run ({first}); its log "
            f"says why it stopped",
            1,
        )
    if isinstance(error, config_lib.ConfigError):
        _fail(jax, first)
    traceback.print_exc()
    _fail(jax, "stopped on the error above", 1)


def main(argv) -> None:
    if len(argv) > 1:
        cli.fail(f"unexpected arguments {' '.join(argv[1:])!r} (see --help)")
    log = logging.getLogger("cpcjax")
    # Before anything else imports it (clu, TFDS): see logs.import_tensorflow.
    tf = logs.import_tensorflow()
    import jax

    from cpcjax import configs, experiment, report
    from cpcjax.data.sources import CorpusNotPrepared
    from cpcjax.train import loop

    # tf.data and TFDS only read files; the accelerators belong to JAX.
    tf.config.set_visible_devices([], "GPU")
    _start_distributed(jax)
    config = _CONFIG.value
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    workdir = _WORKDIR.value or default_workdir(config_file, config.corpus)
    log.info(
        "process %d/%d, %d %s devices (%s backend); workdir %s",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
        jax.devices()[0].device_kind,
        jax.default_backend(),
        workdir,
    )
    cli.warn_if_gpu_unused(jax, log)
    loop.stop_on_sigterm()
    try:
        explicit = [
            a[len("--config.") :].split("=", 1)[0]
            for a in sys.argv
            if a.startswith("--config.")
        ]
        result = experiment.run(config, workdir, explicit)
    except loop.Preempted as e:
        print(str(e), file=sys.stderr)
        sys.exit(0)
    except CorpusNotPrepared as e:
        _fail(
            jax,
            f"{e}, or try the embedded demo corpus: python -m cpcjax.main "
            f"--config={configs.on_demo_corpus(config_file)}",
        )
    except loop.TrainingDiverged as e:
        _fail(jax, str(e))
    except Exception as e:
        if jax.process_count() == 1:
            raise
        _leave_the_others(jax, e)
    if jax.process_index() == 0:
        print(report.markdown(result))


if __name__ == "__main__":
    cli.run(
        main, doc=__doc__, help_extra=_help_extra, prepare_argv=cli.resolve_config_flag
    )
