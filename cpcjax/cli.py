"""What every cpcjax command shares: flags, help, errors, logging, `cpcjax CMD`.

Each entry point (`python -m cpcjax.main`, `.predict`, `.prepare`, `.report`,
`.bench`) defines absl flags and calls `cli.run(main)`. That gives all of
them the same conventions: `--help` prints the command's usage and flags and
exits 0; a mistake in a flag or the config is one `error:` line (with a
close match where there is one) and exit 2, never a traceback; cpcjax's own
log lines go to stderr with a time stamp, and library chatter stays quiet
(`cpcjax.logs.setup`, called before the command runs).

The `cpcjax` console script dispatches to them: `cpcjax train ...` is
`python -m cpcjax.main ...`, `cpcjax predict ...` is `python -m cpcjax.predict ...`.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
from collections.abc import Callable

from absl import app, flags

from cpcjax import logs, paths

EXIT_USAGE = 2
# jax's persistent compilation cache (see `compilation_cache`).
CACHE_DIR_ENV = "CPCJAX_CACHE_DIR"
COMPILATION_CACHE_ENV = "CPCJAX_COMPILATION_CACHE"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "cpcjax", "jax")
CACHE_MIN_COMPILE_SECONDS = 0.0
# glibc's allocator (see `host_allocator`): name -> (mallopt parameter, value).
HOST_MALLOC_ENV = "CPCJAX_HOST_MALLOC"
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
HOST_MALLOC = {
    "M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, 1 << 30),
    "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, 1 << 30),
    "M_TOP_PAD": (_M_TOP_PAD, 64 << 20),
}
# glibc's tunable that asks the kernel for transparent huge pages; orthogonal
# to `host_allocator`'s settings (docs/performance.md, "Huge pages").
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb"
# Exceptions whose message is the whole story: printed as one `error:` line.
USER_ERRORS: tuple[type[BaseException], ...] = ()
COMMANDS = {
    "train": ("cpcjax.main", "run a method or the demo: pretrain, fine-tune, report"),
    "prepare": ("cpcjax.prepare", "prepare a corpus from your copy of its files"),
    "predict": ("cpcjax.predict", "predict activation/valence/dominance of audio"),
    "report": ("cpcjax.report", "merge the reports of several workdirs"),
    "bench": ("cpcjax.bench", "measure step time, throughput and MFU"),
    "import_cpc_audio": (
        "cpcjax.import_cpc_audio",
        "import a CPC_audio checkpoint as a cpcjax CPC checkpoint",
    ),
    "embed": ("cpcjax.embed", "write CPC frame features (z, c) of audio files"),
}


def fail(message: str, code: int = EXIT_USAGE) -> None:
    """Prints `error: message` (first line of it) to stderr and exits."""
    first = str(message).strip().splitlines() or [""]
    print(f"error: {first[0]}", file=sys.stderr)
    sys.exit(code)


def _user_errors() -> tuple[type[BaseException], ...]:
    from cpcjax.config import ConfigError
    from cpcjax.paths import StorageError

    return (ConfigError, StorageError, *USER_ERRORS)


def _clean(message: str) -> str:
    """One line from an exception absl or ml_collections wrapped, e.g.
    "'num_step'\\nDid you mean ..." -> "'num_step'; did you mean ..."."""
    text = str(message).strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]  # a KeyError's repr
    text = text.replace("\\n", "\n")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        # A config file raised while ml_collections loaded it: its last line
        # is the exception, e.g. "cpcjax.config.ConfigError: unknown corpus".
        return lines[-1].split(": ", 1)[-1]
    return "; ".join(lines)


def _print_help(doc: str | None, extra: Callable[[], str] | None) -> None:
    if doc:
        print(doc.strip() + "\n")
    help_text = flags.FLAGS.main_module_help()
    print(help_text if help_text.strip() else "(no flags)")
    if extra is not None:
        print("\n" + extra())


def _parser(doc: str | None, help_extra, prepare_argv):
    def parse(argv: list[str]) -> list[str]:
        if any(a in ("--help", "-h", "--helpshort", "-?") for a in argv[1:]):
            _print_help(doc, help_extra)
            sys.exit(0)
        try:
            if prepare_argv is not None:
                argv = prepare_argv(argv)
            return flags.FLAGS(argv)
        except flags.Error as e:
            fail(_clean(e))
        except _user_errors() as e:
            fail(_clean(e))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            # ml_collections' config flags raise these for a field that does not
            # exist or a value of the wrong type.
            fail(f"--config: {_clean(e)}")
        except FileNotFoundError as e:
            fail(f"{e.filename or _clean(e)}: no such file")

    return parse


def warn_if_gpu_unused(jax, log) -> None:
    """One line when an NVIDIA GPU is visible but JAX runs on the CPU, as it
    does with the CPU-only jaxlib of `pip install -e .`; not when the user
    asked for the CPU with JAX_PLATFORMS."""
    gpu = shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0")
    chose_cpu = os.environ.get("JAX_PLATFORMS", "").strip() == "cpu"
    if gpu and not chose_cpu and jax.default_backend() == "cpu":
        log.warning(
            "an NVIDIA GPU is visible but JAX runs on the CPU: install the GPU "
            "build with pip install -e '.[gpu]' (jax[cuda12])"
        )


def resolve_config_flag(argv: list[str]) -> list[str]:
    """argv with `--config` resolved to a file (a shipped config may be named:
    `pre_cpc:synthetic`); fails in one line on a missing file, an unknown
    corpus, or a `--config.FIELD` that does not exist."""
    from cpcjax import config as config_lib

    out, spec = [], None
    for arg in argv:
        if arg.startswith("--config="):
            spec = config_lib.resolve(arg.split("=", 1)[1])
            arg = "--config=" + spec
        out.append(arg)
    if spec is not None:
        fields = [
            a[len("--config.") :].split("=", 1)[0]
            for a in argv
            if a.startswith("--config.")
        ]
        config_lib.check_fields(config_lib.load(spec), fields)
    return out


def compilation_cache(environ: dict | None = None) -> str | None:
    """Turns on jax's persistent compilation cache; returns its directory.

    A rerun, a resumed run or the next command then loads the programs an
    earlier one compiled instead of compiling them again. The directory is
    $CPCJAX_CACHE_DIR, else ~/.cache/cpcjax/jax; CPCJAX_COMPILATION_CACHE=0
    turns it off. A cache the user set for jax already (its
    JAX_COMPILATION_CACHE_DIR) is left as it is, and none is kept on Cloud
    Storage: reading programs back from there would cost more than compiling.
    """
    environ = os.environ if environ is None else environ
    if environ.get(COMPILATION_CACHE_ENV, "1").strip() == "0":
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR
    if paths.is_remote(directory):
        return None
    directory = os.path.abspath(os.path.expanduser(directory))
    jax.config.update("jax_compilation_cache_dir", directory)
    # jax's default (1 s) leaves out most of a small run's programs, the
    # demo's among them; reading one back takes a few milliseconds, less
    # than compiling even the smallest (docs/performance.md, "Compiling once").
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs", CACHE_MIN_COMPILE_SECONDS
    )
    return directory


def host_allocator(environ: dict | None = None) -> dict[str, int]:
    """Keeps freed host memory for reuse; returns the mallopt settings made.

    XLA on a CPU allocates each program's buffers afresh on every call.
    glibc serves blocks over its mmap threshold (at most 32 MiB by default)
    with a fresh mmap, and returns freed memory at the top of its heap to
    the system, so every step faulted its buffers in again page by page:
    about a fifth of the demo's processor time went to the kernel. With
    blocks up to 1 GiB served from the heap and kept there, a step reuses
    the pages of the one before (docs/performance.md, "Host memory and
    evaluation"). Blocks of 64 MiB and more that a worker thread allocates
    are still mapped afresh: a thread's own glibc arena holds none that
    large.

    Nothing is changed where the C library is not glibc, where the user tuned
    glibc's allocator already (MALLOC_* variables, GLIBC_TUNABLES), or with
    CPCJAX_HOST_MALLOC=0. Asking for huge pages (glibc.malloc.hugetlb) is not
    such a tuning: it changes the pages, not which blocks are kept.
    """
    environ = os.environ if environ is None else environ
    tuned = any(
        t.startswith("glibc.malloc.") and not t.startswith(HUGE_PAGES_TUNABLE)
        for t in environ.get("GLIBC_TUNABLES", "").split(":")
    )
    if (
        environ.get(HOST_MALLOC_ENV, "1").strip() == "0"
        or any(k.startswith("MALLOC_") for k in environ)
        or tuned
    ):
        return {}
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return {}
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return {}
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return {
        name: value
        for name, (param, value) in HOST_MALLOC.items()
        if mallopt(param, value) == 1
    }


def run(
    main: Callable[[list[str]], None],
    doc: str | None = None,
    help_extra: Callable[[], str] | None = None,
    prepare_argv: Callable[[list[str]], list[str]] | None = None,
) -> None:
    """Runs an entry point's `main(argv)` under the shared conventions.

    Args:
      main: the command; argv holds the program name and positional arguments.
      doc: usage text printed above the flags by `--help`.
      help_extra: more help text (e.g. the configs and their fields).
      prepare_argv: rewrites argv before the flags are parsed (e.g. resolving
        a config name to its file); may raise a ConfigError.
    """

    def guarded(argv):
        logs.setup()
        host_allocator()
        paths.configure_storage()
        compilation_cache()
        try:
            main(argv)
        except _user_errors() as e:
            fail(_clean(e))

    app.run(guarded, flags_parser=_parser(doc, help_extra, prepare_argv))


def console(argv: list[str] | None = None) -> None:
    """The `cpcjax` command: `cpcjax SUBCOMMAND [FLAGS] [ARGS]`."""
    argv = list(sys.argv if argv is None else argv)
    width = max(len(name) for name in COMMANDS)
    usage = (
        "usage: cpcjax {"
        + ",".join(COMMANDS)
        + "} [--help] ...\n\n"
        + "\n".join(
            f"  {name:<{width}}  {text}   (python -m {module})"
            for name, (module, text) in COMMANDS.items()
        )
    )
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage)
        sys.exit(0 if len(argv) >= 2 else EXIT_USAGE)
    name = argv[1]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, list(COMMANDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        fail(f"unknown command {name!r}{hint} (cpcjax --help lists them)")
    module = COMMANDS[name][0]
    sys.argv = [f"cpcjax {name}", *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
