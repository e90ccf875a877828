"""Password hashes for the ``local_groups`` login mode.

Supported formats (a plain password is never accepted):

* ``pbkdf2_sha256$<iterations>$<salt, base64>$<hash, base64>`` (standard library)
* bcrypt ``$2a$`` / ``$2b$`` / ``$2y$`` hashes

Make a hash:  ``python -m labhub_hub.passwords`` (reads the password from stdin
or asks for it without echo).
"""

import base64
import getpass
import hashlib
import hmac
import os
import sys

PBKDF2_ITERATIONS = 600_000
_PBKDF2_PREFIX = "pbkdf2_sha256$"
_BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


def is_supported_hash(value):
    if not isinstance(value, str):
        return False
    if value.startswith(_PBKDF2_PREFIX):
        parts = value.split("$")
        return len(parts) == 4 and parts[1].isdigit() and all(parts[2:])
    return value.startswith(_BCRYPT_PREFIXES) and len(value) == 60


def hash_password(password, iterations=PBKDF2_ITERATIONS, salt=None):
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "$".join(
        [
            "pbkdf2_sha256",
            str(iterations),
            base64.b64encode(salt).decode("ascii"),
            base64.b64encode(digest).decode("ascii"),
        ]
    )


def verify_password(password, stored):
    """Constant-time check of ``password`` against a supported hash."""
    if not is_supported_hash(stored):
        raise ValueError("unsupported password hash format")
    if stored.startswith(_PBKDF2_PREFIX):
        _, iterations, salt_b64, digest_b64 = stored.split("$")
        salt = base64.b64decode(salt_b64)
        expected = base64.b64decode(digest_b64)
        actual = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, int(iterations))
        return hmac.compare_digest(actual, expected)
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode("utf-8"), stored.encode("ascii"))
    except ValueError:
        return False


def main(argv=None):
    if sys.stdin.isatty():
        password = getpass.getpass("Group password: ")
        if password != getpass.getpass("Again: "):
            print("passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\n")
    if not password:
        print("empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
