"""Ways to watch and refuse the scanner's folder listings, whichever way it lists (folders.py)."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aniworld_addon.library import folders, scanner
from aniworld_addon.library.folders import Listing
from tests.conftest import IN_CI


def require_c_listing() -> None:
    """The C listing is a real component: its absence fails a test in CI, skips it elsewhere."""
    if folders.NATIVE is None:
        message = "the C listing (library/_folders.c) was not built: no C compiler or Python.h"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def counting_listings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record every folder the scanner lists, one by one or in ReadAhead's batches."""
    listed: list[str] = []
    one, batch = scanner.list_folder, scanner.list_folders

    def list_folder(path: str, **kwargs: Any) -> Listing:
        listed.append(os.fspath(path))
        return one(path, **kwargs)

    def list_folders(paths: list[str]) -> list[Listing | OSError]:
        listed.extend(paths)
        assert batch is not None
        return batch(paths)

    with monkeypatch.context() as patch:
        patch.setattr(scanner, "list_folder", list_folder)
        if batch is not None:
            patch.setattr(scanner, "list_folders", list_folders)
        yield listed


def refuse_listing(monkeypatch: pytest.MonkeyPatch, refused: Collection[str]) -> None:
    """Listing a folder in refused fails as an unreadable one does (chmod 0 does not stop root)."""
    one, batch = scanner.list_folder, scanner.list_folders

    def denied(path: str) -> PermissionError:
        return PermissionError(13, "Permission denied", path)

    def list_folder(path: str, **kwargs: Any) -> Listing:
        if os.fspath(path) in refused:
            raise denied(path)
        return one(path, **kwargs)

    def list_folders(paths: list[str]) -> list[Listing | OSError]:
        assert batch is not None
        return [
            denied(p) if p in refused else found
            for p, found in zip(paths, batch(paths), strict=True)
        ]

    monkeypatch.setattr(scanner, "list_folder", list_folder)
    if batch is not None:
        monkeypatch.setattr(scanner, "list_folders", list_folders)
