"""Imports a facebookresearch/CPC_audio checkpoint as a cpcjax CPC checkpoint.

    python -m cpcjax.import_cpc_audio CHECKPOINT.pt --out=DIR

CHECKPOINT.pt is either what CPC_audio's cpc/train.py writes (checkpoint_N.pt,
with checkpoint_args.json beside it) or a single-file published checkpoint
(its hubconf.py's: "config" and "weights", without the prediction heads).
DIR/checkpoints/ gets an Orbax checkpoint of the encoder, the context network
and, where the file has them, the prediction heads; DIR/config.json the
cpcjax config fields of that model. Fine-tune from it with
--config.finetune.init_from=DIR/checkpoints (and the model fields of
DIR/config.json). Reading the .pt needs PyTorch: pip install -e '.[torch]'.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from cpcjax import cli, cpc_audio, paths
from cpcjax import workdir as workdir_lib
from cpcjax.config import set_fields
from cpcjax.configs import base
from cpcjax.models import build
from cpcjax.train import checkpoint

ARGS_FILE = "checkpoint_args.json"  # beside a cpc/train.py checkpoint
EXIT_ERROR = 1
TORCH_HINT = (
    "reading CPC_audio checkpoints needs PyTorch: pip install -e '.[torch]' "
    "(or pip install 'torch>=2.4,<3')"
)


class ImportFailed(Exception):
    """A checkpoint that cannot be imported, with the one-line reason."""


def _check_file(path: str) -> None:
    """Fails on a missing, truncated or non-PyTorch file, without torch."""
    if not os.path.isfile(path):
        raise ImportFailed(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PK\x03\x04":
        raise ImportFailed(f"{path}: truncated PyTorch checkpoint (incomplete zip)")
    raise ImportFailed(
        f"{path}: not a CPC_audio checkpoint (not a PyTorch zip archive)"
    )


def _train_args(path: str) -> dict | None:
    """checkpoint_args.json beside `path`, or None when there is none."""
    args_path = os.path.join(os.path.dirname(os.path.abspath(path)), ARGS_FILE)
    if not os.path.isfile(args_path):
        return None
    with open(args_path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ImportFailed(f"{args_path}: not valid JSON ({e})") from None


def _numpy(state: dict) -> dict:
    return {k: v.detach().cpu().float().numpy() for k, v in state.items()}


def read(path: str) -> tuple[dict, dict, dict | None, str]:
    """(flags, model weights, criterion weights or None, format) of a .pt file."""
    _check_file(path)
    args = _train_args(path)
    if args is not None:
        cpc_audio.model_fields(args)  # an unsupported configuration fails first
    try:
        import torch
    except ImportError:
        raise ImportFailed(TORCH_HINT) from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a damaged file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImportFailed(f"{path}: unreadable PyTorch checkpoint ({first})") from None
    if isinstance(data, dict) and "weights" in data and "config" in data:
        return dict(data["config"]), _numpy(data["weights"]), None, "published"
    if isinstance(data, dict) and "gEncoder" in data:
        if args is None:
            raise ImportFailed(f"{path}: {ARGS_FILE} is missing beside it")
        criterion = data.get("cpcCriterion")
        return args, _numpy(data["gEncoder"]), criterion and _numpy(criterion), "train"
    raise ImportFailed(
        f"{path}: not a CPC_audio checkpoint (neither gEncoder nor weights/config)"
    )


def model_config(fields: dict):
    """The cpcjax config of an imported model: the defaults with its `fields`."""
    config = base.get_config()
    set_fields(config, fields)
    return config


def write(out: str, fields: dict, params: dict, source: str) -> str:
    """Writes params as an Orbax CPC checkpoint and fields as DIR/config.json.

    Returns:
        The checkpoints/ directory, for finetune.init_from.

    Raises:
        ImportFailed: the params do not fit the model of `fields`.
    """
    config = model_config(fields)
    model = build.cpc_model(config)
    wav = jnp.zeros((1, config.pretrain.window), jnp.float32)
    like = jax.eval_shape(model.init, jax.random.key(0), wav)["params"]
    for key, tree in params.items():
        want = jax.tree.map(lambda x: tuple(x.shape), like[key])
        got = jax.tree.map(lambda x: tuple(np.shape(x)), tree)
        if want != got:
            raise ImportFailed(f"{source}: its {key} weights do not fit {fields}")
    out = paths.resolve(out)
    ckpt_dir = workdir_lib.checkpoint_dir(out)
    ckpts = checkpoint.Checkpoints(ckpt_dir, keep=1)
    ckpts.save(0, {"params": jax.tree.map(jnp.asarray, params)})
    ckpts.wait()
    ckpts.close()
    paths.write_json(
        paths.join(out, workdir_lib.CONFIG_FILE),
        {"fields": fields, "source": source, "parts": sorted(params)},
        indent=1,
    )
    return ckpt_dir


def read_imported(directory: str) -> dict | None:
    """The config.json `write` left in `directory`, or None when it has none."""
    saved = paths.read_json(paths.join(directory, workdir_lib.CONFIG_FILE))
    return saved if isinstance(saved, dict) and "fields" in saved else None


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        cli.fail(
            "give one CPC_audio checkpoint: import_cpc_audio CHECKPOINT.pt --out=DIR"
        )
    path, out = argv[1], flags.FLAGS.out
    try:
        args, model, criterion, kind = read(path)
        fields = cpc_audio.model_fields(args)
        params = cpc_audio.to_params(model, criterion, fields)
        paths.makedirs(out)
        ckpt_dir = write(out, fields, params, os.path.abspath(path))
    except (ImportFailed, cpc_audio.Unsupported) as e:
        cli.fail(str(e), EXIT_ERROR)
    parts = ", ".join(sorted(params))
    print(f"imported {parts} from {path} to {ckpt_dir}")
    if "predict_heads" not in params:
        print(
            f"this {kind} checkpoint has no prediction heads (no CPC criterion): "
            "only the encoder and context network were imported"
        )
    print(f"model fields: {paths.join(out, workdir_lib.CONFIG_FILE)}")
    sys.exit(0)


if __name__ == "__main__":
    flags.DEFINE_string("out", None, "Folder for checkpoints/ and config.json.")
    flags.mark_flags_as_required(["out"])
    cli.run(main, doc=__doc__)
