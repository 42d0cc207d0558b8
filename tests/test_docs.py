"""The documentation site: its generated pages cover conf/ and src/, and `mkdocs build --strict` passes.

The config reference and the errors page are generated at build time (scripts/gen_config_reference.py,
scripts/gen_errors_reference.py): these tests check the generators against the files themselves, read
here by other means (yaml.safe_load for the keys, a plain text scan for the raising sites), so a key or
a message the generators miss fails here.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


config_reference = load_script("gen_config_reference")
errors_reference = load_script("gen_errors_reference")


def leaf_keys(node, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(leaf_keys(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in node.items()))
    return {prefix}


def test_config_reference_covers_every_key_of_every_conf_file():
    conf = ROOT / "conf"
    covered = {path for folder, _, _ in config_reference.GROUPS for path in config_reference.group_files(conf, folder)}
    every_yaml = set(conf.rglob("*.yaml"))
    assert every_yaml - covered == set(), "a conf/ folder the reference does not list (add it to GROUPS)"
    assert conf / "config.yaml" in covered and len(covered) > 50
    page = html.unescape(config_reference.render(conf))
    for path in sorted(every_yaml):
        data = yaml.safe_load(path.read_text()) or {}
        folder = "" if path.parent == conf else path.parent.relative_to(conf).as_posix()
        _, rows = config_reference.file_rows(conf, path, folder)
        expected = leaf_keys({k: v for k, v in data.items() if k != "defaults"}) | ({"defaults"} if "defaults" in data else set())
        # A row's key is the file's key under its package prefix (algo., hydra.launcher., tune., or none).
        found = {row.key for row in rows}
        for key in expected:
            assert any(f == key or f.endswith("." + key) for f in found), f"{path.relative_to(conf)}: {key} has no row"
            assert f"`{next(f for f in found if f == key or f.endswith('.' + key))}`" in page
        assert len(found) == len(expected), f"{path.relative_to(conf)}: rows {sorted(found)} vs keys {sorted(expected)}"


def test_config_reference_reads_prefixes_values_and_comments(tmp_path):
    (tmp_path / "algo").mkdir()
    (tmp_path / "algo" / "mine.yaml").write_text(
        "# @package _global_\n"
        "# My algorithm: the file's header.\n"
        "algo:\n"
        "  lr: 3.0e-4        # step size\n"
        "  steps: 10         # steps per update;\n"
        "                    # continued on the next line\n"
        "  # the comment block above a key\n"
        "  mode: a|b\n"
        "env:\n"
        "  normalize: false\n"
        "  init:\n"
        "    # the block above a key under a mapping without a comment\n"
        "    address: null\n"
        "    port: 1\n"
        "  items:\n"
        "    # inside a block list: the list's\n"
        "    - a\n")
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "E.yaml").write_text("id: E-v0   # gymnasium id `E-v0` <x>\nkwargs: {}\n")
    header, rows = config_reference.file_rows(tmp_path, tmp_path / "algo" / "mine.yaml", "algo")
    assert header == "My algorithm: the file's header."
    assert [(r.key, r.default, r.comment) for r in rows] == [
        ("algo.lr", "3.0e-4", "step size"),
        ("algo.steps", "10", "steps per update; continued on the next line"),
        ("algo.mode", "a|b", "the comment block above a key"),
        ("env.normalize", "false", ""),
        ("env.init.address", "null", "the block above a key under a mapping without a comment"),
        ("env.init.port", "1", ""),
        ("env.items", "[a]", "inside a block list: the list's")]
    _, rows = config_reference.file_rows(tmp_path, tmp_path / "env" / "E.yaml", "env")
    assert [(r.key, r.default) for r in rows] == [("env.id", "E-v0"), ("env.kwargs", "{}")]
    assert config_reference.cell(rows[0].comment) == "gymnasium id <code>E-v0</code> &lt;x&gt;"
    assert "&#124;" in config_reference.cell("a|b", code=True)  # a pipe would split the table row


def raising_sites(src: Path) -> dict[str, int]:
    """Per module, how many places raise ConfigError/RunError or exit with an `rlrun...: error:` line, by a
    plain text scan (not the generator's ast walk)."""
    counts = {}
    pattern = re.compile(r"raise (ConfigError|RunError)\(|sys\.exit\(f?[\"']rlrun[\w-]*: error: ")
    for path in sorted(src.rglob("*.py")):
        found = len(pattern.findall(path.read_text()))
        if found:
            counts[errors_reference.module_name(src, path)] = found
    return counts


def test_errors_page_lists_every_error_message_of_src():
    src = ROOT / "src"
    messages = errors_reference.find_messages(src)
    by_module: dict[str, int] = {}
    for message in messages:
        if message.kind != "hydra":
            by_module[message.module] = by_module.get(message.module, 0) + 1
    assert by_module == raising_sites(src)
    assert any(m.kind == "hydra" for m in messages), "describe_hydra_error's lines are listed"
    page = html.unescape(errors_reference.render(src))
    # Every message's opening words, as the source writes them, are on the page.
    opening = re.compile(r"(?:raise (?:ConfigError|RunError)\(|sys\.exit\()\s*f?([\"'])(.*?)(?:\{|\1)", re.DOTALL)
    for path in sorted(src.rglob("*.py")):
        for _, text in opening.findall(path.read_text()):
            if re.fullmatch(r"rlrun[\w-]*: error: ", text):  # a command printing a message of the page
                assert f"`{text.split(':')[0]}`" in page
            else:
                assert text in page, f"{path.relative_to(ROOT)}: '{text}' is not on the errors page"
    assert "<message built above the raise>" not in page, "a message the generator could not read"


def test_errors_page_renders_placeholders_for_values(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "import sys\n"
        "def check(cfg, values):\n"
        "    if cfg.lr <= 0:\n"
        "        raise ConfigError(f'algo.lr must be > 0 (got {cfg.lr!r}); pass algo.lr=3e-4')\n"
        "    raise RunError('loss is NaN' + f' at step {values[-1]}')\n"
        "def main():\n"
        "    sys.exit(f'rlrun-x: error: {error}')\n")
    messages = errors_reference.find_messages(tmp_path)
    assert [(m.function, m.kind, m.text) for m in messages] == [
        ("check", "ConfigError", "algo.lr must be > 0 (got <lr>); pass algo.lr=3e-4"),
        ("check", "RunError", "loss is NaN at step <values>"),
        ("main", "exit", "rlrun-x: error: <error>")]


def test_mkdocs_builds_the_site_with_strict(tmp_path):
    for package in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(package.split(".")[0]) is None:
            pytest.skip(f"{package} is not installed: `pip install -e '.[docs]'` (make installs it)")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "config-reference" / "index.html").is_file()
    assert (tmp_path / "site" / "errors" / "index.html").is_file()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "load_policy" in api and "experiment" in api
    assert not (ROOT / "docs" / "config-reference.md").exists()  # generated into the site only


def test_every_link_of_the_readme_points_at_a_file_of_the_repository():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert len(local) >= 10
    for link in local:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"
    assert len(readme.splitlines()) <= 120
