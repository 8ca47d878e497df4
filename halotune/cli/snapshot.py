"""`halotune snapshot [--redact] OUT.tar.gz`: an owner's machine, packed as a test fixture.

The archive unpacks into a tree that `halotune status --root DIR/halotune-snapshot` reads
exactly like the machine it came from. Which files to take is not a list kept by hand: one
sample is taken through a RecordingRootFS and every path it touched is collected, plus the
files later features read (capture.diagnostic_paths). MANIFEST.json says what was taken, what
could not be read and why, and carries `ryzenadj -i` (the STAPM/PPT limits no sysfs file has).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field

from halotune import __version__
from halotune.cli import exitcodes
from halotune.machine import capture
from halotune.machine.discovery import AmdGpuDevice
from halotune.machine.platform import read_kernel_release
from halotune.machine.programs import ProgramError, Programs
from halotune.machine.rootfs import RootFS, clean_text
from halotune.telemetry.sampler import Sampler, rfc3339_now

log = logging.getLogger(__name__)

PROG = "halotune snapshot"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
MANIFEST = "MANIFEST.json"
RYZENADJ_INFO = "ryzenadj-info.txt"
MANIFEST_FORMAT = "halotune.snapshot/1"


@dataclass
class Collected:
    """Everything one snapshot gathered, before it is written."""

    root: str
    tree: capture.TreeCapture
    devices: list[AmdGpuDevice] = field(default_factory=list)
    sample_error: str | None = None
    ryzenadj: dict = field(default_factory=dict)
    ryzenadj_text: str = ""


def run(args) -> int:
    out, root = args.out, os.path.abspath(args.root)
    problem = out_problem(out)
    if problem:
        return _fail(f"{out}: {problem}", exitcodes.USAGE)
    if not os.path.isdir(root):
        return _fail(f"{root}: not a directory; --root must name the tree to collect",
                     exitcodes.USAGE)
    collected = collect(root)
    redactor = capture.Redactor.for_root(RootFS(root)) if args.redact else None
    if redactor is not None:
        redact_files(collected.tree, redactor)
    manifest = build_manifest(collected, redactor)
    extra = {MANIFEST: (json.dumps(manifest, indent=2) + "\n").encode(),
             RYZENADJ_INFO: _ryzenadj_file(collected, redactor).encode()}
    try:
        size = capture.write_archive(out, collected.tree, extra, mtime=int(time.time()))
    except PermissionError as e:
        return _fail(f"cannot write {out}: {e.strerror or 'permission denied'} "
                     f"(write it to a directory you own)", exitcodes.PERMISSION)
    except OSError as e:
        return _fail(f"cannot write {out}: {e.strerror or e}", exitcodes.NOT_READY)
    code = exitcodes.OK
    if not collected.devices:
        print(f"{PROG}: warning: no AMD GPU found under {root} (searched "
              f"{os.path.join(root, 'sys/class/drm')}/card*/device/vendor for 0x1002); "
              f"the archive holds the rest of the machine", file=sys.stderr)
        code = exitcodes.NO_AMD_GPU
    print(summary_line(out, len(collected.tree.files), size, root))
    return code


def out_problem(out: str) -> str | None:
    """Why OUT cannot be the archive's name, or None."""
    if not out.lower().endswith(ARCHIVE_SUFFIXES):
        return "the archive name must end in .tar.gz or .tgz"
    if os.path.isdir(out):
        return "is a directory; name the archive file to create"
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        return f"directory {parent} does not exist"
    return None


def summary_line(out: str, n_files: int, size: int, root: str) -> str:
    kib = math.ceil(size / 1024)
    return (f"wrote {out} ({n_files} files, {kib} KiB) from {root}; unpack and read with: "
            f"tar -xzf {out} -C DIR && halotune status --root DIR/{capture.TOP_DIR}")


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return code


# --- collecting ----------------------------------------------------------------------------

def collect(root: str) -> Collected:
    """Record one sample's reads, then copy those paths and the diagnostic files."""
    fs = capture.RecordingRootFS(root)
    devices, sample_error = _record_sample(fs)
    tree = capture.TreeCapture(fs.root)
    tree.add_all(fs.recorded)
    tree.add_all(capture.diagnostic_paths(RootFS(root),
                                          [(d.device_dir, d.hwmon_dir) for d in devices]))
    collected = Collected(root=fs.root, tree=tree, devices=devices, sample_error=sample_error)
    collected.ryzenadj, collected.ryzenadj_text = ryzenadj_info(RootFS(root))
    return collected


