"""The four methods on the embedded synthetic corpus, sized for a laptop CPU.

python -m cpcjax.main --config=configs/demo.py --workdir=/tmp/cpcjax_demo
"""

from cpcjax.config import METHODS, apply_overrides, base_config, parse_arg


def get_config(arg: str = "synthetic"):
    corpus, overrides = parse_arg(arg)
    config = base_config(corpus)
    config.methods = METHODS
    apply_overrides(config, overrides)
    return config
