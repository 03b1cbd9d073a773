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


def test_the_next_process_reads_back_even_the_smallest_program(tmp_path):
    cache = tmp_path / "cache"
    env = dict(os.environ, CPCJAX_CACHE_DIR=str(cache), JAX_PLATFORMS="cpu")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-3000:]
    first, second = (run.stdout.split() for run in runs)
    assert first == [str(cache), "0"] and second == [str(cache), "1"]


def test_the_cache_is_off_with_cpcjax_compilation_cache_0():
    assert cli.compilation_cache({"CPCJAX_COMPILATION_CACHE": "0"}) is None


def test_the_allocator_settings_stay_beside_the_huge_pages_tunable():
    # In a process of its own: the settings are made for the whole process.
    script = (
        "import sys; from cpcjax import cli; "
        "print(sorted(cli.host_allocator({'GLIBC_TUNABLES': sys.argv[1]})))"
    )

    def settings(tunables):
        run = subprocess.run(
            [sys.executable, "-c", script, tunables],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        return run.stdout.strip()

    ours = settings("glibc.malloc.hugetlb=1")
    assert ours == "['M_MMAP_THRESHOLD', 'M_TOP_PAD', 'M_TRIM_THRESHOLD']"
    assert settings("glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0") == "[]"
