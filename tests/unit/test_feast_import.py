"""The processes crm-intel starts import Feast without typeguard's instrumentation of its classes
(features.feast_import); every other use of typeguard still checks types. Each case runs in a
fresh interpreter: what a process has imported decides what the skip can do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, folder: Path) -> dict:
    # a file, not `-c`: typeguard reads the source of what it instruments
    path = folder / "case.py"
    path.write_text(textwrap.dedent(script))
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_service_module_imports_feast_unchecked_and_other_code_stays_checked(
    tmp_path: Path,
) -> None:
    # given a process that imports the scoring service (as `bentoml serve` does)
    found = _run(
        """
        import json

        import serving.service  # noqa: F401
        import typeguard
        from feast.entity import Entity
        from feast.feature_view import FeatureView
        from features.feast_import import skip_feast_typechecks

        @typeguard.typechecked
        def plain(n: int) -> int:
            return n

        @typeguard.typechecked(collection_check_strategy=typeguard.CollectionCheckStrategy.ALL_ITEMS)
        def with_options(items: list[int]) -> int:
            return len(items)

        def refused(call, *args):
            try:
                call(*args)
            except typeguard.TypeCheckError:
                return True
            return False

        instrumented = lambda f: "TypeCheckMemo" in f.__code__.co_names
        print(json.dumps({
            "feature_view": instrumented(FeatureView.__init__),
            "entity": instrumented(Entity.__init__),
            "plain_refused": refused(plain, "seven"),
            "options_refused": refused(with_options, [1, "two"]),
            "plain_ok": plain(7) == 7,
            "skip_again": skip_feast_typechecks(),
        }))
        """,
        tmp_path,
    )
    # then Feast's classes are as Feast wrote them, and typeguard checks everything else
    assert found["feature_view"] is False and found["entity"] is False
    assert found["plain_refused"] and found["options_refused"] and found["plain_ok"]
    # and once Feast is imported, asking again changes nothing
    assert found["skip_again"] is False


def test_the_cli_sets_the_skip_before_any_command_and_feast_is_not_imported_for_help(
    tmp_path: Path,
) -> None:
    found = _run(
        """
        import json, sys

        import typeguard

        from crm_intel.cli import main

        before = typeguard.typechecked.__module__
        sys.argv = ["crm-intel", "--help"]
        try:
            main()
        except SystemExit:
            pass
        print(json.dumps({
            "before": before,
            "after": typeguard.typechecked.__module__,
            "feast": any(m == "feast" or m.startswith("feast.") for m in sys.modules),
        }))
        """,
        tmp_path,
    )
    # then importing the CLI changed nothing; running it did, before Feast was reached
    assert found == {
        "before": "typeguard",
        "after": "features.feast_import",
        "feast": False,
    }
