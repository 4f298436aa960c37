"""Start a real ComfyUI server with this pack loaded, and talk to it.

Used by the integration tier (tests/integration). Nothing here imports
ComfyUI: the server runs in its own process, from the checkout named by
COMFYUI_ROOT, and is reached over HTTP and the websocket like any client.

The pack is loaded without copying it into ComfyUI's ``custom_nodes``: a
work directory gets ``custom_nodes/<PACK_NAME>`` as a symlink to the pack,
and an extra-model-paths YAML (``--extra-model-paths-config``) names that
``custom_nodes`` directory and the model folders the tests fill.

HTTP uses only the standard library; the websocket needs ``websocket-client``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Folder name of the pack inside custom_nodes. ComfyUI uses it as the module
# name: the web directory is served at /extensions/<PACK_NAME>/ and V3 nodes
# report python_module "custom_nodes.<PACK_NAME>".
PACK_NAME = "lumina_video"

# Model folders the work directory creates and registers (first in search
# order), so tests can drop small model files where the loaders look.
MODEL_FOLDERS = (
    "lumina_video",
    "text_encoders",
    "vae",
    "diffusion_models",
    "checkpoints",
    "loras",
)

TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")

_IMPORT_TIME_LINE = re.compile(r"^\s*[\d.]+ seconds(?P<failed> \(IMPORT FAILED\))?: (?P<path>.+?)\s*$")


class ComfyError(RuntimeError):
    """The server answered, but not the way a test expects."""


class PromptRejected(ComfyError):
    """POST /prompt answered 400: the graph failed validation."""

    def __init__(self, error: Any, node_errors: dict):
        self.error = error
        self.node_errors = node_errors or {}
        super().__init__(
            "prompt rejected: %s\nnode_errors: %s"
            % (json.dumps(error, indent=1), json.dumps(self.node_errors, indent=1))
        )


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Work directory


@dataclass
class Workdir:
    """Everything the server writes or reads, under one temporary root."""

    root: Path
    pack_dir: Path

    @property
    def custom_nodes(self) -> Path:
        return self.root / "custom_nodes"

    @property
    def pack_link(self) -> Path:
        return self.custom_nodes / PACK_NAME

    @property
    def models(self) -> Path:
        return self.root / "models"

    def model_dir(self, folder: str) -> Path:
        return self.models / folder

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def temp(self) -> Path:
        # ComfyUI appends "temp" to --temp-directory.
        return self.root / "temp"

    @property
    def user(self) -> Path:
        return self.root / "user"

    @property
    def extra_paths_yaml(self) -> Path:
        return self.root / "extra_model_paths.yaml"

    @property
    def log(self) -> Path:
        return self.root / "comfyui.log"


def make_workdir(root: Path, pack_dir: Path) -> Workdir:
    """Lay out the work directory: pack link, model folders, YAML."""
    wd = Workdir(Path(root).resolve(), Path(pack_dir).resolve())
    for d in (wd.custom_nodes, wd.input, wd.output, wd.user):
        d.mkdir(parents=True, exist_ok=True)
    for folder in MODEL_FOLDERS:
        wd.model_dir(folder).mkdir(parents=True, exist_ok=True)
    if wd.pack_link.is_symlink() or wd.pack_link.exists():
        wd.pack_link.unlink()
    wd.pack_link.symlink_to(wd.pack_dir, target_is_directory=True)

    # JSON strings are valid YAML scalars, so no YAML library is needed.
    lines = [
        "# Written by tests/integration/comfy_server.py",
        "lumina_video_tests:",
        "    is_default: true",
        "    custom_nodes: %s" % json.dumps(str(wd.custom_nodes)),
    ]
    for folder in MODEL_FOLDERS:
        lines.append("    %s: %s" % (folder, json.dumps(str(wd.model_dir(folder)))))
    wd.extra_paths_yaml.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return wd


# --------------------------------------------------------------------------
# Server process


class ComfyServer:
    """One ComfyUI process on 127.0.0.1, its log in the work directory."""

    def __init__(
        self,
        comfyui_root: Path,
        python: str,
        workdir: Workdir,
        port: int | None = None,
        extra_args: list[str] | None = None,
        isolate: bool = True,
        extra_env: dict[str, str] | None = None,
    ):
        self.comfyui_root = Path(comfyui_root).resolve()
        self.python = python
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = port or free_port(self.host)
        self.extra_args = list(extra_args or [])
        self.isolate = isolate
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def url(self) -> str:
        return "http://%s:%d" % (self.host, self.port)

    def _supports(self, flag: str) -> bool:
        cli_args = self.comfyui_root / "comfy" / "cli_args.py"
        try:
            return ('"%s"' % flag) in cli_args.read_text(encoding="utf-8")
        except OSError:
            return False

    def command(self) -> list[str]:
        wd = self.workdir
        cmd = [
            self.python,
            "main.py",
            "--cpu",
            "--listen",
            self.host,
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--extra-model-paths-config",
            str(wd.extra_paths_yaml),
            "--output-directory",
            str(wd.output),
            "--input-directory",
            str(wd.input),
            "--temp-directory",
            str(wd.root),
        ]
        # Keep the checkout untouched and load only this pack, where the
        # ComfyUI version has the flags.
        if self._supports("--user-directory"):
            cmd += ["--user-directory", str(wd.user)]
        if self._supports("--database-url"):
            cmd += ["--database-url", "sqlite:///:memory:"]
        if self.isolate and self._supports("--whitelist-custom-nodes"):
            cmd += ["--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK_NAME]
        return cmd + self.extra_args

    def start(self) -> None:
        if not (self.comfyui_root / "main.py").is_file():
            raise ComfyError("COMFYUI_ROOT=%s has no main.py: not a ComfyUI checkout" % self.comfyui_root)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
        env.setdefault("DO_NOT_TRACK", "1")
        env.update(self.extra_env)
        self._log_file = open(self.workdir.log, "wb")
        self._log_file.write(("$ %s\n" % " ".join(self.command())).encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(),
            cwd=str(self.comfyui_root),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )

    def log_text(self) -> str:
        try:
            return self.workdir.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_ready(self, timeout: float) -> None:
        """Block until /object_info answers; raise with the log tail if not."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ComfyError(
                    "ComfyUI exited with code %s before answering /object_info.\n"
                    "log %s, last lines:\n%s" % (self.proc.returncode, self.workdir.log, self.log_tail())
                )
            try:
                with urllib.request.urlopen(self.url + "/object_info", timeout=10) as r:
                    if r.status == 200:
                        json.loads(r.read())
                        return
            except (OSError, ValueError) as e:
                last_error = e
            time.sleep(0.5)
        raise ComfyError(
            "ComfyUI did not answer /object_info within %.0f s (last error: %r).\n"
            "log %s, last lines:\n%s" % (timeout, last_error, self.workdir.log, self.log_tail())
        )

    def stop(self, grace: float = 15.0) -> None:
        """Terminate, then kill, the server's process group."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def custom_node_imports(self) -> dict[str, bool]:
        """{module path: imported OK} from ComfyUI's "Import times" log block."""
        result: dict[str, bool] = {}
        for line in self.log_text().splitlines():
            m = _IMPORT_TIME_LINE.match(line)
            if m:
                result[m.group("path")] = m.group("failed") is None
        return result

    def pack_import_status(self) -> bool | None:
        """True/False when the log lists the pack's import, None when absent."""
        return self.custom_node_imports().get(str(self.workdir.pack_link))

    def pack_import_error(self) -> str:
        """ComfyUI's log lines about the pack failing to load (traceback included)."""
        lines = self.log_text().splitlines()
        link = str(self.workdir.pack_link)
        out: list[str] = []
        for i, line in enumerate(lines):
            if link not in line or _IMPORT_TIME_LINE.match(line):
                continue
            if line.startswith("Cannot import"):
                start = i
                while start > 0 and not lines[start].startswith("Traceback (most recent call last)"):
                    start -= 1
                out.extend(lines[start : i + 1] if lines[start].startswith("Traceback") else [line])
            elif line.startswith(("Skip ", "Error while calling comfy_entrypoint", "comfy_entrypoint in")):
                out.append(line)
        return "\n".join(out)


