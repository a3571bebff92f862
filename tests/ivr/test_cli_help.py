"""``ivr … --help`` reads the same everywhere (issue 12, item 19): every option says what
it is for, an option taking a file shows FILE (a directory DIRECTORY), and whoever did a
change is ``--by NAME`` wherever the operator's name is recorded."""

from __future__ import annotations

from collections.abc import Iterator

import click
from click.testing import CliRunner

from ivr.cli import main


def _options(cmd: click.Command, path: tuple[str, ...] = ("ivr",)) -> Iterator[tuple[str, click.Option]]:
    for param in cmd.params:
        if isinstance(param, click.Option):
            yield " ".join(path), param
    if isinstance(cmd, click.Group):
        for name, sub in cmd.commands.items():
            yield from _options(sub, (*path, name))


def _metavar(command: str, option: click.Option) -> str:
    ctx = click.Context(main, info_name=command)
    return option.make_metavar(ctx)


def test_every_option_has_help() -> None:
    missing = [f"{cmd} {opt.opts[0]}" for cmd, opt in _options(main) if not opt.help and not opt.hidden]
    assert missing == []


FILE_OPTIONS = {("ivr", "--config"): "FILE", ("ivr", "--database"): "FILE|URL",
                ("ivr account statement", "--csv"): "FILE", ("ivr cdr list", "--csv"): "FILE",
                ("ivr cdr report", "--csv"): "FILE", ("ivr cdr report", "--chart"): "FILE",
                ("ivr card create", "--csv"): "FILE", ("ivr prompts build", "--out"): "DIRECTORY",
                ("ivr prompts import", "--sounds-dir"): "DIRECTORY", ("ivr db copy", "--from"): "FILE",
                ("ivr db copy", "--to"): "URL"}


def test_options_taking_a_file_say_so() -> None:
    found = {(cmd, opt.opts[0]): _metavar(cmd, opt) for cmd, opt in _options(main)
             if (cmd, opt.opts[0]) in FILE_OPTIONS}
    assert found == FILE_OPTIONS


def test_who_did_it_is_by_name_with_the_same_default_everywhere() -> None:
    by = {cmd: opt for cmd, opt in _options(main) if opt.opts[0] == "--by" and cmd != "ivr cdr report"}
    assert sorted(by) == ["ivr account correct", "ivr account pay", "ivr blacklist add", "ivr blacklist import",
                          "ivr card bind", "ivr card unbind"]
    for cmd, opt in by.items():
        assert (_metavar(cmd, opt), opt.show_default) == ("NAME", "your user name"), cmd
    out = CliRunner().invoke(main, ["card", "bind", "--help"]).stdout
    assert "--by NAME" in out and "[default: (your user name)]" in out
