"""miniCPC: CPC pretrained on each fold's own training audio, then fine-tuned.

python -m cpcjax.main --config=configs/mini_cpc.py[:iemocap|:msp_podcast|:synthetic]
"""

from cpcjax.configs import base


def get_config(arg: str = "iemocap"):
    c = base.get_config(arg)
    c.method = "mini_cpc"
    # Labels unused; the test session's audio stays out of pretraining too.
    c.pretrain.corpus = "emotion_train"
    c.finetune.init_from = "pretrain"
    c.finetune.cpc_weight = 0.0
    return c
