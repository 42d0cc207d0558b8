"""The reference of every config key, generated from conf/ so that it cannot drift from it.

For each YAML file of conf/ (config.yaml, then every group file), one table row per key: the key as it
is overridden on the command line (the file's package prefix included: `algo.learning_rate`, or the
global path of a `# @package _global_` file), its default as the file writes it, and the comment the
file gives it (the comment on the key's line, its indented continuation lines, and a comment block
right above the key). Values come from the YAML itself (yaml.safe_load), comments from the lines, so a
key without a comment still gets its row.

    python scripts/gen_config_reference.py [--conf conf] [--out config-reference.md]

`make docs` runs it through the MkDocs hook (scripts/mkdocs_hooks.py), which adds the page to the site
without writing it into docs/.
"""

from __future__ import annotations

import argparse
import html
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEY = re.compile(r"^(?P<indent> *)(?P<key>[^\s#:][^:#]*?|'[^']*'|\"[^\"]*\"):(?:\s+(?P<value>.*?))?\s*$")

# (folder under conf/, title, what the group is and how its keys are set), in the page's order.
GROUPS = [
    ("", "Top level: conf/config.yaml", "The defaults list picks one file per group; the run-level keys are "
     "set as `key=value` (`seed=3`, `eval.every_steps=20000`)."),
    ("algo", "algo", "One file per algorithm (`algo=<name>`); its hyperparameters are `algo.<key>=...`. "
     "Files marked `# @package _global_` also set env and network keys the algorithm needs by default."),
    ("env", "env", "One file per environment (`env=<Name>`); keys `env.<key>=...`."),
    ("network", "network", "Torsos (`network=mlp|cnn`); keys `network.<key>=...`."),
    ("hardware", "hardware", "Hardware profiles (`hardware=cpu|gpu|auto`); keys `hardware.<key>=...`."),
    ("logger", "logger", "Where metrics go (`logger=<name>`); keys `logger.<key>=...`."),
    ("tuned", "tuned", "Per-(algo, env) hyperparameters, picked up automatically when `conf/tuned/<algo>_<Env>.yaml` "
     "exists; they override the algo and env files and are overridden by the command line."),
    ("hydra/launcher", "hydra/launcher", "Where the jobs of a sweep (`rlrun -m`) run: `hydra/launcher=<name>`; keys "
     "`hydra.launcher.<key>=...`."),
    ("tune", "tune", "`rlrun-tune`: its own keys (settings.yaml, set as `tune.<key>=...`) and one search space per "
     "algorithm (config key -> distribution)."),
    ("bench", "bench", "`rlrun-bench SUITE`: one file per suite; a suite key is overridden as `key=value` after the "
     "suite's name (`rlrun-bench smoke seeds=[0,1]`)."),
]


@dataclass
class Row:
    file: str      # path under conf/
    key: str       # dotted key as overridden on the command line
    default: str   # the value, as YAML flow text
    comment: str


def package_prefix(path: Path, folder: str, text: str) -> str:
    """The config path a file's keys live under: its group, or what its `# @package` line says. Not
    config groups: a search space's keys are config keys already, a suite's keys stand alone, and
    rlrun-tune's own keys (tune/settings.yaml) are set as tune.<key>."""
    match = re.search(r"^#\s*@package\s+(\S+)", text, re.MULTILINE)
    if match:
        return "" if match.group(1) == "_global_" else match.group(1)
    if folder == "tune":
        return "tune" if path.stem == "settings" else ""
    return "" if folder == "bench" else folder.replace("/", ".")


def flatten(node, prefix: str = "") -> dict[str, object]:
    """Leaf keys of a YAML mapping as dotted paths (lists and empty mappings are leaves)."""
    if isinstance(node, dict) and node:
        out = {}
        for key, value in node.items():
            out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: node}


