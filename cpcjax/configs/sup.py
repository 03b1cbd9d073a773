"""Sup: the recognizer trained on the emotion corpus alone (Li et al., Table 1).

python -m cpcjax.main --config=configs/sup.py[:iemocap|:msp_podcast|:synthetic]
"""

from cpcjax.configs import base


def get_config(arg: str = "iemocap"):
    c = base.get_config(arg)
    c.method = "sup"
    c.pretrain.corpus = "none"
    c.finetune.init_from = ""
    c.finetune.cpc_weight = 0.0
    return c
