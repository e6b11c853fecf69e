"""The selected tags (the thesis's 50, in its order, with categories) or any user list."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tagfold.pipeline.errors import UserError

CATEGORIES = ("genre", "emotion", "descriptive", "number")


@dataclass(frozen=True)
class SelectedTags:
    tags: tuple[str, ...]
    categories: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.tags)

    def index(self, tag: str) -> int:
        return self.tags.index(tag)

    def category_of(self, tag: str) -> str:
        return self.categories[self.tags.index(tag)]


def load_selected(path: str | Path | None = None) -> SelectedTags:
    """Read a `tag,category` CSV; the package's thesis list when `path` is None."""
    if path is None:
        text = resources.files("tagfold.pipeline").joinpath("data/selected_tags.csv").read_text("utf-8")
        source = "package data selected_tags.csv"
    else:
        text = Path(path).read_text("utf-8")
        source = str(path)
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0]] != ["tag", "category"]:
        raise UserError(f"{source}: line 1 must be the header 'tag,category'")
    tags, cats = [], []
    for lineno, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[0].strip():
            raise UserError(f"{source}:{lineno}: expected 'tag,category', got {row!r}")
        tag, cat = row[0].strip(), row[1].strip()
        if cat not in CATEGORIES:
            raise UserError(f"{source}:{lineno}: category {cat!r} is not one of {', '.join(CATEGORIES)}")
        if tag in tags:
            raise UserError(f"{source}:{lineno}: duplicate selected tag {tag!r}")
        tags.append(tag)
        cats.append(cat)
    return SelectedTags(tuple(tags), tuple(cats))
