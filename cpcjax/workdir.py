"""The workdir layout of a run, owned here and nowhere else.

One method's workdir:

  config.json                          resolved config of the run
  pretrain/[fold<k>/]                  CPC stage (one per fold when it
      checkpoints/<step>/ metrics.jsonl    pretrains on the fold's own audio)
      events.out.tfevents.*
  finetune/fold<k>/seed<s>/            one supervised run
      checkpoints/<step>/ metrics.jsonl events.out.tfevents.* result.json
      best/<step>/ best.json           params of the best dev CCC
  plots/                               training_curves.png predicted_vs_true.png
                                       tsne.png (methods with a CPC stage)
  report.json report.md                the table

A demo workdir holds config.json, report.json and report.md, and one method
workdir per method, named after it.
"""

CONFIG_FILE = "config.json"
RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
BEST_DIR = "best"  # the params of the best dev evaluation
BEST_FILE = "best.json"  # {"step", "value"[, "stopped_at"]} of model selection
PLOTS_DIR = "plots"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PRETRAIN_DIR = "pretrain"
FINETUNE_DIR = "finetune"
