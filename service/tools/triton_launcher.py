"""Start a real Triton Inference Server from the binary that nvidia-pytriton bundles (no container needed).

Why this module: the bundled tritonserver only runs the python backend correctly when (1) the stub for the
running Python is placed in ``backends/python``, (2) ``LD_LIBRARY_PATH`` puts *this* Python's LIBDIR first
(else the stub picks the system libpython and crashes) and (3) the venv's site-packages and the repo root
are importable by the stub (PYTHONPATH). Tests, the bench and the docs all go through here so that recipe
lives in one place.

CLI::

    python -m service.tools.triton_launcher --model-repository model_repository --grpc-port 8001 \
        --load-model aesrm_proxy            # blocks until Ctrl-C; prints the gRPC, HTTP and metrics
                                            # URLs once ready (--http-port / --metrics-port fix them)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODELS = ("aesrm_proxy",)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("nvidia-pytriton is not installed: .venv/bin/pip install -e '.[triton]'") from exc
    return Path(pytriton.__file__).parent / "tritonserver"


def prepare_server(cache_dir: Path | None = None) -> Path:
    """A runnable tritonserver folder (bin/, backends/ with the stub for this Python), cached and reused.

    Built in a temp folder and renamed into place, so concurrent preparers never see a half copy.
    """
    src = _pytriton_dir()
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = src / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not (src / "bin" / "tritonserver").exists() or not stub.exists():
        raise RuntimeError(f"pytriton ships no tritonserver / python {py} stub on this platform")
    from importlib.metadata import version

    root = Path(cache_dir or os.environ.get("AESRM_TRITON_CACHE", Path.home() / ".cache/aesrm/tritonserver"))
    target = root / f"pytriton-{version('nvidia-pytriton')}-py{py}"
    if (target / "bin" / "tritonserver").exists() and (target / "backends/python/triton_python_backend_stub").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prep-", dir=root))
    try:
        shutil.copytree(src, tmp / "s", ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
        shutil.copy2(stub, tmp / "s" / "backends" / "python" / "triton_python_backend_stub")
        with contextlib.suppress(OSError):  # another process won the race: use theirs
            os.rename(tmp / "s", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def server_env(extra_pythonpath: list[str] | None = None) -> dict[str, str]:
    """Environment for tritonserver: this Python's libpython first, the venv + repo importable by the stub."""
    site = sysconfig.get_paths()["purelib"]
    libs = [sysconfig.get_config_var("LIBDIR"), str(Path(site) / "nvidia_pytriton.libs"),
            os.environ.get("LD_LIBRARY_PATH", "")]
    paths = [str(REPO_ROOT), site, *(extra_pythonpath or []), os.environ.get("PYTHONPATH", "")]
    # the stub also derives its site-packages from the `python3` first on PATH: make that this venv's
    bindir = os.path.dirname(sys.executable)
    return dict(os.environ, LD_LIBRARY_PATH=":".join(p for p in libs if p),
                PYTHONPATH=":".join(p for p in paths if p), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"),
                PATH=os.pathsep.join([bindir, os.environ.get("PATH", "")]))


class TritonServer:
    """One tritonserver process on fixed or free ports; stop()/start() keep the ports (restart tests).

    Models load in explicit mode (``models``), so a repository that also holds GPU-only variants
    (aesrm_proxy_trt) still starts on a CPU box.
    """

    def __init__(self, model_repository: str | Path, *, models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
                 grpc_port: int | None = None, http_port: int | None = None, metrics_port: int | None = None,
                 log_path: str | Path | None = None, extra_args: tuple[str, ...] = (),
                 host: str = "127.0.0.1", model_config_name: str | None = None) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.models = tuple(models)
        self.host = host
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.log_path = Path(log_path) if log_path else Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        self.extra_args = tuple(extra_args)
        self.model_config_name = model_config_name  # e.g. "gpu" -> <model>/configs/gpu.pbtxt
        self.proc: subprocess.Popen | None = None

    @property
    def _client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host

    @property
    def grpc_url(self) -> str:
        return f"{self._client_host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self._client_host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self._client_host}:{self.metrics_port}/metrics"

    def command(self) -> list[str]:
        server = prepare_server()
        cmd = [str(server / "bin" / "tritonserver"), f"--model-repository={self.model_repository}",
               f"--backend-directory={server / 'backends'}", f"--grpc-port={self.grpc_port}",
               f"--http-port={self.http_port}", f"--metrics-port={self.metrics_port}",
               f"--grpc-address={self.host}", f"--http-address={self.host}", f"--metrics-address={self.host}",
               "--allow-gpu-metrics=false", "--model-control-mode=explicit", "--log-verbose=0"]
        cmd += [f"--load-model={m}" for m in self.models]
        if self.model_config_name:
            cmd.append(f"--model-config-name={self.model_config_name}")
        return cmd + list(self.extra_args)

    def start(self, timeout_s: float = 120.0) -> "TritonServer":
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=server_env(),
                                         start_new_session=True)
        self.wait_ready(timeout_s)
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _http_ok(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def ready(self) -> bool:
        return self.running and all(self._http_ok(f"/v2/models/{m}/ready") for m in self.models) \
            and self._http_ok("/v2/health/ready")

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise RuntimeError(f"tritonserver exited ({code}):\n{self.log_tail()}")
            if self.ready():
                return
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"tritonserver not ready in {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL if it hangs."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """Abrupt death (fault-injection tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-repository", default=str(REPO_ROOT / "model_repository"))
    ap.add_argument("--load-model", action="append", dest="models", help="repeatable; default aesrm_proxy")
    ap.add_argument("--grpc-port", type=int, default=None)
    ap.add_argument("--http-port", type=int, default=None)
    ap.add_argument("--metrics-port", type=int, default=None)
    ap.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in a container)")
    ap.add_argument("--model-config-name", default=None, help="e.g. gpu: use <model>/configs/gpu.pbtxt")
    ap.add_argument("--log", default=None, help="server log file (default: a temp file)")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for readiness")
    ap.add_argument("--print-command", action="store_true", help="print env + command and exit")
    ap.add_argument("extra", nargs="*", help="extra tritonserver args after --")
    args = ap.parse_args(argv)
    server = TritonServer(args.model_repository, models=args.models or DEFAULT_MODELS, grpc_port=args.grpc_port,
                          http_port=args.http_port, metrics_port=args.metrics_port, log_path=args.log,
                          extra_args=tuple(args.extra), host=args.host, model_config_name=args.model_config_name)
    if args.print_command:
        env = server_env()
        print(f"LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']} PYTHONPATH={env['PYTHONPATH']} \\\n  "
              + " ".join(server.command()))
        return 0
    server.start(args.timeout)
    print(f"tritonserver ready: grpc={server.grpc_url} http={server.http_url} metrics={server.metrics_url} "
          f"models={','.join(server.models)} log={server.log_path}", flush=True)
    stop = {"flag": False}

    def _sig(*_):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)
    try:
        while not stop["flag"] and server.running:
            time.sleep(0.5)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
