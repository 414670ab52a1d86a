"""``grass data download llm-adapters``: fetch the LLM-Adapters evaluation sets and the
chain-of-thought training file from GitHub into a folder in their layout (what
``$GRASS_DATA_DIR`` must point at). Machines without GitHub access get one clear error.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from grass.data.sources import DATA_DIR_ENV
from grass.errors import DataError

log = logging.getLogger(__name__)

REPO = "AGI-Edgerunners/LLM-Adapters"
DEFAULT_REF = "main"
BASE_URL = "https://raw.githubusercontent.com/{repo}/{ref}/"
# relative paths inside the repository, the same inside the destination folder
FILES = (
    "LICENSE", "DATA_LICENSE", "ft-training_set/math_data.json",
    *(f"dataset/{d}/test.json" for d in ("gsm8k", "AddSub", "MultiArith", "SingleEq", "SVAMP", "AQuA", "boolq",
                                         "piqa", "social_i_qa", "winogrande", "ARC-Easy", "ARC-Challenge",
                                         "openbookqa")),
)


def download_llm_adapters(dest: str | os.PathLike, *, ref: str = DEFAULT_REF, timeout: float = 10.0,
                          base_url: str | None = None) -> Path:
    """Download :data:`FILES` into ``dest`` (all or nothing: written to a temporary folder first).

    Args:
        dest: destination folder (created; existing files are replaced).
        ref: branch, tag or full commit of the repository.
        timeout: seconds per request.
        base_url: override the source (a mirror, or ``file://`` for tests); must end with '/'.

    Returns:
        The destination folder.

    Raises:
        DataError: GitHub cannot be reached or a file is missing; the message says how to use
            ``$GRASS_DATA_DIR`` with a copy made elsewhere instead.
    """
    base = base_url or BASE_URL.format(repo=REPO, ref=ref)
    dest = Path(dest).expanduser()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".llm-adapters-", dir=dest.parent))
    except OSError as e:
        raise DataError(f"cannot write to '{dest}': {e.strerror}; choose another --dest") from None
    try:
        for rel in FILES:
            url = base + rel
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp, open(target, "wb") as fh:
                    shutil.copyfileobj(resp, fh)
            except urllib.error.HTTPError as e:
                raise DataError(f"cannot download {url}: HTTP {e.code}; check --ref") from None
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                reason = getattr(e, "reason", e)
                raise DataError(f"cannot reach GitHub ({base.split('/')[2] or base}: {reason}): copy the LLM-Adapters "
                                f"data folder from a machine that can (or clone github.com/{REPO}) and set "
                                f"{DATA_DIR_ENV} to it") from None
            log.info("downloaded %s", rel)
        for rel in FILES:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, dest / rel)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
