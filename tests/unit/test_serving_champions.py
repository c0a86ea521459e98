"""serving.champions: swap on alias move, keep the old champion when a load fails."""

from __future__ import annotations

import pytest

from serving.champions import Champions, MissingChampion, RefusedChampion
from training.registry import Champion, NoChampion

pytestmark = pytest.mark.unit


SERVICES = {"lead_conversion": "lead_conversion_v1", "churn_risk": "churn_risk_v1"}


class FakeRegistry:
    def __init__(self):
        self.aliases = {"lead_conversion": "1", "churn_risk": "4"}
        self.fail = False
        self.loads = 0
        # version → the feature_service tag it was registered with (default: its model's)
        self.trained_for: dict[tuple[str, str], str | None] = {}

    def load(self, name: str, uri: str) -> Champion:
        if name not in self.aliases:
            raise NoChampion(f"no champion for {name!r}")
        if self.fail:
            raise OSError("artifact store down")
        self.loads += 1
        version = self.aliases[name]
        service = self.trained_for.get((name, version), SERVICES[name])
        return Champion(
            model=f"model-{name}-{version}",  # type: ignore[arg-type]
            version=version,
            metadata={"feature_names": ["a"], "tags": {"feature_service": service}},
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
    shown = champions.info()["lead_conversion"]["refresh_error"]
    assert "could not be loaded" in shown and "artifact store down" not in shown  # in the log
    registry.fail = False
    assert champions.refresh() == ["lead_conversion"]
    assert champions.info()["lead_conversion"]["refresh_error"] is None


def _champions(registry: FakeRegistry, names=("lead_conversion", "churn_risk")) -> Champions:
    return Champions(
        names, "sqlite:///x", 0, registry.load, registry.version, feature_services=SERVICES
    )


def test_a_champion_trained_for_another_feature_service_stops_start():
    # given churn_risk's champion registered from a lead model's feature service
    registry = FakeRegistry()
    registry.trained_for[("churn_risk", "4")] = "lead_conversion_v1"
    # then the service does not start, and says which version, why and what to do
    with pytest.raises(RefusedChampion) as err:
        _champions(registry)
    message = str(err.value)
    assert "version 4 of 'churn_risk'" in message and "'lead_conversion_v1'" in message
    assert "'churn_risk_v1'" in message and "crm-intel models promote" in message
    assert isinstance(err.value, MissingChampion)  # handled as a missing champion is


def test_a_version_naming_no_feature_service_is_refused():
    registry = FakeRegistry()
    registry.trained_for[("lead_conversion", "1")] = None
    with pytest.raises(RefusedChampion, match="names no feature service"):
        _champions(registry)


def test_alias_swap_to_another_feature_service_keeps_the_old_champion_and_says_why():
    registry = FakeRegistry()
    champions = _champions(registry)
    # when the alias moves to version 5, trained on the lead model's feature service
    registry.aliases["churn_risk"] = "5"
    registry.trained_for[("churn_risk", "5")] = "lead_conversion_v1"
    assert champions.refresh() == []
    # then version 4 keeps serving and model_info says why
    assert champions["churn_risk"].version == "4"
    info = champions.info()["churn_risk"]
    assert info["version"] == "4" and info["refused_version"] == "5"
    assert info["expected_feature_service"] == "churn_risk_v1"
    assert "refused" in info["refresh_error"] and "'lead_conversion_v1'" in info["refresh_error"]
    # and the refused version is not loaded again on every refresh
    loads = registry.loads
    assert champions.refresh() == [] and registry.loads == loads
    # when the alias moves back, the report clears; a right version then swaps in
    registry.aliases["churn_risk"] = "4"
    assert champions.refresh() == [] and champions.info()["churn_risk"]["refresh_error"] is None
    registry.aliases["churn_risk"] = "6"
    assert champions.refresh() == ["churn_risk"] and champions["churn_risk"].version == "6"
    assert champions.info()["churn_risk"]["refused_version"] is None
