"""A RabbitMQ virtual host of the run's own, so that its queues, exchanges
and Celery's delay queues never meet another run's and go with it at the
end. Made with `rabbitmqctl`, which must run on the broker's machine (AMQP
cannot make virtual hosts); without it, the run uses the virtual host of
TEST_BROKER_URL, where its queues' names are still its own."""

from __future__ import annotations

import shutil
import subprocess
from urllib.parse import quote, urlsplit, urlunsplit

RABBITMQCTL = shutil.which("rabbitmqctl")


def is_rabbitmq(url: str) -> bool:
    return url.startswith(("amqp://", "amqps://", "pyamqp://"))


def rabbitmqctl(*args: str) -> str:
    if RABBITMQCTL is None:
        raise RuntimeError("rabbitmqctl is not installed here")
    done = subprocess.run(
        [RABBITMQCTL, "--quiet", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def own_vhost(url: str, name: str) -> str:
    """`url` on a new virtual host `name` that its user may use, or `url`
    itself when no rabbitmqctl here can make one."""
    parts = urlsplit(url)
    if RABBITMQCTL is None or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return url
    try:
        rabbitmqctl("add_vhost", name)
        rabbitmqctl("set_permissions", "-p", name, parts.username or "guest", ".*", ".*", ".*")
    except (subprocess.SubprocessError, OSError):
        return url
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return "/" if path in ("", "/", "//") else path[1:].replace("%2F", "/")


def delete_vhost(name: str) -> None:
    if name != "/":
        rabbitmqctl("delete_vhost", name)


def queue_types(url: str) -> dict[str, tuple[str, str]]:
    """Each queue of `url`'s virtual host: its type and whether it is durable."""
    listing = rabbitmqctl("list_queues", "-p", vhost_of(url), "name", "type", "durable")
    rows = [line.split("\t") for line in listing.splitlines() if line.strip()]
    return {row[0]: (row[1], row[2]) for row in rows if row[0] != "name"}
