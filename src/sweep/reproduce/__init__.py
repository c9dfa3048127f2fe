"""Rerun a trial from its config hash and compare every metric with the recorded one.

    python -m sweep.reproduce <config-hash-prefix> [--tracking-uri URI] [--sweeps-dir sweeps]

lookup: find the recorded trial (MLflow or folder); compare: judge reproducible metrics, show
the rest as ratios; rerun: run it again. Deterministic metrics must match exactly on CPU,
within a stated tolerance on GPU; timing and memory metrics are shown and not judged.
"""

from sweep.reproduce.cli import main
from sweep.reproduce.compare import Row, compare, format_rows, judge, tolerance_text
from sweep.reproduce.lookup import Candidate, Original, ReproduceError, find_candidates, find_original, normalise_prefix, pick
from sweep.reproduce.rerun import Outcome, reproduce

__all__ = ["Candidate", "Original", "Outcome", "ReproduceError", "Row", "compare", "find_candidates", "find_original",
           "format_rows", "judge", "main", "normalise_prefix", "pick", "reproduce", "tolerance_text"]
