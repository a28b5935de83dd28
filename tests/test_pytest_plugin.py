"""The remotelab pytest plugin: found through its entry point, its fixtures on the chosen lab,
the lab chosen by marker over option over ini, bad parameters as the registry's errors."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from remotelab.errors import DeviceFault, PlanNotAllowedError, PlanValidationError
from remotelab.lab import shipped_lab_text
from remotelab.testing import NoRunError, PlanResult


def renamed_lab(pytester: pytest.Pytester, name: str) -> str:
    """The shipped simulated lab's file as ``<name>.yaml`` (a lab named ``name``); its file name."""
    data = yaml.safe_load(shipped_lab_text("sim"))
    data["name"] = name
    pytester.path.joinpath(f"{name}.yaml").write_text(yaml.safe_dump(data))
    return f"{name}.yaml"


NAMES_TEST = """
import pytest

def test_default(remotelab_lab):
    print("LAB", remotelab_lab.name)

@pytest.mark.remotelab_lab(path="marked.yaml")
def test_marked(remotelab_lab):
    print("LAB", remotelab_lab.name)
"""


def lab_names(result: pytest.RunResult) -> list[str]:
    return re.findall(r"LAB (\S+)", "\n".join(result.outlines))


def test_the_plugin_is_a_pytest11_entry_point():
    entries = importlib.metadata.entry_points(group="pytest11")
    (entry,) = [e for e in entries if e.name == "remotelab"]
    assert entry.value == "remotelab.testing.plugin"


def test_loading_the_plugin_imports_no_lab_machinery():
    """It loads in every pytest run where remotelab is installed: no bluesky, Prefect, ophyd."""
    code = (
        "import sys, pytest, remotelab.testing.plugin\n"
        "heavy = {'bluesky', 'prefect', 'ophyd', 'numpy', 'httpx', 'pydantic'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_plan_test_passes_through_the_installed_plugin(pytester):
    """No conftest: the fixtures come from the entry point, in a fresh interpreter."""
    pytester.makepyfile(
        test_measure="""
        def test_measure(run_plan, remotelab_store):
            result = run_plan("measure", detectors=["thermometer"], num=3)
            assert result.exit_status == "success"
            assert [e["seq_num"] for e in result.events()] == [1, 2, 3]
            assert all(20 < t < 30 for t in result.data("thermometer_temperature"))
            assert result.start["plan_name"] == "measure"
            assert remotelab_store.run(result.uid).num_events == 3
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_marker_beats_the_option_and_the_option_beats_the_ini(pytester):
    for name in ("marked", "option", "ini"):
        renamed_lab(pytester, name)
    pytester.makepyfile(test_names=NAMES_TEST)
    pytester.makeini("[pytest]\nremotelab_lab = ini.yaml\n")

    with_ini = pytester.runpytest("-s")
    with_ini.assert_outcomes(passed=2)
    assert lab_names(with_ini) == ["ini", "marked"]

    with_option = pytester.runpytest("-s", "--remotelab-lab", "option.yaml")
    with_option.assert_outcomes(passed=2)
    assert lab_names(with_option) == ["option", "marked"]


def test_without_a_choice_the_shipped_simulated_lab(pytester):
    renamed_lab(pytester, "marked")
    pytester.makepyfile(test_names=NAMES_TEST)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=2)
    assert lab_names(result) == [yaml.safe_load(shipped_lab_text("sim"))["name"], "marked"]


def test_a_marker_path_is_relative_to_its_test_file(pytester):
    pytester.mkdir("labs")
    renamed_lab(pytester, "marked")
    pytester.path.joinpath("marked.yaml").rename(pytester.path / "labs" / "marked.yaml")
    pytester.path.joinpath("labs", "test_here.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.remotelab_lab("marked.yaml", seed=7)
            def test_marked(remotelab_lab):
                assert remotelab_lab.name == "marked"
                assert remotelab_lab.world.seed == 7
            """
        )
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_tests_starting_an_installation_are_slow(pytester):
    pytester.makepyfile(
        test_site="""
        def test_remote(remotelab_client):
            pass

        def test_local(remotelab_lab):
            pass
        """
    )
    result = pytester.runpytest("--collect-only", "-q", "-m", "not slow")
    result.stdout.fnmatch_lines(["*test_local*", "*1 deselected*"])


def test_bad_parameters_raise_the_registry_error(run_plan):
    with pytest.raises(PlanValidationError) as caught:
        run_plan("measure", detectors=["balance", "nosuch"], num=0)
    assert [e["param"] for e in caught.value.errors] == ["num", "detectors"]
    assert "unknown device 'nosuch'" in caught.value.errors[1]["message"]


def test_the_role_rules_apply(run_plan):
    with pytest.raises(PlanNotAllowedError):
        run_plan.as_role("observer")("measure", detectors=["thermometer"], num=1)


def test_a_failing_plan_raises_and_its_run_ends_failed(run_plan, remotelab_lab, monkeypatch):
    def broken(*args, **kwargs):
        raise DeviceFault("thermometer", "the probe fell out")

    monkeypatch.setattr(remotelab_lab["thermometer"], "trigger", broken)
    with pytest.raises(DeviceFault, match="probe fell out"):
        run_plan("measure", detectors=["thermometer"], num=2)


def test_a_result_without_a_run_says_so():
    result = PlanResult("nothing", {}, [])
    with pytest.raises(NoRunError):
        _ = result.uid
    assert result.events() == []


def test_the_client_fixture_is_logged_in_as_a_manager(remotelab_client):
    assert remotelab_client.whoami()["role"] == "manager"
    exp = remotelab_client.submit("measure", {"detectors": ["thermometer"], "num": 2})
    assert exp.wait(timeout=120).state.value == "completed"