# --------------------------------------------------------------------------
# Client


@dataclass
class ExecutionResult:
    """What the websocket said about one prompt, and its /history entry."""

    prompt_id: str
    status: str  # "success", "error" or "interrupted"
    messages: list[tuple[str, dict]] = field(default_factory=list)
    previews: list[bytes] = field(default_factory=list)  # binary preview frames
    history: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "success"

    def of_type(self, event: str) -> list[dict]:
        return [data for kind, data in self.messages if kind == event]

    @property
    def progress(self) -> list[dict]:
        return self.of_type("progress")

    @property
    def error(self) -> dict | None:
        errors = self.of_type("execution_error")
        return errors[-1] if errors else None

    @property
    def outputs(self) -> dict:
        """The ``ui`` dicts of output nodes, by node id (from /history)."""
        return self.history.get("outputs", {})

    def describe_error(self) -> str:
        e = self.error
        if e is None:
            return "status %s" % self.status
        return "%s in node %s (%s): %s\n%s" % (
            e.get("exception_type"),
            e.get("node_id"),
            e.get("node_type"),
            e.get("exception_message"),
            "".join(e.get("traceback") or []),
        )


class ComfyClient:
    """HTTP + websocket client for one ComfyUI server."""

    def __init__(self, base_url: str, client_id: str | None = None, http_timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.http_timeout = http_timeout
        self._ws = None

    # -- HTTP ---------------------------------------------------------------

    def _request(self, method: str, path: str, body: Any = None, query: dict | None = None):
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.http_timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str, query: dict | None = None) -> Any:
        status, raw = self._request("GET", path, query=query)
        if status != 200:
            raise ComfyError("GET %s -> %d: %s" % (path, status, raw[:2000].decode("utf-8", "replace")))
        return json.loads(raw)

    def post_json(self, path: str, body: Any) -> tuple[int, bytes]:
        return self._request("POST", path, body=body)

    def object_info(self, node_class: str | None = None) -> dict:
        if node_class is None:
            return self.get_json("/object_info")
        return self.get_json("/object_info/" + urllib.parse.quote(node_class, safe=""))

    def system_stats(self) -> dict:
        return self.get_json("/system_stats")

    def queue_state(self) -> dict:
        return self.get_json("/queue")

    def history(self, prompt_id: str) -> dict:
        """The /history entry of one prompt ({} while it has none)."""
        return self.get_json("/history/" + urllib.parse.quote(prompt_id, safe="")).get(prompt_id, {})

    def view(self, filename: str, subfolder: str = "", type: str = "output") -> bytes:
        status, raw = self._request("GET", "/view", query={"filename": filename, "subfolder": subfolder, "type": type})
        if status != 200:
            raise ComfyError("GET /view %s/%s (%s) -> %d" % (subfolder, filename, type, status))
        return raw

    def interrupt(self, prompt_id: str | None = None) -> None:
        body = {"prompt_id": prompt_id} if prompt_id else {}
        status, raw = self.post_json("/interrupt", body)
        if status != 200:
            raise ComfyError("POST /interrupt -> %d: %s" % (status, raw[:500]))

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        self.post_json("/free", {"unload_models": unload_models, "free_memory": free_memory})

    # -- queue and follow ---------------------------------------------------

    def _connect(self):
        if self._ws is None:
            try:
                import websocket  # websocket-client
            except ImportError as e:  # pragma: no cover - environment problem
                raise ComfyError(
                    "the integration tests need websocket-client in the Python that runs pytest "
                    "(pip install websocket-client)"
                ) from e
            ws_url = self.base_url.replace("http://", "ws://", 1) + "/ws?clientId=" + self.client_id
            self._ws = websocket.create_connection(ws_url, timeout=self.http_timeout)
        return self._ws

    def queue(self, prompt: dict, extra_data: dict | None = None, prompt_id: str | None = None) -> str:
        """POST an API-format graph; return its prompt_id.

        The websocket is opened first, so no message of a fast prompt is lost.
        """
        self._connect()
        body: dict[str, Any] = {"prompt": prompt, "client_id": self.client_id}
        if extra_data:
            body["extra_data"] = extra_data
        if prompt_id:
            body["prompt_id"] = prompt_id
        status, raw = self.post_json("/prompt", body)
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = {"error": raw[:2000].decode("utf-8", "replace")}
        if status == 400:
            raise PromptRejected(answer.get("error"), answer.get("node_errors", {}))
        if status != 200:
            raise ComfyError("POST /prompt -> %d: %s" % (status, answer))
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0, on_message=None) -> ExecutionResult:
        """Follow the websocket until the prompt has finished, then read /history.

        Finished means ComfyUI sent ``executing`` with node None for this prompt
        (sent after the history entry is stored). Messages of other prompts are
        dropped; binary frames (previews) are kept in order. ``on_message(kind, data)``
        is called for each message of this prompt as it arrives (e.g. to interrupt).
        """
        import websocket

        ws = self._connect()
        deadline = time.monotonic() + timeout
        messages: list[tuple[str, dict]] = []
        previews: list[bytes] = []
        status: str | None = None
        next_history_poll = time.monotonic() + 5.0
        while True:
            now = time.monotonic()
            if now > deadline:
                raise ComfyError(
                    "prompt %s not finished after %.0f s; last messages: %s"
                    % (prompt_id, timeout, [m[0] for m in messages[-20:]])
                )
            ws.settimeout(min(1.0, max(0.05, deadline - now)))
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                frame = None
            if frame is None or frame == "":
                # A safety net for a final message that never comes: the
                # history entry exists once the prompt has run.
                if time.monotonic() >= next_history_poll:
                    next_history_poll = time.monotonic() + 5.0
                    entry = self.history(prompt_id)
                    if entry:
                        if status is None:
                            status = _status_from_history(entry)
                        return ExecutionResult(prompt_id, status, messages, previews, entry)
                continue
            next_history_poll = time.monotonic() + 5.0
            if isinstance(frame, bytes):
                previews.append(frame)
                continue
            msg = json.loads(frame)
            kind, data = msg.get("type"), msg.get("data") or {}
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if kind in ("status", "feature_flags") or (kind == "executing" and "prompt_id" not in data):
                continue
            messages.append((kind, data))
            if on_message is not None:
                on_message(kind, data)
            if kind == "execution_success":
                status = "success"
            elif kind == "execution_error":
                status = "error"
            elif kind == "execution_interrupted":
                status = "interrupted"
            elif kind == "executing" and data.get("node") is None:
                entry = self.history(prompt_id)
                if status is None:
                    status = _status_from_history(entry)
                return ExecutionResult(prompt_id, status, messages, previews, entry)

    def run(self, prompt: dict, timeout: float = 300.0, extra_data: dict | None = None) -> ExecutionResult:
        """queue + wait."""
        return self.wait(self.queue(prompt, extra_data=extra_data), timeout=timeout)

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None


def _status_from_history(entry: dict) -> str:
    st = entry.get("status") or {}
    for kind, _data in st.get("messages", []):
        if kind == "execution_interrupted":
            return "interrupted"
        if kind == "execution_error":
            return "error"
    return "success" if st.get("status_str") == "success" else "error"


def pack_node_ids(object_info: dict) -> list[str]:
    """Ids of the nodes that ComfyUI says came from this pack."""
    module = "custom_nodes." + PACK_NAME
    return sorted(k for k, v in object_info.items() if v.get("python_module") == module)
