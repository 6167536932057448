"""Everything that touches ComfyUI itself: model folders, output paths, the memory manager, progress and
interrupts, HTTP routes, feature detection. dimx_core receives these as plain values and callbacks
(dimx_core.hooks); the other node modules reach ComfyUI only through this one (tests/unit/test_layering.py)."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping

import comfy.model_management as model_management
import comfy.model_patcher
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io

from ..dimx_core.camera.formats import find_camera_files
from ..dimx_core.files import atomic_folder, is_inside, resolve_inside, temporary_length
from ..dimx_core.hooks import Hooks, Interrupted
from ..dimx_core.video.components import VideoComponents

MODEL_FOLDER = "dimensionx"  # CogVideoX image-to-video diffusers folders
DIFFUSERS_FOLDER = "diffusers"  # ComfyUI's own folder for diffusers models; searched too


# --- folders -------------------------------------------------------------------------------------------------------

def register_model_folders() -> None:
    """Add models/dimensionx, keeping any path an extra_model_paths.yaml already gave that folder name."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))


def model_folder_paths() -> list[str]:
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def _diffusers_roots() -> list[Path]:
    roots = model_folder_paths()
    if DIFFUSERS_FOLDER in folder_paths.folder_names_and_paths:
        roots += folder_paths.get_folder_paths(DIFFUSERS_FOLDER)
    return [Path(root) for root in roots]


def _model_folders_under(root: Path) -> Iterator[Path]:
    """Folders holding a model_index.json under `root`, following folder links (a model kept on another disk and
    linked in), as ComfyUI's own model lists do. Each real folder is visited once, so a link loop ends; a model
    folder's own subfolders hold no further models and are not searched."""
    seen = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        fresh, is_model = real not in seen, "model_index.json" in files
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if fresh and not is_model else []
        if fresh and is_model:
            yield Path(folder)


def list_model_folders() -> list[str]:
    """Names (relative to their model folder) of every folder holding a model_index.json."""
    names = []
    for root in _diffusers_roots():
        names += sorted(folder.relative_to(root).as_posix() for folder in _model_folders_under(root))
    return list(dict.fromkeys(names))


def resolve_model_folder(name: str) -> Path:
    """The folder behind a combo value; refuses names that are not listed (older ComfyUI does not check). Links
    inside the model folders are followed: putting a model there, or a link to it, is the user's choice."""
    if name not in list_model_folders():
        raise ValueError(f"model folder '{name}' is not in {', '.join(map(str, _diffusers_roots()))} (links to "
                         "folders elsewhere count). Put the whole CogVideoX-5b-I2V diffusers folder (with "
                         "model_index.json), or a link to it, there and refresh.")
    for root in _diffusers_roots():
        if (root / name / "model_index.json").is_file():
            return root / name
    raise FileNotFoundError(f"model folder '{name}' disappeared")


def list_files(folder: str) -> list[str]:
    return folder_paths.get_filename_list(folder)


def resolve_file(folder: str, name: str) -> Path:
    """A file chosen from one of ComfyUI's model folders (membership checked: older ComfyUI does not)."""
    if name not in folder_paths.get_filename_list(folder):
        searched = ", ".join(folder_paths.get_folder_paths(folder))
        raise ValueError(f"'{name}' is not in ComfyUI's '{folder}' folder ({searched})")
    return Path(folder_paths.get_full_path_or_raise(folder, name))


def t5_tokenizer_folder() -> Path:
    """ComfyUI ships the T5 tokenizer its own T5-XXL loader uses; single-file models borrow it. On some versions
    (0.3.75) comfy.text_encoders is a namespace package, which has a search path but no __file__."""
    import comfy.text_encoders

    folders = [Path(root) / "t5_tokenizer" for root in comfy.text_encoders.__path__]
    for folder in folders:
        if (folder / "tokenizer.json").is_file():
            return folder
    raise FileNotFoundError(f"this ComfyUI has no T5 tokenizer (looked in {', '.join(map(str, folders))}); load "
                            "the model from a diffusers folder instead")


# --- result folders and files --------------------------------------------------------------------------------------

LONGEST_RESULT_SUFFIX = ".transforms.json"  # the longest name a result file gets beside <prefix>_00001_


