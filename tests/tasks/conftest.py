"""Fixtures for the language-model task tests: small C4-schema files made from real English prose
(CPython's embedded docs), written to a temporary directory. Nothing is downloaded."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def english_docs() -> list[str]:
    """~120 documents of 400-1500 characters each, each starting with a unique marker `[doc NNN]`."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[k] for k in sorted(topics))
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 200]
    docs, current = [], ""
    for p in paragraphs:
        current = f"{current}\n\n{p}" if current else p
        if len(current) > 400:
            docs.append(current[:1500])
            current = ""
        if len(docs) == 120:
            break
    return [f"[doc {i:03d}] {d}" for i, d in enumerate(docs)]


@pytest.fixture
def write_c4(tmp_path: Path) -> Callable[..., Path]:
    """write_c4(name, docs) writes records in C4's schema (text, timestamp, url) as .jsonl, .json.gz or
    .parquet depending on the file name, and returns the path."""

    def write(name: str, docs: list[str]) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [
            {"text": d, "timestamp": "2019-04-25T12:57:54Z", "url": f"https://example.org/{i}"}
            for i, d in enumerate(docs)
        ]
        if name.endswith(".parquet"):
            import pandas as pd

            pd.DataFrame(rows).to_parquet(path)
        else:
            lines = "".join(json.dumps(r) + "\n" for r in rows).encode()
            path.write_bytes(gzip.compress(lines) if name.endswith(".gz") else lines)
        return path

    return write
