"""The Colab notebooks in notebooks/, executed end to end with tiny sizes.

Each notebook has one cell tagged "parameters" (papermill's convention); the
tests replace its source with tiny settings, a data dir and workdirs under
tmp_path, and execute the notebook with nbclient on a kernel running this
interpreter, on one CPU device. Also checked without running anything: the
notebooks only call into cpcjax (their imports are cpcjax, the standard
library and a few plotting / audio / display packages, and they define no
functions or classes of their own), are stored without outputs, and install
from the repository pyproject.toml names.

One test, run with CPCJAX_COLAB_TEST=1, rebuilds a Colab runtime (Python
3.12 with Colab's own tensorflow and jax) in a virtualenv cached under
~/.cache/cpcjax-tests, and runs the quickstart there from its install cell on:
the install must leave that tensorflow in place.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib

import ipykernel  # noqa: F401  (the kernel the notebooks run in)
import nbclient
import nbformat
import pytest
from conftest import TINY
from IPython.core.inputtransformer2 import TransformerManager  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "notebooks")
KERNEL = "cpcjax-notebook-test"
# What a notebook may import besides the standard library.
ALLOWED_IMPORTS = {
    "cpcjax",
    "numpy",
    "matplotlib",
    "soundfile",
    "IPython",
    "ml_collections",
}
# The Colab runtime the install cell is tested on: its Python and the
# TensorFlow and JAX it comes with (late 2026), plus the kernel and plotting
# packages every Colab runtime has.
COLAB_PYTHON = "3.12"
COLAB_PACKAGES = (
    "tensorflow==2.20.0",
    "jax==0.9.2",
    "jaxlib==0.9.2",
    "ipykernel==6.29.5",
    "matplotlib==3.10.8",
)
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "cpcjax-tests")


def read(name: str):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def parameters_cell(nb):
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    return cells[0]


def inject(nb, **params) -> None:
    """Sets `params` in the notebook's "parameters" cell, after its defaults
    (as papermill does)."""
    cell = parameters_cell(nb)
    cell.source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in params.items())


def repository() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def outputs(nb, kind: str) -> list:
    """Every output of the executed notebook holding MIME type `kind`
    ("text" for streams)."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "text" and out.output_type == "stream":
                found.append(out.text)
            elif kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """The kernels' persistent compilation cache (CPCJAX_CACHE_DIR)."""
    return tmp_path_factory.mktemp("jax_cache")


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory, jax_cache):
    """A kernelspec for this interpreter and the kernel's environment: one CPU
    device, a data dir and a compilation cache under tmp, no display backend
    forced."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                ],
                "display_name": "cpcjax tests",
                "language": "python",
            }
        )
    )
    data_dir = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.setenv("IPYTHONDIR", str(root / "ipython"))
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        mp.setenv("JAX_PLATFORMS", "cpu")
        mp.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
        mp.setenv("CPCJAX_DATA_DIR", str(data_dir))
        mp.setenv("CPCJAX_CACHE_DIR", str(jax_cache))
        mp.delenv("XLA_FLAGS", raising=False)  # one device, as on a Colab CPU runtime
        mp.delenv("MPLBACKEND", raising=False)
        yield str(data_dir)


def execute(nb, cwd, kernel_name=KERNEL) -> None:
    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout=600,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()


@pytest.fixture(scope="module")
def quickstart(kernel_env, tmp_path_factory):
    """(executed quickstart, its workdir)."""
    cwd = tmp_path_factory.mktemp("quickstart")
    workdir = str(cwd / "workdir")
    nb = read("quickstart.ipynb")
    inject(nb, WORKDIR=workdir, OVERRIDES={**TINY, "data_dir": kernel_env})
    execute(nb, cwd)
    return nb, workdir


@pytest.mark.parametrize("name", ["quickstart.ipynb", "inference.ipynb"])
def test_notebooks_only_call_cpcjax(name):
    nb = read(name)
    transform = TransformerManager().transform_cell  # %pip, %matplotlib -> Python
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    allowed = ALLOWED_IMPORTS | set(sys.stdlib_module_names)
    for source in code:
        tree = ast.parse(transform(source))
        for node in ast.walk(tree):
            assert not isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
            ), f"{name} defines {node.name}: notebooks call cpcjax, they copy no code"
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert module.split(".")[0] in allowed, f"{name} imports {module}"
    assert any("%pip install" in s for s in code), f"{name} lacks its install cell"
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in nb.cells
        if c.cell_type == "code"
    ), f"{name} is stored with outputs"


@pytest.mark.parametrize("name", ["quickstart.ipynb", "inference.ipynb"])
def test_notebooks_install_from_the_repository_pyproject_names(name):
    url = repository()
    owner_name = re.fullmatch(r"https://github\.com/([^/]+/[^/]+)", url).group(1)
    nb = read(name)
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(parameters_cell(nb).source).body
        if isinstance(node, ast.Assign)
    }
    assert values["REPOSITORY"] == url
    text = nbformat.writes(nb)
    assert "<org>" not in text
    # The "Open in Colab" badge points into the same repository.
    badges = re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/", text)
    assert badges and set(badges) == {owner_name}


def test_quickstart_reports_four_methods_and_shows_its_plots(quickstart, jax_cache):
    nb, workdir = quickstart
    with open(os.path.join(workdir, "report.json")) as f:
        report = json.load(f)
    assert [r["method"] for r in report["rows"]] == [
        "Sup",
        "jointCPC",
        "miniCPC",
        "preCPC",
    ]
    assert all(
        len(r["per_fold"]) == 1 for r in report["rows"]
    )  # the injected sizes held
    tables = outputs(nb, "text/markdown")
    assert any("| preCPC |" in t and "| Sup |" in t for t in tables)
    pngs = [
        os.path.join(workdir, m, "plots", p)
        for m in ("sup", "joint_cpc", "mini_cpc", "pre_cpc")
        for p in ("training_curves.png",)
    ]
    pngs += [
        os.path.join(workdir, "pre_cpc", "plots", p)
        for p in ("tsne.png", "predicted_vs_true.png")
    ]
    assert all(os.path.exists(p) for p in pngs)
    assert len(outputs(nb, "image/png")) == len(pngs)
    # experiment.run turns jax's persistent compilation cache on, as the
    # command line does: a rerun of the notebook reads its programs back.
    assert any(p.is_file() for p in jax_cache.rglob("*"))


def check_inference(nb, out_dir: str, method: str) -> None:
    with open(os.path.join(out_dir, "predictions.json")) as f:
        written = json.load(f)
    assert written["errors"] == [] and written["run"]["method"] == method
    files = sorted(
        os.path.join(out_dir, n) for n in os.listdir(out_dir) if n.endswith(".wav")
    )
    assert len(files) == 3
    rows = {r["file"]: r for r in written["predictions"]}
    assert sorted(rows) == files
    text = "".join(outputs(nb, "text"))
    # format_table's line per file: file, seconds, activation, valence, dominance.
    table = [
        re.fullmatch(r"(\S+)\s+[\d.]+(\s+-?[\d.]+){3}", line.strip())
        for line in text.splitlines()
    ]
    assert sorted(m.group(1) for m in table if m) == files
    # The 44.1 kHz stereo copy is read back as (nearly) the 16 kHz original.
    stereo = next(f for f in files if f.endswith("_44k_stereo.wav"))
    mono = rows[stereo.replace("_44k_stereo", "")]
    for dim in ("activation", "valence", "dominance"):
        assert rows[stereo][dim] == pytest.approx(mono[dim], abs=0.05)
    assert len(outputs(nb, "image/png")) == 1  # the attention plot
    assert "weights sum to 1.000" in text


def test_inference_predicts_with_the_quickstart_workdir(quickstart, tmp_path):
    _, workdir = quickstart
    out_dir = str(tmp_path / "out")
    nb = read("inference.ipynb")
    inject(
        nb,
        WORKDIR=workdir,
        METHOD=None,
        OUT_DIR=out_dir,
        FALLBACK_WORKDIR=str(tmp_path / "fallback"),
        FALLBACK_OVERRIDES={},
    )
    execute(nb, tmp_path)
    check_inference(nb, out_dir, "pre_cpc")
    assert "training a small" not in "".join(outputs(nb, "text"))


def test_inference_trains_a_run_when_the_workdir_has_none(kernel_env, tmp_path):
    out_dir = str(tmp_path / "out")
    nb = read("inference.ipynb")
    fallback = tmp_path / "fallback"
    inject(
        nb,
        WORKDIR=str(tmp_path / "missing"),
        METHOD="sup",
        OUT_DIR=out_dir,
        FALLBACK_WORKDIR=str(fallback),
        FALLBACK_OVERRIDES={**TINY, "data_dir": kernel_env},
    )
    execute(nb, tmp_path)
    check_inference(nb, out_dir, "sup")
    assert "training a small sup run" in "".join(outputs(nb, "text"))
    assert (fallback / "finetune" / "fold1" / "seed0" / "result.json").exists()
    assert not (tmp_path / "missing").exists()


def python_of(version: str) -> str | None:
    """An interpreter of `version`: pythonX.Y on the PATH, else pyenv's."""
    candidates = [shutil.which(f"python{version}")]
    if shutil.which("pyenv"):
        prefix = subprocess.run(
            ["pyenv", "prefix", version], capture_output=True, text=True
        ).stdout.strip()
        candidates.append(os.path.join(prefix, "bin", f"python{version}"))
    for python in filter(None, candidates):
        # pyenv's shims are on the PATH even for versions they do not select.
        if subprocess.run([python, "-c", ""], capture_output=True).returncode == 0:
            return python
    return None


