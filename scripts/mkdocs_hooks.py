"""MkDocs hooks (mkdocs.yml, ``hooks:``): put the figures of the committed run on the site.

The evaluate stage writes its figures to ``plots/evaluate/`` (committed with the run), outside
``docs/``; they are added to the site under the same path, so a page links them as
``plots/evaluate/confusion.png`` relative to the site root (``../plots/...`` from a page in a
folder), and a figure that is not there is a broken link the strict build reports.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
FIGURES = "plots/evaluate"


def on_files(files, config):
    for figure in sorted((ROOT / FIGURES).glob("*.png")):
        files.append(
            File(
                f"{FIGURES}/{figure.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files
