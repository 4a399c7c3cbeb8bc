"""Account administration from the server's shell: the first admin, and unlocking a locked name.

    python -m db.admin create-admin NAME [--url URL] [--password-stdin]
    python -m db.admin unlock NAME [--url URL]

``create-admin`` makes an admin account (the first one of an empty database, or another one: whoever
can run this can read the database file anyway). The password is asked twice on the terminal, or
read from the first line of standard input with ``--password-stdin`` (for scripts). The URL
defaults to ``$SAFEGEN_DB_URL`` or ``data/safegen.db``; the schema is migrated first.

The web pages never create an admin from an anonymous visit: on an empty database they ask for
the one-time setup token the dashboard prints to its log (``ui.study.setup_token``).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from sqlalchemy import delete

from db.migrate import upgrade
from db.models import Role, SignInThrottle
from db.repository import StudyError, create_account
from db.session import make_engine, make_session_factory, session_scope

EXIT_REFUSED = 2


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    password = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != password:
        raise StudyError("the two passwords differ")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m db.admin", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-admin", help="make an admin account")
    create.add_argument("username")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    unlock = sub.add_parser("unlock", help="clear a name's failed sign-ins and lock-out")
    unlock.add_argument("username")
    for command in (create, unlock):
        command.add_argument("--url", help="database URL (default $SAFEGEN_DB_URL or data/safegen.db)")
    args = parser.parse_args(argv)

    engine = make_engine(args.url)
    try:
        upgrade(engine)
        factory = make_session_factory(engine)
        if args.command == "create-admin":
            password = _password(args.password_stdin)
            with session_scope(factory) as session:
                admin = create_account(session, args.username, password, Role.ADMIN)
            print(f"admin account {admin.username!r} created in {engine.url.render_as_string(hide_password=True)}")
        else:
            with session_scope(factory) as session:
                cleared = session.execute(delete(SignInThrottle).where(SignInThrottle.username == args.username))
            print(f"{args.username!r}: {'unlocked' if cleared.rowcount else 'had no failed sign-ins'}")
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
