"""Reads `flows/*.yaml` and `prompts/*.yaml` into the frozen model, strictly.

`definitions` walks the directories and collects every problem; `prompts` reads
the prompt files into the catalog; `flows` reads one flow file, whose nodes
`nodes` parses through the model's one registry of node kinds; `files` reads YAML.
"""

from ivr.flow.loader.definitions import (
    Definitions,
    check_definitions,
    check_sources,
    load_definitions,
)
from ivr.flow.loader.files import Source, read_source
from ivr.flow.loader.prompts import load_catalog

__all__ = [
    "Definitions",
    "Source",
    "check_definitions",
    "check_sources",
    "load_catalog",
    "load_definitions",
    "read_source",
]
