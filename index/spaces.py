"""Where each embedding version's replica lives: one index per version and service.

A service that holds several versions (the live one, one being built, the one kept for a rollback) keeps
each in its own index, so vectors of two versions never meet: an embedded index in its own directory, a
collection of its own on a Qdrant server. The version whose ``flit-vectors`` records are keyed by bare
flit id (the one live before the catalogue existed) keeps the names every deployment used before
versions, so an upgrade finds its index where it was.

>>> from datetime import datetime
>>> from flitfeed.index.versions import bare_version, begin_build, catalog_with_live
>>> cat = begin_build(catalog_with_live("minilm@1", "minilm", 384, datetime(2026, 11, 26)), "static@2",
...                   "static", 256, datetime(2026, 11, 26))
>>> bare = bare_version(cat)
>>> space_name("ranker", "minilm@1", bare), space_name("ranker", "static@2", bare)
('ranker', 'ranker-c667defb')
>>> space_collection("flits", "static@2", bare)
'flits-c667defb'
>>> held_versions(cat)
['minilm@1', 'static@2']
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from flitfeed.index.versions import version_tag
from flitfeed.streams.events import VersionCatalog

if TYPE_CHECKING:
    from flitfeed.index.base import VectorIndex

__all__ = ["destroy_replica", "held_versions", "space_collection", "space_name"]


def held_versions(catalog: VersionCatalog | None) -> list[str]:
    """The versions the services keep a replica of: the live one first, then those being built or kept."""
    if catalog is None:
        return []
    others = [v.version for v in catalog.versions if v.version != catalog.live and v.state in ("building", "ready")]
    return [catalog.live, *others]


def space_name(service: str, version: str, bare: str | None) -> str:
    """The name of a service's index of ``version`` (its directory under ``<data_dir>/index``); ``bare``: the
    version keyed by bare flit id (with no catalogue: the one version there is)."""
    return service if version == bare else f"{service}-{version_tag(version)}"


def space_collection(collection: str, version: str, bare: str | None) -> str:
    """The Qdrant server collection of ``version``."""
    return collection if version == bare else f"{collection}-{version_tag(version)}"


def destroy_replica(index: "VectorIndex", offsets_path: "Path | None") -> None:
    """Close a dropped version's index and delete it with its offsets (an embedded index: its directory;
    a server collection is the workers' to delete with the version)."""
    index.close()
    path = getattr(index, "path", None)
    if path is not None:
        from flitfeed.index.edge import EdgeIndex

        EdgeIndex.destroy(path)
    if offsets_path is not None:
        offsets_path.unlink(missing_ok=True)


def stale_replicas(index_root: Path, service: str, held: list[str], bare: str | None) -> list[Path]:
    """A service's embedded indexes (and offsets files) of versions no longer held: dropped while it was
    down. Its start-up deletes them, so a dropped version's disk is freed on every host.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("ranker", "ranker-aaaaaaaa", f"ranker-{version_tag('b@2')}", "worker-aaaaaaaa"):
    ...     (root / name).mkdir()
    >>> (root / "ranker-aaaaaaaa.offsets.json").write_text("{}")
    2
    >>> sorted(p.name for p in stale_replicas(root, "ranker", ["a@1", "b@2"], "a@1"))
    ['ranker-aaaaaaaa', 'ranker-aaaaaaaa.offsets.json']
    """
    if not index_root.is_dir():
        return []
    keep = {space_name(service, v, bare) for v in held}
    stale = []
    for path in index_root.iterdir():
        name = path.name.removesuffix(".offsets.json")
        tag = name.removeprefix(f"{service}-")
        if name != tag and len(tag) == 8 and all(c in "0123456789abcdef" for c in tag) and name not in keep:
            stale.append(path)
    return stale
