"""Reading [tool.daskbox] from a user's pyproject.toml (daskbox._pyproject); no Docker."""

from __future__ import annotations

import pytest

from daskbox._pyproject import daskbox_table, project_name
from daskbox.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "section", "named"),
    [
        ('tool = "x"\n', (), "tool"),
        ('[tool]\ndaskbox = "x"\n', ("gcloud",), "tool.daskbox"),
        ("[tool.daskbox]\ngcloud = 1\n", ("gcloud",), "tool.daskbox.gcloud"),
    ],
)
def test_a_key_that_is_not_a_table_is_a_one_line_error_naming_it(tmp_path, text, section, named):
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=rf"^\[{named}\] in .* must be a table$"):
        daskbox_table(tmp_path, *section)


def test_absent_tables_read_as_empty(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.daskbox]\nrepository = "r"\n')
    assert daskbox_table(tmp_path) == {"repository": "r"}
    assert daskbox_table(tmp_path, "gcloud") == {}


def test_project_name_is_normalized_and_falls_back_to_the_folder(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.poetry]\nname = "My__Project.Tools"\n')
    assert project_name(tmp_path) == "my-project-tools"
    folder = tmp_path / "Helper_Lib"
    folder.mkdir()
    assert project_name(folder) == "helper-lib"
