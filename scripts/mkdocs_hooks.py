"""MkDocs hooks (mkdocs.yml `hooks:`): the pages generated from the project itself, added to the site at
build time and never written into docs/, so that they always match conf/ and src/ as built:

- config-reference.md from conf/ (scripts/gen_config_reference.py);
- errors.md from src/ (scripts/gen_errors_reference.py).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]


def _generator(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    spec.loader.exec_module(module)
    return module


def on_files(files, config):
    pages = {"config-reference.md": _generator("gen_config_reference").render(ROOT / "conf"),
             "errors.md": _generator("gen_errors_reference").render(ROOT / "src")}
    for uri, content in pages.items():
        if files.get_file_from_path(uri) is not None:
            raise ValueError(f"docs/{uri} is generated at build time; remove the file from docs/")
        files.append(File.generated(config, uri, content=content))
    return files
