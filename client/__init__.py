"""Python client of the Colorize API: ``from client import Client``."""

from client.api import Client
from client.errors import ClientError, WaitTimeout
from client.types import Connection, Counts, Destination, Health, Hint, Item, ItemError, Job, JobPage, Model, Output

__all__ = [
    "Client",
    "ClientError",
    "Connection",
    "Counts",
    "Destination",
    "Health",
    "Hint",
    "Item",
    "ItemError",
    "Job",
    "JobPage",
    "Model",
    "Output",
    "WaitTimeout",
]
