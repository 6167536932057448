"""The pack's dependency rules, read from the source (AST, nothing imported): ComfyUI only through nodes/host.py,
dimx_core never reaching nodes/ or ComfyUI, and dimx_core's packages importing only downward."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# dimx_core's packages (and top-level modules) from the bottom up: a module may import its own package and the
# tiers below it, never a sibling of its tier or anything above. A new package gets a row here.
TIERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "optional"),            # the version; optional dependencies
    ("files", "hooks", "images", "weight_files"),  # atomic files, progress/cancel, reading images, file sniffing
    ("weights", "sat_checkpoint"),       # reading weight files (safetensors, weights-only pickles, SAT checkpoints)
    ("cogvideox", "camera"),             # leaf facts: CogVideoX configs and key names; camera geometry
    ("directors",),
    ("speed",),
    ("video",),
    ("identity",),
    ("recon",),
    ("datasets",),                       # dimension-variant data: scenes rendered along paths, curated videos
    ("training",),                       # the director trainer
    ("backends", "tiny"),
    ("cli",),
    ("__main__",),
)
TIER = {name: rank for rank, names in enumerate(TIERS) for name in names}

# ComfyUI's own top-level modules; only nodes/host.py imports them.
COMFY_MODULES = {"comfy", "comfy_extras", "comfy_execution", "comfy_api", "comfy_config", "folder_paths", "server",
                 "latent_preview", "nodes", "execution", "comfyui_version", "node_helpers", "app"}
# What node modules may take from ComfyUI directly: the V3 schema API.
SCHEMA_MODULE, SCHEMA_NAMES = "comfy_api.latest", {"io", "ui", "Types", "ComfyExtension"}
HOST_MODULE = REPO / "nodes" / "host.py"


def imports(path: Path, root: Path = REPO) -> list[tuple[int, str, list[str], bool]]:
    """(line, module, imported names, relative?) of every import in the file, also those inside functions.
    Relative imports are resolved against the file's package: the repository root is the pack's package, so
    `from ..video import x` in dimx_core/directors/ gives dimx_core.video, and `from . import host` in nodes/ gives
    nodes.host (the pack's own nodes/, not ComfyUI's `nodes` module)."""
    package = path.relative_to(root).parent.parts
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, [], False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level == 0:
                found.append((node.lineno, node.module, names, False))
                continue
            base = package[:len(package) - node.level + 1]
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module]), names, True))
                continue
            for name in names:  # `from . import a`: a submodule, or a name the package itself defines
                is_module = (root.joinpath(*base, f"{name}.py").is_file() or root.joinpath(*base, name).is_dir())
                found.append((node.lineno, ".".join([*base, name] if is_module else base), [name], True))
    return found


def pack_files(folder: str, root: Path = REPO) -> list[Path]:
    return sorted((root / folder).rglob("*.py"))


def unit_of(module: str) -> str | None:
    """The dimx_core package or top-level module a dotted name belongs to (None: not dimx_core)."""
    parts = module.split(".")
    if parts[0] != "dimx_core":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def is_comfy(module: str) -> bool:
    return module.split(".")[0] in COMFY_MODULES


def layering_problems(path: Path, root: Path = REPO) -> list[str]:
    """What a dimx_core file imports against the tiers, ComfyUI or nodes/."""
    own = path.relative_to(root / "dimx_core").parts[0].removesuffix(".py")
    problems = []
    for line, module, _, relative in imports(path, root):
        target = unit_of(module)
        if (module.split(".")[0] == "nodes") if relative else is_comfy(module):
            problems.append(f"line {line}: {module} (dimx_core never imports ComfyUI or nodes/)")
        elif target is not None and target != own and TIER[target] >= TIER[own]:
            problems.append(f"line {line}: {module} ({own} is tier {TIER[own]}, {target} tier {TIER[target]})")
    return problems


def comfy_problems(path: Path, root: Path = REPO) -> list[str]:
    """ComfyUI imports of a node module other than the V3 schema API."""
    problems = []
    for line, module, names, relative in imports(path, root):
        if relative or (module == SCHEMA_MODULE and set(names) <= SCHEMA_NAMES):
            continue
        if is_comfy(module):
            problems.append(f"line {line}: {module} {names or ''}".rstrip())
    return problems


def test_every_dimx_core_package_has_a_tier():
    units = {path.relative_to(REPO / "dimx_core").parts[0].removesuffix(".py") for path in pack_files("dimx_core")}
    assert units <= set(TIER), f"add {sorted(units - set(TIER))} to TIERS in {Path(__file__).name}"


@pytest.mark.parametrize("path", pack_files("dimx_core"), ids=lambda p: str(p.relative_to(REPO)))
def test_dimx_core_imports_only_downward_and_never_comfyui_or_nodes(path):
    problems = layering_problems(path)
    assert not problems, f"{path.relative_to(REPO)} imports upward, sideways or outside the library:\n" + \
        "\n".join(problems)


@pytest.mark.parametrize("path", [REPO / "__init__.py", *pack_files("nodes")], ids=lambda p: str(p.relative_to(REPO)))
def test_comfyui_is_imported_only_by_nodes_host(path):
    problems = [] if path == HOST_MODULE else comfy_problems(path)
    assert not problems, (f"{path.relative_to(REPO)} touches ComfyUI outside nodes/host.py (only "
                          f"{SCHEMA_MODULE} {sorted(SCHEMA_NAMES)} may be imported here):\n" + "\n".join(problems))


def test_the_rules_catch_what_they_forbid(tmp_path):
    """The checks themselves, on files written for the purpose: every kind of breach is reported, with its line."""
    bad = tmp_path / "dimx_core" / "directors" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("from ..video import sampling\nfrom ..camera import Trajectory\nimport folder_paths\n"
                   "def later():\n    from ..speed.options import SpeedOptions\n    from ...nodes import host\n")
    text = "\n".join(layering_problems(bad, tmp_path))
    for expected in ("line 1: dimx_core.video", "line 3: folder_paths", "line 5: dimx_core.speed.options",
                     "line 6: nodes (dimx_core never"):
        assert expected in text
    assert "dimx_core.camera" not in text  # a lower tier: allowed
    sideways = tmp_path / "dimx_core" / "camera" / "side.py"
    sideways.parent.mkdir()
    sideways.write_text("from ..cogvideox import spec\n")
    tier = TIER["camera"]  # camera and cogvideox share a tier
    assert layering_problems(sideways, tmp_path) == [f"line 1: dimx_core.cogvideox (camera is tier {tier}, "
                                                     f"cogvideox tier {tier})"]
    node = tmp_path / "nodes" / "video.py"
    node.parent.mkdir()
    node.write_text("import comfy.model_management\nfrom comfy_api.latest import io, ui\n"
                    "from comfy_api.latest import _io\nfrom server import PromptServer\nfrom . import host\n")
    assert comfy_problems(node, tmp_path) == ["line 1: comfy.model_management",
                                              "line 3: comfy_api.latest ['_io']", "line 4: server ['PromptServer']"]