def _result_place(filename_prefix: str, temp: bool, suffix: str) -> tuple[str, str, str, int, str]:
    """(root, full folder, name, counter, subfolder) for a new numbered result, as ComfyUI numbers its files,
    after checking the prefix: nothing outside the folder (links resolved), no hidden or empty name that no
    loader would list, and a name that still fits the file system once the hidden temporary name is added."""
    kind = "temp" if temp else "output"
    root = folder_paths.get_temp_directory() if temp else folder_paths.get_output_directory()
    if not isinstance(filename_prefix, str) or "\x00" in filename_prefix:
        raise ValueError(f"filename_prefix {filename_prefix!r} contains a NUL character; use a plain name such as "
                         "'DimensionX/scene'")
    normal = os.path.normpath(filename_prefix)
    name = os.path.basename(normal)
    if name in ("", ".", "..") or name.startswith("."):
        raise ValueError(f"filename_prefix {filename_prefix!r} gives the file name {name!r}; a result needs a name "
                         "that does not start with '.' (hidden files are not listed by any loader), e.g. "
                         "'DimensionX/scene'")
    resolve_inside(root, os.path.dirname(normal), f"filename_prefix (in ComfyUI's {kind} folder)")
    folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, root)
    longest = len(os.fsencode(name)) + temporary_length(f"_{counter:05d}_{suffix}")
    try:
        limit = os.pathconf(root, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        limit = 255
    if longest > limit:
        raise ValueError(f"filename_prefix: the name {name[:40]!r}... is {len(os.fsencode(name))} bytes long; with "
                         f"the counter and the temporary name the pack writes first it needs {longest} bytes, but "
                         f"this file system allows {limit}. Shorten it by {longest - limit}.")
    return root, folder, name, counter, subfolder


@contextlib.contextmanager
def result_folder(filename_prefix: str, *, temp: bool = False) -> Iterator[tuple[Path, Path, str]]:
    """A new numbered folder `<prefix>_00001_/` under ComfyUI's output (or temp) directory, numbered as ComfyUI
    numbers its files. Yields (hidden folder to fill, final folder, the final folder's subfolder relative to the
    output directory, as ComfyUI's /view route takes it); the folder gets its final name only when the block
    finishes, and disappears if it fails."""
    root, folder, name, counter, _ = _result_place(filename_prefix, temp, "")
    final = Path(folder) / f"{name}_{counter:05d}_"
    with atomic_folder(final) as partial:
        yield partial, final, os.path.relpath(final, root).replace(os.sep, "/")


def write_output_folder(filename_prefix: str, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a new numbered folder under ComfyUI's output directory (see result_folder)."""
    with result_folder(filename_prefix) as (partial, final, _):
        write(partial)
    return final


def result_path(filename_prefix: str, extension: str, *, temp: bool = False) -> tuple[str, str, str]:
    """(full path, subfolder, file name) of a new numbered result file under ComfyUI's output (or temp)
    folder, as SaveImage names them: <prefix>_00001_.<extension>. Refuses prefixes that leave the folder."""
    _, folder, name, counter, subfolder = _result_place(filename_prefix, temp, LONGEST_RESULT_SUFFIX)
    filename = f"{name}_{counter:05}_.{extension}"
    return os.path.join(folder, filename), subfolder, filename


# --- input files ---------------------------------------------------------------------------------------------------

def input_camera_files() -> list[str]:
    """transforms.json files and COLMAP text folders in ComfyUI's input directory, relative to it."""
    return find_camera_files(folder_paths.get_input_directory())


def listed_file(name: str, listed: list[str], what: str) -> Path:
    """The file behind a file combo's value: it must be one of the names the node offered (older ComfyUI does
    not check), and it must lie inside its folder once links are resolved. `listed` names are relative to the
    input folder, or to the output folder when annotated ' [output]' (ComfyUI's own convention)."""
    if name not in listed:
        raise ValueError(f"{what}: {name!r} is not one of the {len(listed)} files this node offers (from ComfyUI's "
                         f"input folder {folder_paths.get_input_directory()}, or its output folder where marked "
                         "[output]); put the file there and refresh the page")
    relative, base = folder_paths.annotated_filepath(name)
    return resolve_inside(base or folder_paths.get_input_directory(), relative, what)


def input_folders_with(extensions: tuple[str, ...]) -> list[str]:
    """Folders of ComfyUI's input directory ('.' for itself) directly holding files with these extensions; hidden
    folders and links that lead outside the input folder are left out."""
    root = folder_paths.get_input_directory()
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        relative = os.path.relpath(folder, root).replace(os.sep, "/")
        if is_inside(root, relative) and any(name.lower().endswith(extensions) and not name.startswith(".")
                                             for name in files):
            found.append(relative)
    return sorted(found)


def listed_folder(name: str, listed: list[str], what: str) -> Path:
    """The folder behind a folder combo's value: one of those the node offered, inside the input folder."""
    if name not in listed:
        raise ValueError(f"{what}: {name!r} is not one of the {len(listed)} folders this node offers (from ComfyUI's "
                         f"input folder {folder_paths.get_input_directory()}); put it there and refresh the page")
    return resolve_inside(folder_paths.get_input_directory(), name, what)


def input_or_output_folder(relative: str, what: str) -> Path:
    """A folder inside ComfyUI's input or output directory (looked for in that order, links resolved)."""
    for root in (folder_paths.get_input_directory(), folder_paths.get_output_directory()):
        try:
            path = resolve_inside(root, relative, what)
        except ValueError:
            continue
        if path.is_dir():
            return path
    raise ValueError(f"{what}: {relative!r} is not a folder inside ComfyUI's input or output directory")


def new_model_file(folder: str, name: str, suffix: str, what: str, *, overwrite: bool) -> tuple[Path, str]:
    """(path, name as the folder's loaders list it) for a file the pack writes into the first path of one of
    ComfyUI's model folders (a trained LoRA into models/loras). Refuses names that leave the folder (links
    resolved) or would be hidden, and an existing file unless `overwrite`."""
    root = Path(folder_paths.get_folder_paths(folder)[0])
    relative = name.strip().replace("\\", "/")
    relative = relative if relative.endswith(suffix) else relative + suffix
    if relative == suffix or Path(relative).name.startswith(".") or Path(relative).is_absolute():
        raise ValueError(f"{what}: {name!r} is not a file name inside ComfyUI's '{folder}' folder ({root}); give a "
                         "name such as 'dimensionx/my_director'")
    path = resolve_inside(root, relative, what)
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; choose another name or turn on overwrite")
    return path, path.relative_to(root.resolve()).as_posix()


def input_or_output_files(extensions: tuple[str, ...]) -> list[str]:
    """Files with these extensions in ComfyUI's input folder (plain names), then in its output folder
    (annotated ' [output]', the form ComfyUI's own loaders resolve), each sorted. Hidden names (files still
    being written) and links that lead outside their folder are left out."""
    found = []
    for folder, note in ((folder_paths.get_input_directory(), ""), (folder_paths.get_output_directory(), " [output]")):
        names = []
        for root, _, files in os.walk(folder):
            names += [os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
                      for name in files if name.lower().endswith(extensions) and not name.startswith(".")]
        found += sorted(name + note for name in names if is_inside(folder, name))
    return found


def annotated_path(name: str) -> str:
    return folder_paths.get_annotated_filepath(name)


# --- progress and interrupts ---------------------------------------------------------------------------------------

def hooks(total: int) -> Hooks:
    """Hooks for dimx_core that drive this node's progress bar (with a preview image) and honour Cancel."""
    bar = comfy.utils.ProgressBar(total)

    def progress(step: int, steps: int, preview) -> None:
        bar.update_absolute(step, steps, _preview_tuple(preview) if preview is not None else None)

    return Hooks(progress=progress, should_stop=model_management.processing_interrupted)


def _preview_tuple(image) -> tuple:
    import numpy as np
    from PIL import Image

    array = np.asarray(image.detach().float().cpu() if hasattr(image, "detach") else image)
    picture = Image.fromarray((array.clip(0, 1) * 255).round().astype("uint8"))
    if picture.width < 256:  # latent-resolution previews: enlarge so the node shows more than a thumbnail
        factor = -(-256 // picture.width)
        picture = picture.resize((picture.width * factor, picture.height * factor), Image.BILINEAR)
    return "JPEG", picture, 512


def progress_text(message: str) -> None:
    """A line of text under the running node's progress bar (e.g. "frame 3 of 49"), where the host supports it."""
    try:
        from comfy_execution.utils import get_executing_context
        from server import PromptServer
    except ImportError:
        return
    context, server = get_executing_context(), getattr(PromptServer, "instance", None)
    if context is not None and server is not None and hasattr(server, "send_progress_text"):
        server.send_progress_text(message, context.node_id)


def cache_folder(name: str) -> Path:
    """A folder in ComfyUI's user directory that survives restarts (resumable work, such as per-frame videos)."""
    folder = Path(folder_paths.get_user_directory()) / "dimensionx" / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def comfy_interrupts():
    """Turn the library's Interrupted into ComfyUI's own interrupt, so the queue shows 'interrupted'."""
    try:
        yield
    except Interrupted:
        raise model_management.InterruptProcessingException()


@contextlib.contextmanager
def fitting(total_steps: int, memory_bytes: int) -> Iterator[Hooks]:
    """Everything a scene fit needs from ComfyUI: room on the device from the memory manager (it has no
    ModelPatcher to ask for it), Cancel, and a progress bar of `total_steps`."""
    make_room(memory_bytes)
    with comfy_interrupts():
        yield hooks(total_steps)


# --- memory manager ------------------------------------------------------------------------------------------------

class _Holder(torch.nn.Module):
    """ModelPatcher writes bookkeeping attributes (`device`, ...) onto the module it manages; diffusers models
    make `device` a read-only property, so the patcher manages this holder around them instead."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module


def managed(module: torch.nn.Module, load_device, offload_device) -> "comfy.model_patcher.ModelPatcher":
    return comfy.model_patcher.ModelPatcher(_Holder(module), load_device=load_device, offload_device=offload_device)


@dataclass
class ManagedVideoModel:
    """DIMX_VIDEO_MODEL: the parts of a CogVideoX model, each under ComfyUI's memory manager."""
    parts: VideoComponents
    patchers: dict[int, "comfy.model_patcher.ModelPatcher"]

    @classmethod
    def wrap(cls, parts: VideoComponents) -> "ManagedVideoModel":
        mm = model_management
        patchers = {
            id(parts.transformer): managed(parts.transformer, mm.get_torch_device(), mm.unet_offload_device()),
            id(parts.vae): managed(parts.vae, mm.vae_device(), mm.vae_offload_device()),
            id(parts.text_encoder): managed(parts.text_encoder, mm.text_encoder_device(),
                                            mm.text_encoder_offload_device()),
        }
        return cls(parts, patchers)

    def place(self, module: torch.nn.Module) -> torch.device:
        """Ask ComfyUI to load `module` fully onto its device (offloading other models if needed)."""
        patcher = self.patchers[id(module)]
        patcher.size = 0  # recomputed: attached director adapters make the module larger
        model_management.load_models_gpu([patcher], force_full_load=True)
        return torch.device(patcher.load_device)

    def offload(self, module: torch.nn.Module) -> None:
        """Have ComfyUI unload `module` to its offload device now, as its memory manager would when short of memory
        (the 24 GB mode sends T5 away before the transformer comes)."""
        patcher = self.patchers[id(module)]
        loaded = model_management.current_loaded_models
        for index, entry in enumerate(loaded):
            if entry.model is patcher:
                if entry.model_unload():
                    loaded.pop(index)
                    model_management.soft_empty_cache()
                return


def compile_cache_folder() -> str:
    """Where torch.compile keeps compiled blocks between sessions: ComfyUI's user directory."""
    return os.path.join(folder_paths.get_user_directory(), "dimensionx", "torch-compile")


# --- devices -------------------------------------------------------------------------------------------------------

def compute_device():
    return model_management.get_torch_device()


def intermediate_device():
    return model_management.intermediate_device()


def make_room(bytes_needed: int) -> None:
    """Ask ComfyUI's memory manager to unload models until `bytes_needed` are free on the compute device
    (a reconstruction's tensors are not models it manages)."""
    device = compute_device()
    if device.type != "cpu":
        model_management.free_memory(bytes_needed, device)


# --- HTTP routes ---------------------------------------------------------------------------------------------------

_served: set[str] = set()


def add_get_route(path: str, respond: Callable[[Mapping[str, str]], tuple[int, dict]]) -> bool:
    """Serve GET `path` (ComfyUI also serves it under /api) with `respond(query)` -> (HTTP status, JSON body), on the
    running PromptServer; False (and nothing done) where there is none, as in tests that import the pack without a
    server. Adding the same path again changes nothing."""
    if path in _served:
        return True
    server = sys.modules.get("server")  # ComfyUI's main.py has imported it before loading any pack
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    if instance is None:
        return False
    from aiohttp import web

    @instance.routes.get(path)
    async def serve(request):
        status, body = respond(request.rel_url.query)
        return web.json_response(body, status=status)

    _served.add(path)
    logging.debug("DimensionX: registered GET %s", path)
    return True


# --- what this ComfyUI offers --------------------------------------------------------------------------------------

def host_features() -> dict[str, str | bool]:
    """Detected rather than assumed from a version number."""
    try:
        version = importlib.import_module("comfyui_version").__version__
    except ImportError:
        version = "unknown"
    return {
        "comfyui": version,
        "core_splat_type": hasattr(io, "Splat"),
        "native_cogvideox": importlib.util.find_spec("comfy.ldm.cogvideo") is not None,
        "load3d_camera": hasattr(io, "Load3DCamera"),
    }
