"""jointCPC: CCC loss plus lambda * InfoNCE on the same batches, from scratch.

python -m cpcjax.main --config=configs/joint_cpc.py[:iemocap|:msp_podcast|:synthetic]
"""

from cpcjax.configs import base


def get_config(arg: str = "iemocap"):
    c = base.get_config(arg)
    c.method = "joint_cpc"
    c.pretrain.corpus = "none"
    c.finetune.init_from = ""
    c.finetune.cpc_weight = 1.0  # [ours] lambda
    return c
