"""Train the false-positive scorer (llm_firewall/data/fp_model.json) and report its calibration.

    .venv/bin/pip install -e ".[train]"
    .venv/bin/python scripts/train_fp.py [--datasets DIR | --corpus FILE ...] [--no-write]

Rows: the findings the rules and the learned detector raise on dev.jsonl + train_extra.jsonl,
each text judged by a learned model trained without its source (leave-one-source-out); label 1
(false positive) when the text is benign. Every coefficient of the logistic regression over
llm_firewall/score/features.py is fitted, none set by hand. The reliability table and Brier
score printed (and stored in the model file) are out-of-source: each source's findings scored
by a scorer fitted without it. This is scripts/loso.py with --write-fp: it prints the full
out-of-source tables too.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import loso

if __name__ == "__main__":
    raise SystemExit(loso.main([*sys.argv[1:], "--write-fp"]))
