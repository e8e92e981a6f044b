"""Data layer: schema, synthetic world, Amazon loaders, queries, splits, candidates (notebook 00_data)."""
from gensar_lib.data.schema import TASKS, DataError, Dataset, Event, Item, validate

__all__ = ["TASKS", "DataError", "Dataset", "Event", "Item", "validate"]
