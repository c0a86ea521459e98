"""Gray releases: which arm (champion or challenger) scores an entity.

``shadow``: every entity gets the champion's answer; the challenger scores the same entities
beside it, logged as arm ``shadow`` and never returned. ``canary``: a fixed fraction of entities
gets the challenger, chosen by a hash of the model name and the entity id, so the same id is
always in the same arm (across requests, processes and restarts) and a larger fraction only adds
ids to the challenger's arm. Without a challenger every entity gets the champion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"
SHADOW_ARM = "shadow"
MODES = ("off", "shadow", "canary")


def bucket(model: str, entity_id: str) -> float:
    """A number in [0, 1), uniform over ids and fixed for (model, id)."""
    digest = hashlib.blake2b(f"{model}\x1f{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def canary_arm(model: str, entity_id: str, fraction: float) -> str:
    """``challenger`` for a ``fraction`` of ids (sticky by id), else ``champion``."""
    return CHALLENGER_ARM if bucket(model, entity_id) < fraction else CHAMPION_ARM


def arms(
    model: str, ids: Sequence[str], mode: str, fraction: float, has_challenger: bool
) -> list[str]:
    """The arm answering each id: the challenger only in canary mode, for its fraction."""
    if mode != "canary" or not has_challenger:
        return [CHAMPION_ARM] * len(ids)
    return [canary_arm(model, str(i), fraction) for i in ids]
