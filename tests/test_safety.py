"""Run directories are data, configs are code, and no secret is written down (docs/security.md)."""

from __future__ import annotations

import pytest

from rlrun.secrets import mask_url_passwords


@pytest.mark.parametrize("url", [
    "postgresql://user:PASS@host/db",
    "postgresql+psycopg2://user:PASS@host:5432/db",
    "mysql://root:s3cr%40t@127.0.0.1:3306/optuna",
    "postgresql://user:PASS@[::1]:5432/db?sslmode=require",
    "sqlite:///outputs/tune/study.db",
    "postgresql://user@host/db",
])
def test_url_password_is_masked_as_sqlalchemy_renders_it(url):
    make_url = pytest.importorskip("sqlalchemy.engine").make_url
    assert mask_url_passwords(url) == make_url(url).render_as_string(hide_password=True)


@pytest.mark.parametrize("text, expected", [
    ("rlrun-tune tune.storage=postgresql://alice:hunter2@db.lab:5432/studies algo=ppo",
     "rlrun-tune tune.storage=postgresql://alice:***@db.lab:5432/studies algo=ppo"),
    # an unescaped '@' or '/' in the password: masked whole, never cut at its first '@'
    ("tune.storage='postgresql://alice:p@ss/w@rd@db.lab/studies'", "tune.storage='postgresql://alice:***@db.lab/studies'"),
    ("postgresql://alice:p?a#s@db.lab/studies", "postgresql://alice:***@db.lab/studies"),
    # an '@' in the query: masked up to it (more than the password, never less)
    ("postgresql://alice:pw@db.lab/s?application_name=a@b", "postgresql://alice:***@b"),
    ("postgresql://db.lab/studies?user=alice&password=hunter2&sslmode=require",
     "postgresql://db.lab/studies?user=alice&password=***&sslmode=require"),
    ("two: redis://:tok@r1:6379/0 and postgresql://bob:pw2@h/db", "two: redis://:***@r1:6379/0 and postgresql://bob:***@h/db"),
    ("no secrets: http://example.org:8080/path user:pass tune.storage=null", "no secrets: http://example.org:8080/path user:pass tune.storage=null"),
])
def test_url_passwords_are_masked_in_any_text(text, expected):
    assert mask_url_passwords(text) == expected
    assert mask_url_passwords(expected) == expected
