"""Which prompts a closure may speak: keys starting `closed_` of the LIVE version's
prompt catalog, present in every one of its languages.

A closure is switched without a publish, so its message must already be something
the live version can say, in every language a caller may have chosen. The live
version is the one new calls start on: the stored live row (its own files, not
whatever the working files say now), or, before anything was published, the working
files the service validated at boot (which the first call publishes).

Only `closed_…` prompts qualify: a name that says what the text is for, a short list
to choose from in the console, and (with the loader counting that prefix among the
service's prompts) a text that is part of the version's content hash, so rewording
it is a publish like any other and a call speaks its own version's words.
"""

from __future__ import annotations

from ivr.calls import runtime
from ivr.flow.model import Catalog
from ivr.storage import db
from ivr.versions import store

CLOSURE_PREFIX = "closed_"  # a closure's message is a prompt named like this


class UnknownMessage(ValueError):
    """The key is not a prompt the live version can speak in every language."""


def live_catalog() -> tuple[str, Catalog]:
    """The live version's name and prompts; InvalidDefinition when it no longer loads."""
    rt = runtime.get()
    live = store.live_row(db.session(), rt.settings.flow)
    if live is None:
        return rt.working.flow.version, rt.working.catalog
    loaded = store.load_version(live.version_row, rt.settings.default_region)
    return loaded.flow.version, loaded.catalog


def speakable(catalog: Catalog) -> list[str]:
    """Keys a closure may use: `closed_…` prompts in every language, sorted."""
    sets = [set(prompts.texts) for prompts in catalog.languages.values()]
    common = set.intersection(*sets) if sets else set()
    return sorted(key for key in common if key.startswith(CLOSURE_PREFIX))


def check(key: str, catalog: Catalog) -> None:
    """UnknownMessage saying why `key` cannot be a closure's message."""
    if not key.startswith(CLOSURE_PREFIX):
        raise UnknownMessage(
            f"{key!r} is not a closure message; their prompt keys start with {CLOSURE_PREFIX!r}"
        )
    missing = [lang for lang, prompts in catalog.languages.items() if key not in prompts.texts]
    if missing:
        raise UnknownMessage(
            f"no prompt {key!r} in the live version's " + ", ".join(sorted(missing))
        )