def link_tree(src: str, dst: str) -> None:
    """Copies the virtualenv `src` to `dst` as hard links: pip replaces and
    removes files rather than writing into them, so `src` stays as it was."""
    try:
        shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    except OSError:  # another filesystem
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


@pytest.fixture
def colab_runtime(tmp_path):
    """The python of a fresh Colab-like virtualenv: COLAB_PYTHON with
    COLAB_PACKAGES. Built once into CACHE (about 1 GB downloaded), then
    copied for each test."""
    if os.environ.get("CPCJAX_COLAB_TEST") != "1":
        pytest.skip(
            "the Colab runtime test runs with CPCJAX_COLAB_TEST=1 (too slow for "
            "every run: the first builds the runtime, about 2 GB downloaded)"
        )
    python = python_of(COLAB_PYTHON)
    if python is None:
        pytest.fail(f"no Python {COLAB_PYTHON} (python{COLAB_PYTHON} or pyenv's)")
    key = "-".join(
        ["colab", f"py{COLAB_PYTHON}", *(p.replace("==", "") for p in COLAB_PACKAGES)]
    )
    cached = os.path.join(CACHE, key)
    if not os.path.isdir(cached):
        building = f"{cached}.building-{os.getpid()}"
        shutil.rmtree(building, ignore_errors=True)
        subprocess.run([python, "-m", "venv", building], check=True)
        subprocess.run(
            [f"{building}/bin/python", "-m", "pip", "install", "-q", *COLAB_PACKAGES],
            check=True,
        )
        try:
            os.rename(building, cached)  # whole or not at all
        except OSError:  # built meanwhile by another run
            shutil.rmtree(building, ignore_errors=True)
    runtime = str(tmp_path / "colab")
    link_tree(cached, runtime)
    return os.path.join(runtime, "bin", "python")


