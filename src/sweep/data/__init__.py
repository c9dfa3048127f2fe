"""The data layer: built-in, local-file and hub datasets as plain `Records` (no torch here)."""

from sweep.data.records import DataError, Records
from sweep.data.sources import check_data_files, label_warnings, load_records

__all__ = ["DataError", "Records", "check_data_files", "label_warnings", "load_records"]
