"""lorasweep's shipped Hydra config groups, installed as the package data `sweep.conf`.

Not code: this file only makes the folder importable so that `importlib.resources` finds
it in an editable install as in a wheel. Add your own groups with `--config-dir DIR`.
"""
