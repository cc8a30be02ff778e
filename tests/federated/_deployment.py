"""A real Flower deployment on loopback: one SuperLink, N SuperNodes, the ``flwr`` CLI.

Every process gets its own ``FLWR_HOME`` and its own process group, so teardown stops
exactly the processes (and their SuperExec/ClientApp children) this helper started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
APP_DIR = REPO_ROOT / "federated"
BIN = Path(sys.executable).parent
# A SuperNode logs its ID once the SuperLink has registered it.
_REGISTERED = "SuperNode ID:"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def flower_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        FLWR_HOME=str(home),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


class Process:
    """One started Flower process, its output in a log file, stopped with its group."""

    def __init__(self, name: str, args: Sequence[str], home: Path, log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                list(args),
                env=flower_env(home),
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Reap the process as soon as it exits: a zombie would keep its SuperExec child,
        # which watches the parent's pid, alive and retrying.
        self._reaper = threading.Thread(target=self.popen.wait, daemon=True)
        self._reaper.start()

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline or self.popen.poll() is not None:
                raise TimeoutError(f"{self.name}: {text!r} not in its output after {timeout} s")
            time.sleep(0.1)

    def terminate(self) -> None:
        """Ask the whole process group to stop (SuperExec and ClientApps included)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15) -> None:
        self.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=5)


class LocalFederation:
    """SuperLink plus one SuperNode per data file; ``run`` drives ``flwr run``."""

    def __init__(self, workdir: Path, data_paths: Sequence[Path]) -> None:
        self.workdir = workdir
        self.data_paths = list(data_paths)
        self.port = free_port()
        self.processes: list[Process] = []

    def __enter__(self) -> LocalFederation:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        link = [
            str(BIN / "flower-superlink"),
            "--insecure",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--disable-runtime-dependency-installation",
        ]
        self.processes.append(Process("superlink", link, self.workdir / "superlink", self.workdir))
        wait_for_port(self.port, timeout=30)
        for i, data in enumerate(self.data_paths):
            node = [
                str(BIN / "flower-supernode"),
                "--insecure",
                f"--superlink=127.0.0.1:{self.port}",
                f"--port={free_port()}",
                f'--node-config=data-path="{data}"',
            ]
            self.processes.append(
                Process(f"site{i}", node, self.workdir / f"site{i}", self.workdir)
            )
        for site in self.sites:
            site.wait_for_output(_REGISTERED, timeout=60)

    @property
    def sites(self) -> list[Process]:
        return self.processes[1:]

    def stop_site_when(self, index: int, text: str) -> threading.Thread:
        """Stop site ``index`` (as its operator would: SIGTERM) once its log shows ``text``."""
        site = self.sites[index]

        def watch() -> None:
            with contextlib.suppress(TimeoutError):  # the run ended first: nothing to stop
                site.wait_for_output(text, timeout=600)
                site.stop()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        return watcher

    def run(
        self,
        run_config: str,
        timeout: float,
        on_line: Callable[[str], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``flwr run --stream``; ``on_line`` sees each line of its output as it arrives."""
        home = self.workdir / "cli"
        home.mkdir(exist_ok=True)
        (home / "config.toml").write_text(
            '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
            f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        args = [str(BIN / "flwr"), "run", str(APP_DIR), "local", "--stream"]
        with subprocess.Popen(
            [*args, "--run-config", run_config],
            env=flower_env(home),
            cwd=home,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as cli:
            timer = threading.Timer(timeout, cli.kill)
            timer.start()
            lines = []
            try:
                assert cli.stdout is not None
                for line in cli.stdout:
                    lines.append(line)
                    if on_line is not None:
                        on_line(line)
            finally:
                timer.cancel()
                cli.kill()
            returncode = cli.wait()
        return subprocess.CompletedProcess(cli.args, returncode, "".join(lines), "")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.output()[-3000:]}" for p in self.processes)

    def close(self) -> None:
        for process in self.processes:  # all at once: each takes seconds to wind down
            process.terminate()
        for process in self.processes:
            process.stop()
