#!/usr/bin/env python3
"""The container image as a user runs it: built with podman from this repository's Dockerfile,
run with a volume and the repository's seed fixtures, waited on through its own HEALTHCHECK,
asked for tokens and statistics from outside the container, stopped, started again and replaced
by a new container on the same volume — the data must still be there, byte for byte.

Run by tests/container/run.sh (which prepares podman and the base images); the environment:
  IMAGE               the image to test (run.sh builds it)
  COMMIT              the commit `datacube --version` must show in it
  CONTAINER_SCENARIOS which to run (default "volume compose"):
    volume    SQLite in a volume, seed fixtures, restart, a new container on the volume; then
              `serve --listen 0.0.0.0:9000` healthy through the image's own HEALTHCHECK, and a
              host directory uid 10001 cannot write, named as such
    compose   compose.yaml with COMPOSE (a podman-compose), IMAGE as its DATACUBE_IMAGE,
              PostgreSQL from POSTGRES_IMAGE
    postgres  the image on CONTAINER_POSTGRES (a fresh database), on the host's network
"""

import datetime
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ["IMAGE"]
COMMIT = os.environ["COMMIT"]
TAG = f"dctest-{os.getpid()}"
ADMIN = "container-test-admin-token-0123"
CLOCK = "2026-07-01T09:00:00+08:00"
SEED_APPID, SEED_SECRET = "wx5eed000000000001", "seed-secret-for-tests-1"
APPID, SECRET = "wx0c0c0c0c0c0c0c01", "container-test-secret-0123456789"
DEMO_APPID, DEMO_SECRET = "wx6461746163756265", "64656d6f5f7365637265745f32303236"

# Image size bound: Debian's slim base (~75-80 MB) and the binary (~23 MB).
MAX_IMAGE_BYTES = 130 * 1000 * 1000

made = []  # ("container" | "volume", name), removed at the end


