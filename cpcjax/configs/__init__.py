"""The experiment configs shipped with cpcjax: one file per table row, and the demo.

`--config=configs/pre_cpc.py` runs from a checkout; `--config=pre_cpc` finds
the same file inside the installed package.
"""

import os

DIRECTORY = os.path.dirname(os.path.abspath(__file__))
NAMES = ("sup", "joint_cpc", "mini_cpc", "pre_cpc", "demo")