def test_a_colab_runtime_runs_the_quickstart_and_keeps_its_tensorflow(
    kernel_env, colab_runtime, tmp_path, monkeypatch
):
    """Colab's preinstalled packages, then the notebook's own install cell
    (from the checkout the notebook is opened in), then the whole quickstart
    on a tiny config."""
    spec = tmp_path / "jupyter" / "kernels" / "colab"
    spec.mkdir(parents=True)
    argv = [colab_runtime, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "colab", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    workdir = tmp_path / "workdir"
    nb = read("quickstart.ipynb")
    inject(nb, WORKDIR=str(workdir), OVERRIDES={**TINY, "data_dir": kernel_env})
    start = time.monotonic()
    execute(nb, NOTEBOOKS, kernel_name="colab")
    print(f"install and quickstart: {time.monotonic() - start:.0f} s")

    text = "".join(outputs(nb, "text"))
    assert f"installing {ROOT}" in text
    site = os.path.dirname(os.path.dirname(colab_runtime))
    assert f"cpcjax from {site}" in text  # the installed copy, not the checkout
    report = json.loads((workdir / "report.json").read_text())
    assert [r["method"] for r in report["rows"]] == [
        "Sup",
        "jointCPC",
        "miniCPC",
        "preCPC",
    ]
    # Colab's tensorflow, untouched: no second distribution wrote into it.
    check = (
        "import importlib.metadata as m, tensorflow as tf; "
        "print(tf.__version__, tf.constant([1, 2]).numpy().sum()); "
        "print(sorted(d.metadata['Name'].lower() for d in m.distributions() "
        "if d.metadata['Name'].lower().startswith('tensorflow')))"
    )
    proc = subprocess.run(
        [colab_runtime, "-c", check], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    version, dists = proc.stdout.splitlines()[-2:]
    tensorflow = next(p for p in COLAB_PACKAGES if p.startswith("tensorflow=="))
    assert version == f"{tensorflow.split('==')[1]} 3"
    assert "tensorflow-cpu" not in dists and "tensorflow_cpu" not in dists
