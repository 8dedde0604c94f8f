"""Models on the Hugging Face Hub: a repository id (``org/name``, ``org/name@revision``) resolved to
a folder of ``huggingface_hub``'s cache, and a model folder uploaded with its card.

A downloaded model is checked exactly as a local folder is (:mod:`gplinker.model_dir`): registry
name, fingerprints of every file, value bounds, no code. The cache's own layout -- each file of a
snapshot a link into the repository's ``blobs/`` folder -- is the one kind of link a model folder
may hold; a link anywhere else is refused as in any folder. ``HF_HUB_OFFLINE=1`` and ``HF_HOME``
work as for every Hugging Face library.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class HubError(ValueError):
    """A repository that cannot be had: says why and what to do."""


def split_revision(name: str) -> tuple[str, str | None]:
    """``org/name@rev`` -> (``org/name``, ``rev``); no ``@``: revision None."""
    repo, sep, rev = name.partition("@")
    return (repo, rev) if sep and rev else (name, None)


def is_repo_id(name: str) -> bool:
    """Whether ``name`` (not an existing path) reads as a hub repository id, ``org/name[@revision]``."""
    repo, _ = split_revision(str(name))
    return bool(REPO_ID.match(repo)) and ".." not in repo and not Path(str(name)).exists()


def download(name: str, revision: str | None = None) -> Path:
    """The cached snapshot folder of repository ``name`` (``org/name`` or ``org/name@revision``;
    ``revision`` overrides), downloaded into huggingface_hub's cache if it is not there."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError as e:
        raise HubError(f"{name}: loading from the Hugging Face Hub needs huggingface_hub — pip install huggingface_hub") from e
    repo, rev = split_revision(name)
    rev = revision or rev
    try:
        path = Path(snapshot_download(repo_id=repo, revision=rev, repo_type="model"))
    except RepositoryNotFoundError as e:
        raise HubError(
            f"{repo}: no such model repository on the hub, or it is private — check the name, or log in (hf auth login)"
        ) from e
    except RevisionNotFoundError as e:
        raise HubError(f"{repo}: no revision {rev!r} — pass a branch, tag or commit the repository has") from e
    except LocalEntryNotFoundError as e:
        raise HubError(
            f"{repo}{'@' + rev if rev else ''}: not in the Hugging Face cache and the hub cannot be reached "
            "(HF_HUB_OFFLINE is set, or no network) — download it once online, or pass a local model folder"
        ) from e
    logger.info("%s%s: %s", repo, f"@{rev}" if rev else "", path)
    return path


def is_cache_link(file: Path) -> bool:
    """Whether ``file`` is a link of a hub cache snapshot into its own repository's ``blobs/``
    folder, pointing at a regular file (the cache's layout, read as the file it points to)."""
    if not file.is_symlink():
        return False
    for parent in file.parents:
        if parent.name == "snapshots" and parent.parent.name.startswith("models--"):
            target = file.resolve()
            return target.parent == (parent.parent / "blobs").resolve() and target.is_file() and not target.is_symlink()
    return False


def push(folder: Path, repo_id: str, card: str, private: bool = False, message: str | None = None) -> str:
    """Upload every file of model ``folder`` and ``card`` as its README.md, in one commit, to
    repository ``repo_id`` (created if needed); returns the commit's URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    ops = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(folder / rel)) for rel in _files(folder)]
    ops.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode("utf-8")))
    info = api.create_commit(repo_id, ops, commit_message=message or "gplinker push", repo_type="model")
    return str(info.commit_url)


def _files(folder: Path) -> Iterable[str]:
    """The files a loaded model is checked against: gplinker.json and every fingerprinted file
    (a README of the folder is replaced by the card; derived files such as encoder.onnx stay home)."""
    from gplinker import model_dir

    yield model_dir.CONFIG_NAME
    yield from (rel for rel in model_dir.model_files(folder) if rel != "README.md")
