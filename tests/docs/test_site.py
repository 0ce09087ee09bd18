"""The docs site's home page is the README, and the package metadata points at real files."""

from __future__ import annotations

import tomllib

from tests import ROOT

REPOSITORY = "https://github.com/chatkit-django/chatkit-django"


def test_docs_home_is_the_readme_with_links_relative_to_docs() -> None:
    # One feature table: edit README.md, then copy it to docs/index.md with "](docs/" -> "](".
    readme = (ROOT / "README.md").read_text()
    assert "](docs/" in readme
    assert (ROOT / "docs/index.md").read_text() == readme.replace("](docs/", "](")


def test_project_urls_point_at_files_of_this_repository() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    assert urls["Source"] == REPOSITORY
    assert urls["Changelog"].startswith(f"{REPOSITORY}/blob/main/")
    changelog = ROOT / urls["Changelog"].removeprefix(f"{REPOSITORY}/blob/main/")
    assert changelog.is_file()
    assert changelog.read_text().startswith("# Changelog\n\n## Unreleased\n")
