"""The Colab notebooks in notebooks/, executed end to end with tiny sizes.

Each notebook has one cell tagged "parameters" (papermill's convention); the
tests replace its source with tiny settings, a data dir and workdirs under
tmp_path, and execute the notebook with nbclient on a kernel running this
interpreter, on one CPU device. Also checked without running anything: the
notebooks only call into cpcjax (their imports are cpcjax, the standard
library and a few plotting / audio / display packages, and they define no
functions or classes of their own) and are stored without outputs.
"""

import ast
import json
import os
import re
import sys

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
INSTALL_LINE = 'pip install "cpcjax @ git+https://github.com/<org>/cpcjax"'


def read(name: str):
    return nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)


def inject(nb, **params) -> None:
    """Replaces the source of the notebook's "parameters" cell with `params`."""
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a notebook needs exactly one cell tagged 'parameters'"
    cells[0].source = "\n".join(f"{k} = {v!r}" for k, v in params.items())


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
def kernel_env(tmp_path_factory):
    """A kernelspec for this interpreter and the kernel's environment: one CPU
    device, a data dir under tmp, no display backend forced."""
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
        mp.delenv("XLA_FLAGS", raising=False)  # one device, as on a Colab CPU runtime
        mp.delenv("MPLBACKEND", raising=False)
        yield str(data_dir)


def execute(nb, cwd) -> None:
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(cwd)}}
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
    assert any(INSTALL_LINE in s for s in code), f"{name} lacks the install placeholder"
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in nb.cells
        if c.cell_type == "code"
    ), f"{name} is stored with outputs"


def test_quickstart_reports_four_methods_and_shows_its_plots(quickstart):
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
