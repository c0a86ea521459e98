"""serving.champions: swap on alias move, keep the old champion when a load fails."""

from __future__ import annotations

import pytest

from serving.champions import Champions, MissingChampion
from training.registry import Champion, NoChampion

pytestmark = pytest.mark.unit


class FakeRegistry:
    def __init__(self):
        self.aliases = {"lead_conversion": "1", "churn_risk": "4"}
        self.fail = False

    def load(self, name: str, uri: str) -> Champion:
        if name not in self.aliases:
            raise NoChampion(f"no champion for {name!r}")
        if self.fail:
            raise OSError("artifact store down")
        return Champion(
            model=f"model-{name}-{self.aliases[name]}",  # type: ignore[arg-type]
            version=self.aliases[name],
            metadata={"feature_names": ["a"]},
        )

    def version(self, uri: str, name: str) -> str | None:
        return self.aliases.get(name)


def test_missing_champion_stops_start_with_a_clear_message():
    registry = FakeRegistry()
    del registry.aliases["churn_risk"]
    with pytest.raises(MissingChampion, match="churn_risk.*crm-intel train"):
        Champions(
            ["lead_conversion", "churn_risk"], "sqlite:///x", 0, registry.load, registry.version
        )


def test_alias_move_swaps_and_a_held_reference_stays_whole():
    registry = FakeRegistry()
    champions = Champions(
        ["lead_conversion", "churn_risk"], "sqlite:///x", 0, registry.load, registry.version
    )
    held = champions["lead_conversion"]
    registry.aliases["lead_conversion"] = "2"
    assert champions.refresh() == ["lead_conversion"]
    assert champions["lead_conversion"].version == "2"
    assert held.version == "1" and held.model == "model-lead_conversion-1"
    assert champions.refresh() == []


def test_failed_load_keeps_the_old_champion_and_reports_it():
    registry = FakeRegistry()
    champions = Champions(["lead_conversion"], "sqlite:///x", 0, registry.load, registry.version)
    registry.aliases["lead_conversion"] = "3"
    registry.fail = True
    assert champions.refresh() == []
    assert champions["lead_conversion"].version == "1"
    assert "artifact store down" in champions.info()["lead_conversion"]["refresh_error"]
    registry.fail = False
    assert champions.refresh() == ["lead_conversion"]
    assert champions.info()["lead_conversion"]["refresh_error"] is None
