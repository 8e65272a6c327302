"""Time `ivr customers import` on PostgreSQL with a generated file (100,000 rows by default).

    .venv/bin/python scripts/bench_customers_import.py [--rows N] [--server URL]

It creates a scratch database on the server (default: the local test server, see
the README), runs the real `ivr customers import` against it, and drops it again:
no existing database is touched. It times, each as a separate run of the command:
a fresh import, a re-import of the unchanged file, a re-import where every 10th
row's name changed, and an import of as many new customers again. The README's
figures come from here. Every 10th row is a family member on the previous row's
phone, without email; a fifth of the others have no email either.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
AREAS = ("415", "212", "312", "617", "206", "303", "404", "512", "602", "702")
FORMS = ("({a}) {x}-{n}", "{a}-{x}-{n}", "+1 {a} {x} {n}", "{a}.{x}.{n}")


def phones(count: int) -> list[str]:
    """Distinct valid US numbers (no N11 or 555 exchange), written in assorted ways."""
    found: list[str] = []
    exchange = 201
    while len(found) < count:
        x = f"{exchange:03d}"
        exchange += 1
        if x[1:] == "11" or x == "555":
            continue
        for area in AREAS:
            for line in range(0, 10000, 7):
                found.append(FORMS[line % 4].format(a=area, x=x, n=f"{line:04d}"))
    return found[:count]


def write_csv(path: Path, rows: int, *, offset: int = 0, renamed_every: int = 0) -> None:
    numbers = phones(offset + rows)
    with path.open("w", encoding="utf-8") as out:
        out.write("name,phone,account_number,email\n")
        for i in range(offset, offset + rows):
            family = i % 10 == 9
            name = f"Customer {i}"
            if renamed_every and i % renamed_every == 0:
                name += " Renamed"
            email = "" if family or i % 5 == 3 else f"Customer{i}@Example.com"
            out.write(f"{name},{numbers[i - 1 if family else i]},{10_000_000 + i},{email}\n")


def run_import(url: str, path: Path, label: str, rows: int) -> None:
    env = {**os.environ, "IVR_ENV": "development", "DATABASE_URL": url}
    env.setdefault("IVR_DEFAULT_REGION", "US")
    command = [sys.executable, "-c", "from ivr.cli import main; main()"]
    start = time.perf_counter()
    done = subprocess.run(
        [*command, "customers", "import", str(path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    output = done.stdout.strip() or done.stderr.strip()[-300:]
    print(f"{label}: {seconds:.1f} s, {rows / seconds:,.0f} rows/s")
    print(f"    {output}")
    if done.returncode != 0:
        sys.exit(done.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    server = sa.make_url(args.server)
    name = f"ivr_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {name}"))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        sys.path.insert(0, str(ROOT))
        from ivr.storage.migrate import upgrade

        upgrade(url)
        with tempfile.TemporaryDirectory() as tmp:
            first, renamed, more = (
                Path(tmp) / n for n in ("customers.csv", "renamed.csv", "more.csv")
            )
            write_csv(first, args.rows)
            write_csv(renamed, args.rows, renamed_every=10)
            write_csv(more, args.rows, offset=args.rows)
            print(f"{args.rows:,} rows, PostgreSQL database {name}, {os.cpu_count()} CPUs")
            run_import(url, first, "fresh import", args.rows)
            run_import(url, first, "re-import, unchanged", args.rows)
            run_import(url, renamed, "re-import, every 10th row renamed", args.rows)
            run_import(
                url, more, f"as many new customers again (a table of {args.rows:,})", args.rows
            )
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


if __name__ == "__main__":
    main()
