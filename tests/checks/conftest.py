"""Fixtures for preflight, doctor and the forecast on the simulated Strix Halo.

- `idle_root` / `busy_root`: a private copy of a simulated machine in the "idle" (clean) or
  "reference" (an LLM prompt burst: GPU 98 % busy) scenario, on tmpfs when there is one. Each
  carries its own process table (an init as pid 1), so preflight and doctor read the tree's
  proc/ and not what else runs on the host (machine.processes.process_root).
- `state_dir`: a journal directory outside the tree.
- `sim_edit(root, fn)`: change the simulator's state (fn(state)) and re-publish its files, as a
  physics tick would; `later(seconds, fn)`: run fn in a thread after a delay (a change that
  happens while preflight watches).
- `add_process(root, pid, comm, cmdline, drm=False)`: a fake process under ROOT/proc (with a
  DRM render-node descriptor and amdgpu fdinfo when drm=True): preflight and doctor read a
  tree's own proc/ instead of the host's once it holds a proc/<pid>.
- `write_gguf(path, ...)`: a small GGUF (llama layout, F32), dense or MoE.
- `run_cli(*args)`: `halotune ...` in-process; (rc, out, err).
- RyzenAdj's stand-in runs in-process (fast_ryzenadj, autouse), as in tests/tuning.

Nothing here reads /work/shared or the host's /sys.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time

import pytest

from halotune.machine import programs as _programs
from halotune.sim import publish, store
from halotune.sim.tree import lay_out
from tuning.conftest import CliResult, fast_run

PDEV = "0000:c3:00.0"
SHM = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK | os.X_OK) else None

@pytest.fixture(autouse=True)
def fast_ryzenadj(monkeypatch):
    monkeypatch.setattr(_programs.Programs, "run", fast_run)


@pytest.fixture(autouse=True)
def no_outside_env(monkeypatch, tmp_path):
    for k in list(os.environ):
        if k.startswith("HALOTUNE_") or k in ("HSA_OVERRIDE_GFX_VERSION", "SUDO_USER", "SUDO_UID"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("HALOTUNE_SOCKET", str(tmp_path / "no-daemon.sock"))
    # No history databases of the person running the tests.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture(scope="session")
def _pristine(tmp_path_factory):
    base = tempfile.mkdtemp(prefix="halotune-checks-", dir=SHM) if SHM else \
        str(tmp_path_factory.mktemp("pristine"))
    trees = {}
    for scenario in ("idle", "reference"):
        trees[scenario] = os.path.join(base, scenario)
        lay_out(trees[scenario], scenario)
        add_process(trees[scenario], 1, "systemd", ["/sbin/init"], ppid=0)
    yield trees
    shutil.rmtree(base, ignore_errors=True)


def _copy(src: str, tmp_path) -> str:
    base = tempfile.mkdtemp(prefix="halotune-checks-", dir=SHM) if SHM else str(tmp_path)
    dest = os.path.join(base, "root")
    shutil.copytree(src, dest, symlinks=True)
    return dest


@pytest.fixture
def idle_root(_pristine, tmp_path):
    root = _copy(_pristine["idle"], tmp_path)
    yield root
    if SHM:
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)


@pytest.fixture
def busy_root(_pristine, tmp_path):
    root = _copy(_pristine["reference"], tmp_path)
    yield root
    if SHM:
        shutil.rmtree(os.path.dirname(root), ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path) -> str:
    return str(tmp_path / "state")


def sim_edit(root: str, fn) -> None:
    with store.locked(root):
        state = store.load_state(root)
        fn(state)
        store.save_state(root, state)
        publish.publish(root, state)


def later(seconds: float, fn) -> threading.Thread:
    def run():
        time.sleep(seconds)
        fn()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def write(root: str, rel: str, text: str, mode: int | None = None) -> str:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    if mode is not None:
        os.chmod(path, mode)
    return path


def fdinfo(client: int, gtt_kib: int = 4096, gfx_ns: int = 0) -> str:
    return (f"pos:\t0\nflags:\t02100002\ndrm-driver:\tamdgpu\ndrm-client-id:\t{client}\n"
            f"drm-pdev:\t{PDEV}\ndrm-memory-vram:\t0 KiB\ndrm-memory-gtt:\t{gtt_kib} KiB\n"
            f"drm-engine-gfx:\t{gfx_ns} ns\ndrm-engine-compute:\t0 ns\n")


def add_process(root: str, pid: int, comm: str, cmdline: list[str] | None = None,
                drm: bool = False, ppid: int = 1) -> None:
    """A process under ROOT/proc/PID: comm, stat, cmdline (+ a render-node fd and fdinfo)."""
    base = f"proc/{pid}"
    cmdline = cmdline or [comm]
    write(root, f"{base}/comm", comm + "\n")
    write(root, f"{base}/stat", f"{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560\n")
    with open(os.path.join(root, base, "cmdline"), "wb") as f:
        f.write(b"\0".join(a.encode() for a in cmdline) + b"\0")
    if drm:
        os.makedirs(os.path.join(root, base, "fd"), exist_ok=True)
        os.symlink("/dev/dri/renderD128", os.path.join(root, base, "fd", "5"))
        write(root, f"{base}/fdinfo/5", fdinfo(client=pid))


# --- GGUF ---------------------------------------------------------------------------------------

def write_gguf(path: str, n_layer: int = 2, n_embd: int = 64, n_ff: int = 128, n_head: int = 4,
               n_head_kv: int = 2, n_vocab: int = 256, experts: tuple[int, int] | None = None,
               split: int = 1) -> list[str]:
    """A llama-layout GGUF with F32 tensors; experts=(count, used) makes the FFN an MoE. With
    split=N the tensors are spread over N files named -0000K-of-0000N.gguf. Returns the paths."""
    import numpy as np
    from gguf import GGUFWriter

    tensors = [("token_embd.weight", (n_vocab, n_embd)), ("output_norm.weight", (n_embd,)),
               ("output.weight", (n_vocab, n_embd))]
    for i in range(n_layer):
        b = f"blk.{i}"
        tensors += [(f"{b}.attn_norm.weight", (n_embd,)),
                    (f"{b}.attn_q.weight", (n_embd, n_embd)),
                    (f"{b}.attn_k.weight", (n_embd * n_head_kv // n_head, n_embd)),
                    (f"{b}.attn_v.weight", (n_embd * n_head_kv // n_head, n_embd)),
                    (f"{b}.attn_output.weight", (n_embd, n_embd)),
                    (f"{b}.ffn_norm.weight", (n_embd,))]
        if experts:
            e = experts[0]
            tensors += [(f"{b}.ffn_gate_inp.weight", (e, n_embd)),
                        (f"{b}.ffn_gate_exps.weight", (e, n_ff, n_embd)),
                        (f"{b}.ffn_up_exps.weight", (e, n_ff, n_embd)),
                        (f"{b}.ffn_down_exps.weight", (e, n_embd, n_ff))]
        else:
            tensors += [(f"{b}.ffn_gate.weight", (n_ff, n_embd)),
                        (f"{b}.ffn_up.weight", (n_ff, n_embd)),
                        (f"{b}.ffn_down.weight", (n_embd, n_ff))]
    if split > 1:
        stem = path[:-len(".gguf")]
        paths = [f"{stem}-{k:05d}-of-{split:05d}.gguf" for k in range(1, split + 1)]
    else:
        paths = [path]
    per = -(-len(tensors) // split)
    for k, p in enumerate(paths):
        w = GGUFWriter(p, "llama")
        if k == 0:
            w.add_name("halotune-test-moe" if experts else "halotune-test")
            w.add_block_count(n_layer)
            w.add_embedding_length(n_embd)
            w.add_feed_forward_length(n_ff)
            w.add_head_count(n_head)
            w.add_head_count_kv(n_head_kv)
            w.add_context_length(2048)
            if experts:
                w.add_expert_count(experts[0])
                w.add_expert_used_count(experts[1])
        if split > 1:
            w.add_uint16("split.no", k)
            w.add_uint16("split.count", split)
            w.add_int32("split.tensors.count", len(tensors))
        for name, shape in tensors[k * per:(k + 1) * per]:
            w.add_tensor(name, np.zeros(shape, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return paths


# --- the command line -----------------------------------------------------------------------------

@pytest.fixture
def run_cli(capsys):
    from halotune.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()
        try:
            rc = main.main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
        cap = capsys.readouterr()
        return CliResult(rc, cap.out, cap.err)

    return run
