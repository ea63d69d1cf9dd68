"""Docs stay honest: the CLI reference is generated from --help and checked, every page the
README links exists, and every public function is documented.

Regenerate the CLI reference with ``python -m tests.test_docs``.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

import mlnb
from mlnb.cli.app import cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
README = DOCS.parent / "README.md"


def render_cli_reference() -> str:
    """docs/cli.md: an introduction, then each command's --help."""
    parts = [
        "# Command line\n",
        "`mlnb` (or `python -m mlnb`) reads the store that `mlnb.start_run` writes. Every "
        "command takes the global `--store PATH` (default: `$MLNB_STORE`, else the nearest "
        "`.mlnb/` upwards); only `run`, `sweep` and `test --keep` create a store, every other "
        "command says where it looked when there is none. Errors print one line and exit with "
        "status 1 (2 for a usage "
        'error); JSON output spells NaN and infinities as the strings `"NaN"`, '
        '`"Infinity"`, `"-Infinity"` so it stays valid JSON.\n',
        "This page is generated from `--help` (`python -m tests.test_docs`); a test fails "
        "when it is out of date.\n",
    ]
    ctx = click.Context(cli, info_name="mlnb", terminal_width=88, max_content_width=88,
                        help_option_names=["-h", "--help"])  # fmt: skip
    parts.append("## mlnb\n\n```text\n" + cli.get_help(ctx) + "\n```\n")
    for name in sorted(cli.list_commands(ctx)):
        command = cli.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx)
        parts.append(f"## mlnb {name}\n\n```text\n{command.get_help(sub)}\n```\n")
    return "\n".join(parts)


def test_cli_reference_is_generated_from_help() -> None:
    assert (DOCS / "cli.md").read_text() == render_cli_reference(), (
        "docs/cli.md is out of date: run `python -m tests.test_docs`"
    )


def test_every_cli_command_has_an_example_outside_the_reference() -> None:
    ctx = click.Context(cli, info_name="mlnb")
    text = README.read_text() + "".join(
        p.read_text() for p in DOCS.glob("*.md") if p.name != "cli.md"
    )
    for name in cli.list_commands(ctx):
        assert f"mlnb {name}" in text, f"`mlnb {name}` is not mentioned in README or docs"


def test_readme_links_point_to_existing_files() -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text()):
        if "://" not in target:
            assert (README.parent / target).exists(), target


def test_readme_has_exactly_two_setup_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert [b.strip() for b in blocks] == ["make quickstart", "make test"]


def test_every_public_function_is_documented() -> None:
    text = "".join(p.read_text() for p in DOCS.glob("*.md"))
    for name in mlnb.__all__:
        if name.startswith("__"):
            continue
        assert getattr(mlnb, name).__doc__, f"mlnb.{name} has no docstring"
        assert name in text, f"mlnb.{name} is not mentioned in docs/"


if __name__ == "__main__":
    (DOCS / "cli.md").write_text(render_cli_reference())
    print("wrote", DOCS / "cli.md")


def test_every_track_subcommand_is_documented() -> None:
    from mlnb.notebook import magics

    text = (DOCS / "magics.md").read_text()
    for name in magics.SUBCOMMANDS:
        assert f"%track {name}" in text, f"`%track {name}` is missing from docs/magics.md"
    for name in magics.CELL_SUBCOMMANDS:
        assert f"%%track {name}" in text, f"`%%track {name}` is missing from docs/magics.md"
    parser = magics.parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == set(magics.SUBCOMMANDS)


def test_every_table_and_column_of_the_store_is_documented_in_order(tmp_path: Path) -> None:
    """docs/store-schema.md has a section per table (and view) of a fresh store, listing
    every column in the order SQLite has them."""
    with mlnb.Store(tmp_path / "s") as st:
        tables = st.file.read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                    "AND name NOT LIKE 'sqlite_%' AND name != '_sqlite_migrations'"
                )
            ]
        )
        columns = {
            t: [
                r[1]
                for r in st.file.read(
                    lambda c, t=t: c.execute(f"PRAGMA table_info({t})").fetchall()
                )
            ]
            for t in tables
        }
    text = (DOCS / "store-schema.md").read_text()
    sections = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^## (\w+)[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    }
    assert sorted(sections) == sorted(tables)
    for table, cols in columns.items():
        rows = re.findall(r"^\| ([\w, ]+?) \|", sections[table], flags=re.M)
        documented = [name for row in rows for name in row.split(", ")]
        if table == "metric_history":  # a view: its columns are named in the prose
            assert all(f"`{c}`" in sections[table] or c in sections[table] for c in cols)
            continue
        assert documented[1:] == cols, table  # the first is the header row ("column")
