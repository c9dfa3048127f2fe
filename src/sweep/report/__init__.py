"""Reports of a study read back from MLflow: comparison tables, Pareto frontiers, noise checks, cost and ROI.

    python -m sweep.report <study> [--tracking-uri URI] [--out reports] [--cost FILE] [--cost-override key=value ...]

Modules, one job each:
  load    MLflow runs of a study -> one DataFrame row per trial
  pareto  non-dominated masks over any number of objectives (directions from sweep/metrics.py)
  stats   Wilson intervals on accuracy, seeds folded into config points, "within noise" verdicts
  cost    CostConfig, training/inference cost, ROI, payback, the recommendation
  tables  trial / grouped / failure / seed tables and their formatting
  plots   Pareto and grouped PNGs (matplotlib Agg)
  render  report.md, self-contained report.html, trials.csv
"""
