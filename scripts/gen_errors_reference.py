"""The list of every error line rlrun's commands can print, generated from src/ so that it cannot drift.

An error reaches the user as one line, `rlrun: error: <message>` (`rlrun-tune: error:`, `rlrun-eval:
error:`, ... from the other commands), from three kinds of place, all read here with ast:
- `raise ConfigError(...)` / `raise RunError(...)`: bad input before anything trains, or a run that had
  to stop (the commands print the message after their prefix);
- `sys.exit("rlrun...: error: ...")` in the commands themselves;
- the strings `describe_hydra_error` returns for Hydra's own composition errors (an unknown choice or key).
Each message is shown as its source writes it, with `<...>` where the code fills in a value, and where
it is raised. The messages say what is wrong and what to do; the value rules of `from_config` (every
`rule(...)` field of a config dataclass) are tabulated at the end.

    python scripts/gen_errors_reference.py [--src src] [--out errors.md]

`make docs` runs it through the MkDocs hook (scripts/mkdocs_hooks.py).
"""

from __future__ import annotations

import argparse
import ast
import html
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ERRORS = ("ConfigError", "RunError")
DESCRIBERS = ("describe_hydra_error",)  # functions whose returned strings are printed as error lines


@dataclass
class Message:
    module: str    # rlrun.cli
    function: str  # the enclosing function or class.method ("" at module level)
    line: int
    kind: str      # ConfigError, RunError, exit, hydra
    text: str      # the message with <placeholders>


CONVERSIONS = {"str", "repr", "len", "int", "float", "sorted", "list", "tuple", "abs", "round"}


def value_name(node: ast.expr) -> str:
    """A short name for the value an expression fills in: `cfg.lr` -> lr, `choices['algo']` -> algo,
    `', '.join(fields)` -> fields, `type(error).__name__` -> error type."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        if node.attr == "__name__" and isinstance(node.value, ast.Call) and getattr(node.value.func, "id", "") == "type":
            return f"{value_name(node.value.args[0])} type"
        return node.attr
    if isinstance(node, ast.Subscript):
        key = node.slice
        return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else value_name(node.value)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id in CONVERSIONS and node.args:
            return value_name(node.args[0])
        if isinstance(func, ast.Attribute):
            return value_name(node.args[0]) if func.attr == "join" and node.args else value_name(func.value)
        return value_name(func).lstrip("_")
    if isinstance(node, ast.IfExp):
        return value_name(node.body)
    if isinstance(node, ast.BoolOp):
        return value_name(node.values[0])
    if isinstance(node, ast.BinOp):
        return value_name(node.left)
    return "value"


def placeholder(node: ast.expr) -> str:
    return f"<{value_name(node)}>"


def message_text(node: ast.expr) -> str | None:
    """The message of a string expression: literals as written, formatted values as <placeholders>,
    `a + b` joined; None for an expression that is not a string built in place (a variable)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append(placeholder(value.value))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = message_text(node.left), message_text(node.right)
        if left is not None and right is not None:
            return left + right
        if left is not None:
            return left + "<...>"
    if isinstance(node, ast.IfExp):
        body = message_text(node.body)
        return body if body is not None else message_text(node.orelse)
    return None


class Finder(ast.NodeVisitor):
    def __init__(self, module: str):
        self.module, self.where, self.found = module, [], []

    def visit_FunctionDef(self, node):
        self.where.append(node.name)
        self.generic_visit(node)
        self.where.pop()

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef

    def add(self, node: ast.AST, kind: str, expr: ast.expr | None) -> None:
        text = message_text(expr) if expr is not None else None
        self.found.append(Message(self.module, ".".join(self.where), node.lineno, kind,
                                  text if text is not None else "<message built above the raise>"))

    def visit_Raise(self, node):
        call = node.exc
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in ERRORS:
            self.add(node, call.func.id, call.args[0] if call.args else None)
        self.generic_visit(node)

    def visit_Call(self, node):
        func = node.func
        if (isinstance(func, ast.Attribute) and func.attr == "exit" and isinstance(func.value, ast.Name)
                and func.value.id == "sys" and node.args):
            text = message_text(node.args[0])
            if text is not None and re.match(r"rlrun[\w-]*: error: ", text):
                self.add(node, "exit", node.args[0])
        self.generic_visit(node)

    def visit_Return(self, node):
        if self.where and self.where[-1] in DESCRIBERS and node.value is not None:
            if message_text(node.value) is not None:
                self.add(node, "hydra", node.value)
        self.generic_visit(node)


