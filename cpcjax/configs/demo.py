"""The four methods on the embedded synthetic corpus, sized for a laptop CPU.

python -m cpcjax.main --config=configs/demo.py

Fields set here (`--config.seeds=1`) apply to every method; `methods.<name>`
holds what that method's own config file sets differently, and can be
overridden too (`--config.methods.joint_cpc.finetune.cpc_weight=0.5`);
`--config.method_order="('sup','pre_cpc')"` runs only those.
"""

import ml_collections

from cpcjax.config import differences
from cpcjax.configs import base, joint_cpc, mini_cpc, pre_cpc, sup

METHODS = (sup, joint_cpc, mini_cpc, pre_cpc)


def get_config(arg: str = "synthetic"):
    c = base.get_config(arg)
    c.methods = ml_collections.ConfigDict()
    for module in METHODS:
        method = module.get_config(arg)
        c.methods[method.method] = differences(method, c)
    # The methods run, in this order; a subset runs only those.
    c.method_order = tuple(m.get_config(arg).method for m in METHODS)
    return c
