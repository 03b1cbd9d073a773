"""What a run prints: cpcjax's lines and real errors, no library chatter."""

import os
import subprocess
import sys

SCRIPT = """
import logging, sys, warnings
from cpcjax import logs
logs.setup()
logs.import_tensorflow()
import jax.numpy as jnp
from absl import logging as absl_logging
from cpcjax.train import checkpoint

ckpts = checkpoint.Checkpoints(sys.argv[1])
ckpts.save(1, {"params": {"encoder": jnp.ones(3), "context": jnp.ones(2)}})
ckpts.wait()
ckpts.close()
# A partial restore: Orbax warns through absl every time.
like = {"encoder": jnp.zeros(3), "context": jnp.zeros(2), "heads": jnp.zeros(4)}
assert float(checkpoint.restore_params(sys.argv[1], like)["encoder"][0]) == 1.0
warnings.warn_explicit("chatter", UserWarning, "x.py", 1, module="orbax.checkpoint")
logging.getLogger("cpcjax.train").info("our own line")
absl_logging.error("a real error")
"""


def test_setup_keeps_our_lines_and_errors_and_drops_library_warnings(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")
    }
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "ckpt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 2, out.stderr
    assert lines[0].endswith(" our own line")  # with its time stamp
    assert "a real error" in lines[1]