def module_name(src: Path, path: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parsed_modules(src: Path) -> list[tuple[str, ast.Module]]:
    """(module name, syntax tree) of every .py file under `src`, in path order: the one walk that both
    the messages and the rules are read from."""
    return [(module_name(src, path), ast.parse(path.read_text(), str(path))) for path in sorted(src.rglob("*.py"))]


def find_messages(src: Path) -> list[Message]:
    found = []
    for module, tree in parsed_modules(src):
        finder = Finder(module)
        finder.visit(tree)
        found += finder.found
    return found


@dataclass
class RuleField:
    module: str
    cls: str
    field: str
    rule: str


RULES = {"POSITIVE": "> 0", "NON_NEGATIVE": ">= 0", "UNIT_INTERVAL": "in [0, 1]"}


def find_rules(src: Path) -> list[RuleField]:
    """Every `name: type = rule(CHECK)` field of a config dataclass: from_config refuses a value that
    breaks it with `<group>.<name> must be <rule> (got <value>)`."""
    fields = []
    for module, tree in parsed_modules(src):
        for cls in ast.walk(tree):
            if not isinstance(cls, ast.ClassDef):
                continue
            for stmt in cls.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.value, ast.Call)
                        and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id == "rule"
                        and stmt.value.args and isinstance(stmt.target, ast.Name)):
                    check = stmt.value.args[0]
                    if isinstance(check, ast.Name):
                        text = RULES.get(check.id, check.id)
                    elif isinstance(check, ast.Call) and getattr(check.func, "id", "") == "one_of":
                        text = "one of " + ", ".join(ast.unparse(a).strip("'\"") for a in check.args)
                    else:
                        text = ast.unparse(check)
                    fields.append(RuleField(module, cls.name, stmt.target.id, text))
    return fields


def code(text: str) -> str:
    return "<code>" + html.escape(text, quote=False).replace("|", "&#124;") + "</code>"


KINDS = {"ConfigError": "bad input", "RunError": "run stopped", "exit": "command", "hydra": "composition"}


def render(src: Path) -> str:
    messages = find_messages(src)
    lines = ["# Errors", "",
             "Bad input stops every rlrun command at once, with one line and a non-zero exit, before anything "
             "trains and before any file of a run directory changes (a refused new run leaves no directory "
             "behind). `rlrun` prints `rlrun: error: <message>`; `rlrun-tune`, `rlrun-eval`, `rlrun-bench` and "
             "`rlrun-report` print the same messages after their own name. A run that has to stop while "
             "training (a loss gone NaN, a full disk) ends the same way and keeps its last good checkpoint; "
             "every error line and its traceback are also in the run directory's `cli.log`.", "",
             "This page is generated from the source (`scripts/gen_errors_reference.py`, run by `make docs`): "
             f"all {len(messages)} places that raise or print an error line, grouped by module. `<name>` marks "
             "a value filled in when the error happens; each message says what is wrong and, after the `;` "
             "or `:`, what to do. Messages from the algorithm and env checks are prefixed by where they "
             "were found (`suite smoke, entry ppo on CartPole: ...`).", "",
             "Kinds: *bad input* (a `ConfigError`: caught before anything trains or any file of a run directory "
             "changes), *run stopped* (a `RunError` while training: the last good checkpoint is kept), *command* "
             "(printed by the command itself), *composition* (Hydra's own error about an unknown choice or key, "
             "in one line).", ""]
    # `sys.exit(f"rlrun: error: {error}")`: a command printing one of the messages below after its name.
    relays = [m for m in messages if m.kind == "exit" and re.fullmatch(r"rlrun[\w-]*: error: <[^<>]+>", m.text)]
    commands = sorted({m.text.split(":")[0] for m in relays})
    lines += [f"The commands ({', '.join(f'`{c}`' for c in commands)}) print the messages below after their own "
              f"name ({len(relays)} places in rlrun.cli and rlrun.tune); the other lines they print themselves are "
              "listed with their module.", ""]
    by_module: dict[str, list[Message]] = {}
    for message in messages:
        if message not in relays:
            by_module.setdefault(message.module, []).append(message)
    for module, found in by_module.items():
        lines += [f"## {module}", "", "| message | where | kind |", "|---|---|---|"]
        for m in found:
            where = f"{m.function or '(module)'}, line {m.line}"
            lines.append(f"| {code(m.text)} | {code(where)} | {KINDS[m.kind]} |")
        lines.append("")
    rules = find_rules(src)
    lines += ["## Checked values", "",
              "Every config value is type-checked when its group is read (`rlrun.config.from_config`): a value of "
              "the wrong type gives `<group>.<key> must be of type <type> (got <value>)`, an unknown key `unknown "
              "key '<group>.<key>'; valid keys: ...`, and a value that breaks its rule `<group>.<key> must be "
              "<rule> (got <value>)`. The rules, from the config dataclasses:", "",
              "| module | dataclass | key | must be |", "|---|---|---|---|"]
    lines += [f"| {r.module} | {r.cls} | {code(r.field)} | {code(r.rule)} |" for r in rules]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--out", type=Path, default=None, help="write the page here (default: print it)")
    args = parser.parse_args()
    page = render(args.src)
    if args.out:
        args.out.write_text(page)
    else:
        print(page)


if __name__ == "__main__":
    main()
