"""The experiment configs shipped with cpcjax: one file per table row, and the demo.

`--config=configs/pre_cpc.py` runs from a checkout; `--config=pre_cpc` finds
the same file inside the installed package.
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
NAMES = ("sup", "joint_cpc", "mini_cpc", "pre_cpc", "demo")


def on_demo_corpus(config_file: str) -> str:
    """The `--config` value that runs `config_file` on the embedded demo corpus:
    a shipped config by its name, any other by its path as given."""
    name = os.path.splitext(os.path.basename(config_file))[0]
    shipped = os.path.dirname(os.path.abspath(config_file)) == os.path.abspath(
        DIRECTORY
    )
    return f"{name if shipped else config_file}:synthetic"
