"""The conventions every command shares: jax's compilation cache, host memory."""

import os
import subprocess
import sys

from cpcjax import cli

# Turns the cache on as every command does, runs a program that compiles in
# milliseconds, and prints the cache's directory and how many programs were
# read back from it.
SCRIPT = """
import jax, numpy as np
from cpcjax import cli
events = []
jax.monitoring.register_event_listener(lambda name, **_: events.append(name))
print(cli.compilation_cache())
jax.jit(lambda x: x * 2 + 1)(np.arange(3.0)).block_until_ready()
print(sum(name.endswith("/cache_hits") for name in events))
"""


def _python(script: str, *args: str, env: dict | None = None) -> str:
    """The stdout of `python -c script args` in a process of its own."""
    run = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_the_next_process_reads_back_even_the_smallest_program(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, CPCJAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    first, second = (_python(SCRIPT, env=env).split() for _ in range(2))
    assert first == [str(cache), "0"] and second == [str(cache), "1"]


def test_the_cache_is_off_with_cpcjax_compilation_cache_0():
    assert cli.compilation_cache({"CPCJAX_COMPILATION_CACHE": "0"}) is None


def test_the_allocator_settings_stay_beside_the_huge_pages_tunable():
    # In a process of its own: the settings are made for the whole process.
    script = (
        "import sys; from cpcjax import cli; "
        "print(sorted(cli.host_allocator({'GLIBC_TUNABLES': sys.argv[1]})))"
    )
    ours = _python(script, "glibc.malloc.hugetlb=1").strip()
    assert ours == "['M_MMAP_THRESHOLD', 'M_TOP_PAD', 'M_TRIM_THRESHOLD']"
    tuned = _python(script, "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0")
    assert tuned.strip() == "[]"