def comments_by_path(text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(the file's header comment, {dotted key path: its comment}, {dotted key path: its value as
    written on the key's line}) from the lines of a YAML file."""
    raw: dict[str, str] = {}
    header: list[str] = []
    comments: dict[str, list[str]] = {}
    stack: list[tuple[int, str]] = []   # (indent, key) of the open mappings
    pending: list[str] = []              # comment lines above the next key
    last: tuple[str, int] | None = None  # (path, indent) of the key a continuation comment belongs to
    seen_key = False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            pending, last = [], None
            continue
        if stripped.startswith("#"):
            body = stripped.lstrip("#").strip()
            if body.startswith("@package"):
                continue
            indent = len(line) - len(line.lstrip())
            if last is not None and indent > last[1] and comments[last[0]]:  # continues the key's comment
                comments[last[0]].append(body)
            elif not seen_key:
                header.append(body)
            else:
                pending.append(body)
            continue
        if stripped.startswith("- "):  # an item of a block list: part of the key above, as its comments
            if last is not None and pending:
                comments[last[0]] += pending
                pending = []
            continue
        match = KEY.match(line.split(" #")[0] if " #" in line else line)
        if not match:
            continue
        seen_key = True
        indent, key = len(match.group("indent")), match.group("key").strip().strip("'\"")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([k for _, k in stack] + [key])
        inline = line.split(" #", 1)[1].strip() if " #" in line else ""
        comments[path] = [*pending, *([inline] if inline else [])]
        if match.group("value"):
            raw[path] = match.group("value").strip()
        pending, last = [], (path, indent)
        stack.append((indent, key))
    return " ".join(header), {path: " ".join(lines) for path, lines in comments.items()}, raw


def flow(value) -> str:
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "<br>".join(flow(v) for v in value)  # a suite's entries: one per line
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def file_rows(conf: Path, path: Path, folder: str) -> tuple[str, list[Row]]:
    """(header comment, rows) of one YAML file."""
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    header, comments, raw = comments_by_path(text)
    prefix = package_prefix(path, folder, text)
    rows = []
    for key, value in flatten({k: v for k, v in data.items() if k != "defaults"}).items():
        full = f"{prefix}.{key}" if prefix else key
        rows.append(Row(str(path.relative_to(conf)), full, raw.get(key) or flow(value), comments.get(key, "")))
    if "defaults" in data:
        rows.insert(0, Row(str(path.relative_to(conf)), "defaults", flow(data["defaults"]),
                           comments.get("defaults", "")))
    return header, rows


def group_files(conf: Path, folder: str) -> list[Path]:
    if not folder:
        return [conf / "config.yaml"]
    return sorted((conf / folder).glob("*.yaml"), key=lambda p: (p.stem != "settings", p.stem.lower()))


def all_rows(conf: Path) -> list[Row]:
    """Every row of the reference (what tests/test_docs.py checks against the YAML files)."""
    return [row for folder, _, _ in GROUPS for path in group_files(conf, folder)
            for row in file_rows(conf, path, folder)[1]]


def _text(part: str) -> str:
    """Plain comment text for Markdown: no raw HTML, no emphasis from * and _, no column breaks."""
    return re.sub(r"([\\*_\[\]])", r"\\\1", html.escape(part, quote=False)).replace("|", "&#124;")


def _code(part: str) -> str:
    return "<code>" + html.escape(part, quote=False).replace("|", "&#124;") + "</code>" if part else ""


def cell(text: str, code: bool = False) -> str:
    """Text safe inside a Markdown table cell: a value as code, a comment as text with its `code` spans;
    <br> (a suite's entries, one per line) kept."""
    if code:
        return "<br>".join(_code(part) for part in text.split("<br>"))
    pieces = text.split("`")
    return "".join(_code(p) if i % 2 else _text(p) for i, p in enumerate(pieces)) if len(pieces) % 2 else _text(text)


def render(conf: Path) -> str:
    lines = ["# Config reference", "",
             "Every key of every file under `conf/`, generated from the YAML files by "
             "`scripts/gen_config_reference.py` when the site is built: the key as you override it on the "
             "command line, its default in that file, and the file's comment on it. Pick a file of a group "
             "with `group=name` (`algo=sac`), then override its keys (`algo.batch_size=512`); `rlrun --cfg job "
             "algo=sac env=Hopper` prints the composed result. See [Choosing configs](configs.md) for how the "
             "groups combine.", ""]
    for folder, title, about in GROUPS:
        files = group_files(conf, folder)
        if not files:
            continue
        lines += [f"## {title}", "", about, ""]
        for path in files:
            header, rows = file_rows(conf, path, folder)
            name = str(path.relative_to(conf))
            if folder:
                lines += [f"### {path.stem}", ""]
            lines += [f"`conf/{name}`" + (f": {cell(header)}" if header else ""), ""]
            if not rows:
                lines += ["(no keys)", ""]
                continue
            lines += ["| key | default | what it does |", "|---|---|---|"]
            lines += [f"| `{row.key}` | {cell(row.default, code=True)} | {cell(row.comment)} |" for row in rows]
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", type=Path, default=ROOT / "conf")
    parser.add_argument("--out", type=Path, default=None, help="write the page here (default: print it)")
    args = parser.parse_args()
    page = render(args.conf)
    if args.out:
        args.out.write_text(page)
    else:
        print(page)


if __name__ == "__main__":
    main()
