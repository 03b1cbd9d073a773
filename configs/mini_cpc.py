"""mini_cpc: see cpcjax/config.py. get_config("synthetic" | "iemocap" | "msp_podcast"[,FIELD=VALUE...])."""

from cpcjax.config import method_config


def get_config(arg: str = "iemocap"):
    return method_config("mini_cpc", arg)