def _record_sample(fs: capture.RecordingRootFS) -> tuple[list[AmdGpuDevice], str | None]:
    """Run the real readers once on `fs`; return the AMD GPUs found and any reader failure.

    A bug report is wanted most when the machine is odd, so a reader that fails on it must
    not stop the capture: the failure goes into the manifest with the paths read so far.
    """
    sampler = None
    try:
        sampler = Sampler(fs, read_tdp=False)
        sampler.sample()
        return sampler.devices, None
    except Exception as e:  # noqa: BLE001 - see the docstring
        log.warning("reading %s failed: %r; collecting what was read so far", fs.root, e)
        return (sampler.devices if sampler is not None else []), f"{type(e).__name__}: {e}"
    finally:
        if sampler is not None:
            sampler.close()


def ryzenadj_info(fs: RootFS) -> tuple[dict, str]:
    """`ryzenadj -i` as a manifest entry and as text. A missing tool or no permission is
    recorded, not a failure: most reports come from machines without RyzenAdj."""
    try:
        res = Programs(fs).run("ryzenadj", ["-i"])
    except ProgramError as e:
        return {"argv": ["ryzenadj", "-i"], "returncode": None, "error": str(e)}, f"{e}\n"
    entry = {"argv": res.argv, "returncode": res.returncode, "stdout": res.stdout,
             "stderr": res.stderr,
             "error": None if res.ok else f"exit status {res.returncode}"}
    text = res.stdout + res.stderr
    if not res.ok:
        text += f"(ryzenadj exited with status {res.returncode})\n"
    return entry, text


# --- the manifest --------------------------------------------------------------------------

def redact_files(tree: capture.TreeCapture, redactor: capture.Redactor) -> None:
    """Replace the captured contents by their redacted form (before anything is written)."""
    for path, f in list(tree.files.items()):
        data = redactor.data(path, f.data)
        if data != f.data:
            tree.files[path] = capture.CapturedFile(path, data, f.mode, f.truncated)


def build_manifest(c: Collected, redactor: capture.Redactor | None) -> dict:
    """The archive's table of contents; its strings redacted too when `redactor` is given."""
    tree = c.tree
    cmdline = tree.files.get("proc/cmdline")
    manifest = {
        "format": MANIFEST_FORMAT,
        "halotune_version": __version__,
        "time": rfc3339_now(),
        "source_root": c.root,
        "kernel_release": read_kernel_release(RootFS(c.root)),
        "cmdline": None if cmdline is None else clean_text(cmdline.data),
        "amd_gpus": [{"card": d.card, "pci_slot": d.pci_slot, "device_id": d.device_id_hex,
                      "gfx_target": d.gfx_target, "name": d.name} for d in c.devices],
        "sample_error": c.sample_error,
        "max_file_bytes": capture.MAX_FILE_BYTES,
        "files": _file_list(tree),
        "symlinks": [{"path": p, "target": t} for p, t in sorted(tree.links.items())],
        "ryzenadj": dict(c.ryzenadj),
    }
    if redactor is None:
        manifest["redaction"] = {"redacted": False}
        return manifest
    manifest = redactor.scrub(manifest, MANIFEST)
    manifest["redaction"] = redactor.report()
    return manifest


def _file_list(tree: capture.TreeCapture) -> list[dict]:
    """Every file asked for, in path order: its size, or why it could not be read."""
    entries = [{"path": f.path, "size": len(f.data), "mode": f"{f.mode:04o}",
                "truncated": f.truncated} for f in tree.files.values()]
    entries += [{"path": e.path, "errno": e.errno, "error": e.message}
                for e in tree.errors.values()]
    return sorted(entries, key=lambda e: e["path"])


def _ryzenadj_file(c: Collected, redactor: capture.Redactor | None) -> str:
    return c.ryzenadj_text if redactor is None else redactor.text(c.ryzenadj_text, RYZENADJ_INFO)

