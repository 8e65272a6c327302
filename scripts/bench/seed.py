"""The data a bench run plays against: a scratch database with generated customers, and
Redis without keys of an earlier run.

Each journey takes customers of its own (per-account limits: five code sends per ten
minutes, fifteen a day; a changed number starts a cooling-off), so the pool is large
and split by journey shape. Customers are made through the real commands (`ivr db
upgrade`, `ivr demo`, `ivr customers import` of a generated CSV file).

With `IVR_BENCH_DATABASE_URL` the bench creates a scratch database next to the one
named (`ivr_bench_<random>`) and drops it at the end: no existing database is written.
With `IVR_BENCH_REDIS_URL` the service's keys get a prefix of their own
(`IVR_REDIS_PREFIX`), and the bench deletes them, any under the default prefix `ivr:`
and the job queue's (`rq:*`) in that Redis before and after the run: give it a
database of its own (it is claimed the way test runs claim theirs, so a parallel test
run on the same server leaves it alone).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from scripts.bench.launcher import ROOT

SHAPES = ("known", "unknown", "change")
# Area codes of the generated numbers: customers' phones, new numbers, unknown callers.
CUSTOMER_AREA, NEW_NUMBER_AREA, STRANGER_AREA = "415", "312", "617"
_EXCHANGES = [x for x in range(201, 1000) if x % 100 != 11 and x != 555]
ACCOUNT_BASE = 60_000_000


def number(area: str, index: int) -> str:
    """The `index`-th valid US number (E.164) in `area`."""
    return f"+1{area}{_EXCHANGES[index // 10_000]}{index % 10_000:04d}"


@dataclass(frozen=True)
class Customer:
    index: int
    phone: str
    account_number: str

    @property
    def last4(self) -> str:
        return self.account_number[-4:]

    @property
    def name(self) -> str:
        return f"Bench Customer {self.index}"


def customer(index: int) -> Customer:
    return Customer(index, number(CUSTOMER_AREA, index), str(ACCOUNT_BASE + index))


def write_csv(path: Path, count: int) -> None:
    """`count` customers, one account each, without email (no lookups by email)."""
    with path.open("w", encoding="utf-8") as out:
        out.write("name,phone,account_number,email\n")
        for index in range(count):
            person = customer(index)
            out.write(f"{person.name},{person.phone},{person.account_number},\n")


def ivr_command(env: Mapping[str, str], *args: str) -> None:
    """Run `ivr ARGS` with the service's settings; stop the bench if it fails."""
    ivr = str(Path(sys.executable).with_name("ivr"))
    done = subprocess.run(
        [ivr, *args], cwd=ROOT, env=dict(env), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"ivr {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def seed(env: Mapping[str, str], workdir: Path, customers: int) -> None:
    """Migrate the database, add the demo customers and `customers` generated ones."""
    ivr_command(env, "db", "upgrade")
    ivr_command(env, "demo")
    csv_file = workdir / "customers.csv"
    write_csv(csv_file, customers)
    ivr_command(env, "customers", "import", str(csv_file))


def _sqlalchemy_url(url: str) -> sa.URL:
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    return sa.make_url(url)


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of `server_url`; dropped after."""
    base = _sqlalchemy_url(server_url)
    name = f"ivr_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield base.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def clear_redis(url: str, prefix: str) -> int:
    """Delete the service's keys (under `prefix`, or the default `ivr`) and the job
    queue's in the bench's Redis; how many."""
    from ivr.storage import kv

    client = kv.connect(url, 5.0)
    deleted = 0
    try:
        for pattern in (f"{prefix}:*", "ivr:*", "rq:*"):
            for key in client.scan_iter(match=pattern, count=1000):
                deleted += int(client.delete(key))
    finally:
        client.close()
    return deleted


TEST_CLAIM = "ivr-tests:claim:{number}"  # tests/conftest.py's claims, in Redis database 0
CLAIM_SECONDS = 2 * 3600


@contextmanager
def claimed_redis(url: str) -> Iterator[None]:
    """Hold the bench's Redis database number the way test runs claim theirs, so a test
    run on the same server (which empties the database it claims) picks another one.
    A cluster has only database 0 and nothing to claim."""
    import redis

    from ivr.storage import kv

    if kv.is_cluster_url(url):
        yield
        return
    number = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
    if not number:
        yield
        return
    claims = redis.Redis.from_url(url, db=0, socket_connect_timeout=3)
    key = TEST_CLAIM.format(number=number)
    token = f"bench-{secrets.token_hex(4)}"
    try:
        if not claims.set(key, token, nx=True, ex=CLAIM_SECONDS):
            raise SystemExit(
                f"Redis database {number} is in use by a test run: "
                "point IVR_BENCH_REDIS_URL at another database number"
            )
        try:
            yield
        finally:
            if claims.get(key) == token.encode():
                claims.delete(key)
    finally:
        claims.close()