def podman(*args, check=True, capture=True):
    out = subprocess.run(["podman", *args], text=True, capture_output=capture)
    if check and out.returncode != 0:
        raise SystemExit(f"podman {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def run(name, *args, port=None, network=None, env=()):
    cmd = ["run", "-d", "--name", name]
    if port:
        cmd += ["-p", f"127.0.0.1:{port}:8080"]
    if network:
        cmd += ["--network", network]
    for kv in env:
        cmd += ["-e", kv]
    podman(*cmd, *args)
    made.append(("container", name))


def wait_healthy(name, deadline_s=90):
    """Runs the image's own HEALTHCHECK (podman has no systemd timer here to run it) until it
    passes; the container's status must then say healthy."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        state = podman("inspect", name, "--format", "{{.State.Status}}").stdout.strip()
        if state != "running":
            logs = podman("logs", name, check=False).stderr
            raise SystemExit(f"{name} is {state}, not running:\n{logs}")
        if podman("healthcheck", "run", name, check=False).returncode == 0:
            status = podman("ps", "--filter", f"name=^{name}$", "--format", "{{.Status}}").stdout
            assert "(healthy)" in status, f"healthcheck passed but status is {status!r}"
            return time.monotonic() - start
        time.sleep(0.5)
    raise SystemExit(f"{name} not healthy within {deadline_s} s:\n{podman('logs', name).stderr}")


def token(base, appid, secret):
    status, body = http(
        "GET",
        f"{base}/cgi-bin/token?grant_type=client_credential&appid={appid}&secret={secret}",
    )
    answer = json.loads(body)
    assert status == 200 and "access_token" in answer, f"token for {appid}: {body!r}"
    assert answer["expires_in"] == 7200, answer
    return answer["access_token"]


def datacube(base, tok, name, begin, end):
    status, body = http(
        "POST",
        f"{base}/datacube/{name}?access_token={tok}",
        json.dumps({"begin_date": begin, "end_date": end}).encode(),
    )
    assert status == 200, (name, status, body)
    assert b'"list"' in body, (name, body)
    return body


# Events of our own account, posted through the admin API: three follows (two by QR code) and
# one unfollow on 2026-06-10, two text messages by one user on 2026-06-11.
EVENTS = "\n".join(
    json.dumps(e)
    for e in [
        {"type": "follow", "appid": APPID, "id": "f1", "time": "2026-06-10T09:00:00+08:00", "openid": "oA", "source": 30},
        {"type": "follow", "appid": APPID, "id": "f2", "time": "2026-06-10T10:00:00+08:00", "openid": "oB", "source": 30},
        {"type": "follow", "appid": APPID, "id": "f3", "time": "2026-06-10T11:00:00+08:00", "openid": "oC", "source": 1},
        {"type": "unfollow", "appid": APPID, "id": "u1", "time": "2026-06-10T12:00:00+08:00", "openid": "oC"},
        {"type": "message", "appid": APPID, "id": "m1", "time": "2026-06-11T08:00:00+08:00", "openid": "oA", "msg_type": "text"},
        {"type": "message", "appid": APPID, "id": "m2", "time": "2026-06-11T08:30:00+08:00", "openid": "oA", "msg_type": "text"},
    ]
).encode()


def add_our_account(base):
    """Our account and its events, through the admin API."""
    auth = {"Authorization": f"Bearer {ADMIN}"}
    account = json.dumps({"appid": APPID, "secret": SECRET, "verified": True}).encode()
    status, body = http(
        "POST", f"{base}/admin/accounts", account, {**auth, "Content-Type": "application/json"}
    )
    assert status == 201, (status, body)
    status, body = http("POST", f"{base}/admin/events", EVENTS, auth)
    assert status == 200 and json.loads(body)["accepted"] == 6, (status, body)


def our_figures(base):
    """Our account's answers, checked against the events, and the raw bodies."""
    tok = token(base, APPID, SECRET)
    summary = datacube(base, tok, "getusersummary", "2026-06-10", "2026-06-11")
    rows = json.loads(summary)["list"]
    by_source = {r["user_source"]: (r["new_user"], r["cancel_user"]) for r in rows if r["ref_date"] == "2026-06-10"}
    assert by_source == {0: (0, 0), 1: (1, 1), 30: (2, 0)}, f"getusersummary: {summary!r}"
    msgs = datacube(base, tok, "getupstreammsg", "2026-06-11", "2026-06-11")
    row = json.loads(msgs)["list"]
    assert [(r["msg_type"], r["msg_user"], r["msg_count"]) for r in row] == [(1, 1, 2)], msgs
    return tok, summary + msgs


def seed_figures(base):
    """The seed account's follower rows are the seed fixture's body, as WeChat answered it."""
    tok = token(base, SEED_APPID, SEED_SECRET)
    body = datacube(base, tok, "getusersummary", "2026-05-01", "2026-05-01")
    fixture = json.loads((ROOT / "fixtures/seed" / SEED_APPID / "getusersummary.json").read_text())
    assert json.loads(body)["list"] == fixture["list"], body
    return body


def sqlite_on_a_volume():
    volume = f"{TAG}-data"
    podman("volume", "create", volume)
    made.append(("volume", volume))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    first = f"{TAG}-1"
    run(
        first,
        "-v", f"{volume}:/data",
        "-v", f"{ROOT / 'fixtures/seed'}:/seed:ro",
        IMAGE, "serve", "--seed", "/seed",
        port=port,
        env=[f"DATACUBE_ADMIN_TOKEN={ADMIN}", f"DATACUBE_CLOCK={CLOCK}"],
    )
    took = wait_healthy(first)
    print(f"  healthy {took:.1f} s after start")

    # Outside the container: health, the seed account, our own account through the admin API.
    status, body = http("GET", f"{base}/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready", body
    seed = seed_figures(base)
    account = json.dumps({"appid": APPID, "secret": SECRET, "verified": True}).encode()
    status, body = http(
        "POST", f"{base}/admin/accounts", account, {"Content-Type": "application/json"}
    )
    assert status == 401, f"the admin API without its token: {status} {body!r}"
    add_our_account(base)
    tok, ours = our_figures(base)

    # As the image says: an unprivileged user, the data in the volume, the commit it was built from.
    uid = podman("exec", first, "id", "-u").stdout.strip()
    assert uid == "10001", f"runs as uid {uid}"
    files = podman("exec", first, "ls", "/data").stdout.split()
    assert "datacube.db" in files, files
    version = podman("exec", first, "datacube", "--version").stdout
    assert COMMIT in version, f"--version says {version!r}, built from {COMMIT}"

    # Stopped (SIGTERM: datacube is PID 1 and must end by itself, not be killed after 10 s)…
    start = time.monotonic()
    podman("stop", "--time", "10", first)
    stopped = time.monotonic() - start
    code = podman("inspect", first, "--format", "{{.State.ExitCode}}").stdout.strip()
    assert code == "0" and stopped < 5, f"stop took {stopped:.1f} s, exit code {code}"
    print(f"  stopped in {stopped:.2f} s, exit code 0")
    # …and started again: the same answers, and the token issued before still works.
    podman("start", first)
    wait_healthy(first)
    assert seed_figures(base) == seed
    _, again = our_figures(base)
    assert again == ours, "answers changed across a restart"
    status, body = http(
        "POST", f"{base}/datacube/getupstreammsg?access_token={tok}",
        b'{"begin_date":"2026-06-11","end_date":"2026-06-11"}',
    )
    assert b'"list"' in body, f"a token from before the restart: {body!r}"

    # Nothing secret in the log of the container that saw every secret.
    out = podman("logs", first)
    assert "datacube is serving the WeChat API" in out.stdout, out.stdout
    for secret in (ADMIN, SECRET, SEED_SECRET, tok):
        assert secret not in out.stdout + out.stderr, "a secret in the container's log"

    # A new container on the same volume (no seed this time): the data lives in the volume.
    podman("rm", "--force", "--volumes", first)
    second = f"{TAG}-2"
    run(second, "-v", f"{volume}:/data", IMAGE, port=port, env=[f"DATACUBE_CLOCK={CLOCK}"])
    wait_healthy(second)
    assert seed_figures(base) == seed
    _, third = our_figures(base)
    assert third == ours, "answers changed in a new container on the same volume"
    print("  restart and a new container on the volume: every answer identical")


def listen_and_data():
    # --listen on another port: the HEALTHCHECK (`datacube healthcheck`, which reads
    # DATACUBE_LISTEN=0.0.0.0:8080) asks where serve actually listens.
    port = free_port()
    name = f"{TAG}-listen"
    podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:9000", IMAGE,
           "serve", "--listen", "0.0.0.0:9000")
    made.append(("container", name))
    wait_healthy(name)
    status, body = http("GET", f"http://127.0.0.1:{port}/readyz")
    assert status == 200, body
    print("  serve --listen 0.0.0.0:9000: healthy by the image's own HEALTHCHECK")

    # A host directory the image's user (uid 10001) cannot write, mounted on /data: said so.
    host = Path(f"/tmp/{TAG}-data")
    host.mkdir(mode=0o755)
    try:
        os.chown(host, 0, 0)
        name = f"{TAG}-unwritable"
        podman("run", "--name", name, "-v", f"{host}:/data", IMAGE, "serve", check=False)
        made.append(("container", name))
        code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        logs = podman("logs", name, check=False)
        said = logs.stdout + logs.stderr
        assert code == "1", f"exit code {code}: {said}"
        assert "/data is not writable by uid 10001" in said, said
        assert "chown 10001 /data" in said, said
        print("  an unwritable /data: named, with uid 10001")
    finally:
        host.rmdir()


def postgres(url):
    """The same image on PostgreSQL (compose.yaml's setup), on the host's network."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = [
        f"DATACUBE_DATABASE={url}",
        f"DATACUBE_LISTEN=127.0.0.1:{port}",
        f"DATACUBE_ADMIN_TOKEN={ADMIN}",
        f"DATACUBE_CLOCK={CLOCK}",
    ]
    name = f"{TAG}-pg"
    run(name, IMAGE, network="host", env=env)
    wait_healthy(name)
    add_our_account(base)
    _, ours = our_figures(base)
    podman("rm", "--force", "--volumes", name)
    name = f"{TAG}-pg2"
    run(name, IMAGE, network="host", env=env)
    wait_healthy(name)
    _, again = our_figures(base)
    assert again == ours, "answers changed in a new container on the same database"
    print("  on PostgreSQL: healthy, answers kept across containers")


def compose(tool):
    """compose.yaml as a user runs it: PostgreSQL and datacube, up, down and up again."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    project = TAG.replace("-", "_")
    env = {
        **os.environ,
        "DATACUBE_IMAGE": IMAGE,
        "DATACUBE_PORT": str(port),
        "POSTGRES_PASSWORD": "compose-test-password-0123",
        "DATACUBE_ADMIN_TOKEN": ADMIN,
    }

    def compose_run(*args):
        out = subprocess.run(
            [tool, "--project-name", project, "--file", str(ROOT / "compose.yaml"), *args],
            env=env, text=True, capture_output=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"{tool} {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")

    def up():
        compose_run("up", "--detach", "--no-build")
        # podman 4.3 has neither the systemd timers that run health checks nor the `healthy`
        # wait condition: run both services' checks until they pass (datacube, started before
        # PostgreSQL answered, is restarted by its restart policy meanwhile).
        for service in ("postgres", "datacube"):
            wait_healthy(f"{project}_{service}_1", deadline_s=120)

    try:
        up()
        # The demo account's last week but one (its year ends yesterday, China time).
        china_today = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=8)).date()
        week = [str(china_today - datetime.timedelta(days=d)) for d in (8, 2)]
        demo_token = token(base, DEMO_APPID, DEMO_SECRET)
        demo = datacube(base, demo_token, "getusersummary", *week)
        assert len(json.loads(demo)["list"]) >= 7, demo
        add_our_account(base)
        _, ours = our_figures(base)
        compose_run("down")
        up()
        _, again = our_figures(base)
        assert again == ours, "compose down and up lost or changed data"
        tok = token(base, DEMO_APPID, DEMO_SECRET)
        assert datacube(base, tok, "getusersummary", *week) == demo, "the demo changed"
        print("  compose.yaml: PostgreSQL and datacube healthy; data kept across down and up")
    finally:
        # The project's containers with their anonymous volumes (/data), then its named ones.
        ids = podman(
            "ps", "--all", "--quiet", "--filter", f"label=io.podman.compose.project={project}",
            check=False,
        ).stdout.split()
        if ids:
            podman("rm", "--force", "--volumes", "--time", "0", *ids, check=False)
        subprocess.run(
            [tool, "--project-name", project, "--file", str(ROOT / "compose.yaml"), "down", "--volumes"],
            env=env, capture_output=True,
        )


