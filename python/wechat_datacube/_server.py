"""A running ``datacube serve`` and the calls a test makes to it (its admin API)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import IO, Any, Iterable, Mapping, Optional, Sequence, Union

from ._find import find_datacube_bin

__all__ = ["Datacube", "DatacubeError"]

Events = Union[str, bytes, Iterable[Mapping[str, Any]]]

_SERVING = "datacube is serving the WeChat API on "


class DatacubeError(RuntimeError):
    """The server would not start, or refused an admin call (the message says why)."""


class Datacube:
    """A ``datacube serve`` of its own: a free port on 127.0.0.1, an in-memory database (gone
    when it stops), an admin token nobody else knows.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`::

        with Datacube(clock="2026-05-02T09:00:00+08:00") as dc:
            dc.add_account("wx1234567890abcdef", "0123456789abcdef0123456789abcdef")
            ...  # point the SDK at dc.url

    :param clock: the emulated "now" (RFC 3339, e.g. ``2026-05-02T09:00:00+08:00``) the server
        starts at, and that :meth:`reset` puts back; real time when ``None``.
    :param database: the database URL (default: in memory).
    :param args: more ``datacube serve`` flags (``["--seed", "fixtures/"]``,
        ``["--retire-legacy-articles"]``…).
    :param binary: the ``datacube`` binary (default: the one this package installed).
    :param startup_timeout: seconds to wait for the server to be ready.
    """

    def __init__(
        self,
        *,
        clock: Optional[str] = None,
        database: str = "sqlite::memory:",
        args: Sequence[str] = (),
        binary: Optional[str] = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.clock = clock
        self.database = database
        self.args = list(args)
        self.binary = binary
        self.startup_timeout = startup_timeout
        #: The admin API's bearer token (random, for this server alone).
        self.admin_token = secrets.token_hex(16)
        #: The server's base URL, ``http://127.0.0.1:PORT`` (once started).
        self.url = ""
        self._process: Optional[subprocess.Popen[str]] = None
        self._log: Optional[IO[bytes]] = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> "Datacube":
        """Starts the server and waits until it is ready; returns ``self``."""
        if self._process is not None:
            return self
        binary = self.binary or find_datacube_bin()
        command = [binary, "serve", "--listen", "127.0.0.1:0", "--no-request-log", *self.args]
        if self.clock:
            command += ["--clock", self.clock]
        env = dict(os.environ)
        env.update(
            DATACUBE_DATABASE=self.database,
            DATACUBE_ADMIN_TOKEN=self.admin_token,
            DATACUBE_LOG=env.get("DATACUBE_LOG", "warn"),
        )
        env.pop("DATACUBE_LISTEN", None)
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(_SERVING):
                self.url = line[len(_SERVING) :].split()[0].rstrip("/")
                break
        else:
            raise DatacubeError(f"datacube serve exited: {self._stderr()}")
        # The rest of what it prints is read (and dropped), so that it never blocks on it.
        threading.Thread(target=self._process.stdout.read, daemon=True).start()
        while True:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise DatacubeError(
                    f"datacube serve was not ready within {self.startup_timeout} s: {self._stderr()}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stops the server (its in-memory database goes with it)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> "Datacube":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _stderr(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        text = self._log.read().decode("utf-8", "replace")
        return text[-4000:] or "(it printed nothing)"

    # -- the admin API -----------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        if not self.url:
            raise DatacubeError("the server is not started: call start() or use `with`")
        data: Optional[bytes]
        if body is None:
            data = None
        elif isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": "Bearer " + self.admin_token},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                text = answer.read().decode()
        except urllib.error.HTTPError as e:
            detail = e.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail).get("error", detail)
            except (ValueError, AttributeError):
                pass
            raise DatacubeError(f"{method} {path}: HTTP {e.code}: {detail}") from None
        return json.loads(text) if text else None

    def add_account(self, appid: str, secret: str, *, verified: bool = True) -> None:
        """Adds an Official Account (``verified=False``: datacube endpoints answer 48001)."""
        self._admin(
            "POST", "/admin/accounts", {"appid": appid, "secret": secret, "verified": verified}
        )

    def post_events(self, events: Events) -> dict:
        """Stores events and computes their statistics: a list of dicts, or NDJSON text (one
        event per line; see docs/events.md). Returns the report
        (``{"accepted", "duplicates", "rejected", "rejected_total"}``); raises if a line was
        rejected, naming it."""
        if isinstance(events, (str, bytes)):
            body: Union[str, bytes] = events
        else:
            body = "\n".join(json.dumps(dict(e), ensure_ascii=False) for e in events)
        report = self._admin("POST", "/admin/events", body)
        if report.get("rejected_total"):
            first = report["rejected"][0]
            raise DatacubeError(
                f"{report['rejected_total']} event lines rejected; line {first['line']}: {first['reason']}"
            )
        return report

    def set_clock(self, now: Union[str, _dt.datetime]) -> str:
        """Moves the emulated clock to ``now`` (an RFC 3339 instant, or an aware datetime); it
        advances with real time from there. Returns the new time (China time)."""
        if isinstance(now, _dt.datetime):
            if now.tzinfo is None:
                raise ValueError("set_clock needs an aware datetime (with a time zone)")
            now = now.isoformat()
        return self._admin("POST", "/admin/clock", {"now": now})["now"]

    def faults(self, rules: str = "", *, seed: Optional[int] = None, add: bool = False) -> dict:
        """Puts fault rules in force instead of those before (or after them, with ``add``):
        ``TARGET:EFFECT@WHEN`` separated by commas — ``getusersummary:-1@first2`` fails the
        next two calls of getusersummary, ``*:45011@after10`` every datacube call after the
        next ten, ``token:-1@5%`` 5 % of token calls (drawn from ``seed``: the same seed, the
        same faults). ``faults()`` clears them. Returns the rules in force with their counts."""
        if add:
            return self._admin("POST", "/admin/faults", {"rules": rules})
        body: dict = {"rules": rules}
        if seed is not None:
            body["seed"] = seed
        return self._admin("PUT", "/admin/faults", body)

    def faults_in_force(self) -> dict:
        """The fault rules in force, each with the calls it applied to, and the seed."""
        return self._admin("GET", "/admin/faults")

    def reset(self) -> None:
        """Everything a test leaves behind goes: accounts, components, events, statistics,
        tokens, quotas; the clock and the faults go back to where the server started them."""
        self._admin("POST", "/admin/reset", {"accounts": True, "clock": True, "faults": True})

    def token(self, appid: str, secret: str) -> str:
        """An access token of ``appid`` from ``/cgi-bin/token``, as an SDK gets one."""
        query = f"grant_type=client_credential&appid={appid}&secret={secret}"
        with urllib.request.urlopen(f"{self.url}/cgi-bin/token?{query}", timeout=30) as answer:
            got = json.loads(answer.read())
        if "access_token" not in got:
            raise DatacubeError(f"/cgi-bin/token answered {got}")
        return got["access_token"]
