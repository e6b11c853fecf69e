"""Find a tag by the text a user has: its raw form (as in the input file) or its normalised form.

Ingest merges raw texts that normalise alike ('punk  rock', 'Punk Rock' -> 'punk rock') and
keeps each raw text that differs from its tag in aliases.parquet (alias, tag_id) beside
tags.parquet. A lookup tries the raw text among the aliases first, then the text normalised
as ingest normalises (tagfold.pipeline.tags.vocab.normalize_tag) among the tags, so 'Happy',
'punk  rock' and 'ro<ZWSP>ck' all find their tag.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, TypeVar

import pyarrow as pa

from tagfold.pipeline.tags.vocab import normalize_tag

V = TypeVar("V")


class TagLookup:
    """tag_id of a raw or normalised tag text, from tags.parquet (+ aliases.parquet)."""

    def __init__(self, tags: pa.Table, aliases: pa.Table | None = None):
        self.tag_of_id = dict(zip(tags.column("tag_id").to_pylist(), tags.column("tag").to_pylist()))
        self.id_of_tag = {t: i for i, t in self.tag_of_id.items()}
        self.id_of_alias = ({} if aliases is None else
                            dict(zip(aliases.column("alias").to_pylist(), aliases.column("tag_id").to_pylist())))

    @classmethod
    def from_dir(cls, out_dir: str | Path) -> "TagLookup":
        import pyarrow.parquet as pq

        out_dir = Path(out_dir)
        tags_path = out_dir / "tags.parquet"
        if not tags_path.exists():
            raise FileNotFoundError(f"{tags_path} not found: run `tagfold ingest` or `tagfold pipeline` first")
        aliases_path = out_dir / "aliases.parquet"
        aliases = pq.read_table(aliases_path) if aliases_path.exists() else None
        return cls(pq.read_table(tags_path, columns=["tag_id", "tag"]), aliases)

    def find(self, text: str) -> int | None:
        """The tag_id whose raw or normalised form is `text`, or None."""
        tag_id = self.id_of_alias.get(text)
        if tag_id is None:
            tag_id = self.id_of_tag.get(text)
        if tag_id is None:
            # a run with --keep-case kept case apart: its tags match the case-kept form
            tag_id = self.id_of_tag.get(normalize_tag(text, casefold=False))
        if tag_id is None:
            tag_id = self.id_of_tag.get(normalize_tag(text))
        return tag_id


def get_normalised(mapping: Mapping[str, V], text: str, default: V | None = None) -> V | None:
    """mapping[text], else mapping[normalize_tag(text)]: for mappings keyed by ingested
    (normalised) tags, looked up with raw text such as a gold file's."""
    value = mapping.get(text)
    if value is None:
        value = mapping.get(normalize_tag(text), default)
    return value
