"""Finding the ``datacube`` binary the wheel installed (as uv's ``_find_uv`` does)."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig

_EXE = "datacube" + (sysconfig.get_config_var("EXE") or "")


def find_datacube_bin() -> str:
    """The path of the ``datacube`` binary: ``$DATACUBE_BINARY`` if set, else the one in this
    environment's scripts directory (where the wheel puts it), else the user scheme's, else
    the first on ``PATH``."""
    given = os.environ.get("DATACUBE_BINARY")
    if given:
        return given
    candidates = [sysconfig.get_path("scripts")]
    user_scheme = {"nt": "nt_user", "posix": "posix_user"}.get(os.name)
    if sys.platform == "darwin" and sysconfig.get_config_var("PYTHONFRAMEWORK"):
        user_scheme = "osx_framework_user"
    if user_scheme and user_scheme in sysconfig.get_scheme_names():
        candidates.append(sysconfig.get_path("scripts", scheme=user_scheme))
    for directory in candidates:
        path = os.path.join(directory, _EXE)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which(_EXE)
    if found:
        return found
    raise FileNotFoundError(
        f"the datacube binary is not in {candidates} nor on PATH: reinstall wechat-datacube, "
        "or set DATACUBE_BINARY to its path"
    )
