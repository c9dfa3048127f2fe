"""One base model, many tasks: serve several studies' adapters side by side, measured and priced.

    python -m sweep.multitask STUDY STUDY [...] [--hash STUDY=PREFIX] [--tracking-uri URI] [--out reports]

Each study contributes one adapter (the report's recommendation, or a given config hash);
all of them are loaded onto one base model as named PEFT adapters and measured against
K merged models: exact accuracy per adapter, resident memory, adapter switching, latency
unmerged vs merged, and mixed batches. The result is an MLflow run of its own and a
report section "Serving K tasks".

Modules, one job each:
  select    which adapter of each study, and its files (MLflow artifacts first, trial folder second)
  compat    refuse studies on another base model or quantization; which serving features PEFT supports
  stack     one base + K named adapters (heads of different sizes), a merged model, mixed batches
  measure   correctness, switching, latency and mixed batches, in this process
  memory    resident memory of one base, one base + K adapters, K merged models, each in a fresh process
  noise     distribution-free confidence interval of a median; differ = beyond noise (sweep.noise's rule)
  pricing   one deployment with K adapters vs K merged deployments at the configured request volume
  advice    which deployment to ship, and why (the noise rule for latency)
  result    the typed result and its metric table
  track     the MLflow run of a serving measurement
  section   the "Serving K tasks" report section and its files
  run       the pipeline: select -> compat -> measure -> memory -> price -> report -> track
"""


class MultitaskError(RuntimeError):
    """A study cannot be served beside the others: one line naming the study, the key and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