def main():
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout)
    print(f"  image {IMAGE}: {size / 1e6:.1f} MB")
    assert size <= MAX_IMAGE_BYTES, f"the image is {size / 1e6:.1f} MB"
    inspected = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == "datacube", config
    assert "/data" in config["Volumes"], config
    assert "8080/tcp" in config["ExposedPorts"], config
    health = inspected.get("Healthcheck") or {}
    assert health.get("Test") == ["CMD", "datacube", "healthcheck"], f"HEALTHCHECK: {health}"
    scenarios = os.environ.get("CONTAINER_SCENARIOS", "volume compose").split()
    unknown = set(scenarios) - {"volume", "compose", "postgres"}
    assert not unknown, f"CONTAINER_SCENARIOS: unknown {unknown}"
    try:
        if "volume" in scenarios:
            sqlite_on_a_volume()
            listen_and_data()
        if "compose" in scenarios:
            compose(os.environ["COMPOSE"])
        if "postgres" in scenarios:
            postgres(os.environ["CONTAINER_POSTGRES"])
    finally:
        for kind, name in reversed(made):
            if kind == "container":
                podman("rm", "--force", "--volumes", "--time", "0", name, check=False)
            else:
                podman("volume", "rm", "--force", name, check=False)
    print("container image: ok")


if __name__ == "__main__":
    sys.exit(main())
