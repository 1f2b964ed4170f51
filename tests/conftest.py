"""Shared fixtures. Real servers live in tests/fixtures/*: each starts once per
session on a free port and is stopped at the end; nothing is left running."""

pytest_plugins = [
    "tests.fixtures.s3",
    "tests.fixtures.seaweedfs",
    "tests.fixtures.postgres",
    "tests.fixtures.broker",
    "tests.fixtures.telephony",
    "tests.fixtures.sipcall",
    "tests.fixtures.oidc",
]
