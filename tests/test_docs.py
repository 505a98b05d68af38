"""The docs tables that come from a definition in the code stay equal to it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lab.cli.protections import markdown_table
from tests.processes import mitmlab

pytestmark = pytest.mark.loopback

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_docs_protections_md_holds_the_table_made_from_the_definitions() -> None:
    assert (
        markdown_table() in (DOCS / "protections.md").read_text()
    )  # remade by: mitmlab protections --markdown


def test_mitmlab_protections_lists_each_with_the_error_it_refuses_with() -> None:
    result = mitmlab("protections")
    assert result.returncode == 0, result.stderr
    assert "sequence_numbers" in result.stdout and "RecordOutOfSequence" in result.stdout
    settings = result.stdout.split("The real clients' own settings")[1]
    for protection, column in (("revocation", "crl"), ("hsts", "hsts"), ("static_arp", "sarp")):
        assert re.search(rf"{protection} +. {column} ", settings), settings
