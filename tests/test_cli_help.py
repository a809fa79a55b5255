"""``bandexa-bench --help`` and ``bandexa-ope --help`` read as plain text and state defaults."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

import pytest

from bandexa_gym import bench, ope_cli

COMMANDS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "bandexa-bench": bench.build_parser,
    "bandexa-ope": ope_cli.build_parser,
}
# reStructuredText a terminal shows as it is: inline literals, roles, literal-block markers.
RST = re.compile(r"``|:(?:func|class|meth|mod|attr|data|exc|obj|ref):`|::\s*$", re.MULTILINE)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_is_plain_text(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = {"bandexa-bench": bench.main, "bandexa-ope": ope_cli.main}[name]
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: {name}")
    assert RST.findall(text) == [], f"{name} --help shows reStructuredText markup"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_states_every_default(name: str) -> None:
    """An option with a default value (not off, not empty) says what it is."""
    parser = COMMANDS[name]()
    text = parser.format_help()
    for action in parser._actions:
        default = action.default
        if not action.option_strings or default in (None, False, [], argparse.SUPPRESS):
            continue
        assert action.help and "default" in action.help, f"{name} {action.option_strings[0]}"
        if "%(default)" in action.help:
            assert f"(default: {default})" in " ".join(text.split()), action.option_strings[0]


def test_ope_help_states_its_defaults() -> None:
    text = " ".join(ope_cli.build_parser().format_help().split())
    for default in (
        "(default: linear_ts)",
        "(default: position)",
        "(default: 1000)",
        "(default: 0.0001)",
        "(default: 0)",
    ):
        assert default in text
