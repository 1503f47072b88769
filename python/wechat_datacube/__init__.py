"""datacube — a self-hosted WeChat datacube (statistics API) server — for test suites.

- :class:`Datacube`: a running ``datacube serve`` (a context manager) with the calls a test
  makes: :meth:`~Datacube.add_account`, :meth:`~Datacube.post_events`,
  :meth:`~Datacube.set_clock`, :meth:`~Datacube.faults`, :meth:`~Datacube.reset`.
- :func:`find_datacube_bin`: the path of the ``datacube`` binary this package installed.
- The pytest plugin (:mod:`wechat_datacube.pytest_plugin`, registered on install) gives the
  fixture ``datacube``.
"""

from ._find import find_datacube_bin
from ._server import Datacube, DatacubeError

__all__ = ["Datacube", "DatacubeError", "find_datacube_bin"]
