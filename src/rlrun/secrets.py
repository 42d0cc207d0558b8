"""Secrets never written down: passwords in URLs are masked wherever rlrun prints or writes text.

A storage URL such as `postgresql://user:PASSWORD@host/db` reaches command lines (manifest.json, the
W&B run's recorded arguments, rlrun-bench's and rlrun-report's records) and log lines. Every such write
goes through `mask_url_passwords`, which keeps the URL readable (scheme, user, host, database) and
replaces only the password by `***`, as SQLAlchemy's `URL.render_as_string(hide_password=True)` does
for one URL. A regex rather than SQLAlchemy itself: the text is a whole command line or log line, not
one URL, and SQLAlchemy is only installed with the `tune` extra. The database password belongs in
PGPASSWORD or ~/.pgpass, which libpq reads when the URL has none (docs/security.md).
"""

from __future__ import annotations

import logging
import re

MASK = "***"

# scheme://user:PASSWORD@host...: the password runs to the last '@' of the URL (up to a space or a quote),
# so a password holding an unescaped '@', '/', '?' or '#' is masked whole, never cut at its first '@' with its
# tail left readable. An '@' later in the URL (in its query) then hides a little more: the safe side.
_USERINFO_PASSWORD = re.compile(
    r"(?P<prefix>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@'\"]*:)"
    r"(?P<password>[^\s'\"]*)"
    r"(?=@[^\s@'\"]*(?:[\s'\"]|$))")
# ...?password=PASSWORD&...: libpq and SQLAlchemy also take the password as a query parameter.
_QUERY_PASSWORD = re.compile(r"(?P<prefix>[?&](?:password|passwd|pwd)=)(?P<password>[^&\s'\"#]*)", re.IGNORECASE)


def mask_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`:
    `postgresql://user:PASS@host/db` -> `postgresql://user:***@host/db`."""
    text = _USERINFO_PASSWORD.sub(lambda m: m["prefix"] + MASK, text)
    return _QUERY_PASSWORD.sub(lambda m: m["prefix"] + MASK, text)


def mask_args(args: list[str]) -> list[str]:
    """A command line's arguments, each with its URL passwords masked."""
    return [mask_url_passwords(arg) for arg in args]


def recordable_config(cfg) -> dict:
    """The config as a plain dict for the run's records (checkpoints, W&B): interpolations resolved, except
    any that reads the environment (`${oc.env:TOKEN}`), which is kept as written so that the secret it
    names never lands in a file; URL passwords masked. (Hydra's .hydra/config.yaml is written unresolved.)"""
    from omegaconf import OmegaConf

    def keep_env_reads(node):
        if isinstance(node, dict):
            return {key: keep_env_reads(value) for key, value in node.items()}
        if isinstance(node, list):
            return [keep_env_reads(value) for value in node]
        if isinstance(node, str):
            # `\${` is OmegaConf's escape for a literal `${`: the value resolves to the text as written.
            node = node.replace("${", "\\${") if "oc.env:" in node else node
            return mask_url_passwords(node)
        return node

    kept = keep_env_reads(OmegaConf.to_container(cfg, resolve=False))
    return OmegaConf.to_container(OmegaConf.create(kept), resolve=True)


class MaskPasswords(logging.Filter):
    """Masks URL passwords in every record it sees (the message with its arguments, and a traceback's text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_url_passwords(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_url_passwords(record.exc_text)
        return True


def mask_log_lines() -> None:
    """Mask URL passwords in every line of rlrun's logger, whatever its handlers, and in every line the root
    logger's handlers write (Hydra's cli.log and console). Safe to call more than once."""
    for target in (logging.getLogger("rlrun"), *logging.getLogger().handlers):
        if not any(isinstance(f, MaskPasswords) for f in target.filters):
            target.addFilter(MaskPasswords())
