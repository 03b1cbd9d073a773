"""preCPC: CPC pretrained on unlabeled speech (LibriSpeech), then fine-tuned.

python -m cpcjax.main --config=configs/pre_cpc.py[:iemocap|:msp_podcast|:synthetic]
"""

from cpcjax.configs import base


def get_config(arg: str = "iemocap"):
    c = base.get_config(arg)
    c.method = "pre_cpc"
    c.pretrain.corpus = base.UNLABELED[c.corpus]
    c.finetune.init_from = "pretrain"
    c.finetune.cpc_weight = 0.0
    return c
