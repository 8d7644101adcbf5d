"""The MLproject declares the same parameters that the click commands take."""

import re

import yaml

from aeclust import cli
from tests.conftest import REPO_ROOT

COMMANDS = {"train": cli.train, "sweep": cli.sweep, "compare": cli.compare}
# MLproject parameter whose click option has another name, because click flags take no value.
RENAMED = {"register": "register_model"}


def _entry_points():
    return yaml.safe_load((REPO_ROOT / "MLproject").read_text())["entry_points"]


def test_entry_points_match_commands():
    assert set(_entry_points()) == set(COMMANDS)


def test_every_parameter_reaches_its_option():
    for name, entry in _entry_points().items():
        command_line = entry["command"]
        option_names = {param.name for param in COMMANDS[name].params}
        assert f"entrypoints/{name}.py" in command_line
        for parameter in entry["parameters"]:
            option = RENAMED.get(parameter, parameter)
            assert f"{{{parameter}}}" in command_line, (name, parameter)
            assert f"--{option.replace('_', '-')} {{{parameter}}}" in command_line, (name, parameter)
            assert option in option_names, (name, parameter)


def test_entry_point_scripts_are_thin():
    for name in COMMANDS:
        text = (REPO_ROOT / "entrypoints" / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 80
        assert not re.search(r"^\s*(import|from) (keras|sklearn|tensorflow)", text, re.MULTILINE)
