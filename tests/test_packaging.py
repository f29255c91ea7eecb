"""The sdist and the build: what a user who installs from a source archive, or rebuilds after an edit,
gets. The installed wheel itself is what every other test imports (.ci/run installs it editable)."""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import FRONT_CENTER, REPO, require_tool


def _checkout(to: Path) -> Path:
    """The tracked files of the working tree (edits included, untracked build products and runs not),
    as a fresh clone would hold them: setup.py writes its egg-info and build/ there, not here."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in files.decode().split("\0"):
        if name and (REPO / name).is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, to / name)
    return to


def _sdist(out: Path) -> Path:
    tree = _checkout(out / "tree")
    r = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(out)], cwd=tree, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    (archive,) = out.glob("wav2small-*.tar.gz")
    return archive


def test_the_sdist_builds_the_c_engine_as_its_readme_says(tmp_path):
    """README and docs/engine.md, both in the sdist, say `make -C csrc`: the sdist once lacked the
    Makefile, the C CLI and tests, and csrc/check. No build products, weights or tests go in."""
    require_tool("make")
    archive = _sdist(tmp_path / "dist")
    with tarfile.open(archive) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "src", filter="data")
    for needed in ("csrc/Makefile", "csrc/build-flags.mk", "csrc/w2s_cli.c", "csrc/test_w2s.c", "csrc/check/host_file.c",
                   "csrc/firmware/main.c", "csrc/fuzz/Makefile", "wav2small/models/default.w2s",
                   "wav2small/models/default.md", "wav2small/py.typed", "LICENSE", "docs/engine.md"):
        assert needed in names, needed
    unwanted = [n for n in names if n.startswith(("tests/", "runs/", "csrc/out", "training/default"))
                or n.endswith((".o", ".a", ".so", ".safetensors"))]
    assert not unwanted, unwanted
    (root,) = (tmp_path / "src").iterdir()
    r = subprocess.run(["make", "-s", "-C", "csrc", "OUT=out"], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (root / "csrc" / "out" / "w2s_cli").is_file() and (root / "csrc" / "out" / "test_w2s").is_file()


def test_a_header_edit_rebuilds_the_engine_and_the_extension_carries_no_debug_info(tmp_path):
    """setup.py's C library once ignored its headers: a reinstall over build/ after a header edit
    reused stale objects (the binding and the engine disagreed on W2S_MAX_SAMPLES). And Python's -g
    made the extension 3.2 MB of debug info instead of 0.7 MB."""
    require_tool("readelf", "binutils")
    tree = _checkout(tmp_path / "tree")

    def build() -> str:
        r = subprocess.run([sys.executable, "setup.py", "build", "--build-base", "b"], cwd=tree, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout + r.stderr

    first = build()
    assert "csrc/engine.c" in first
    (so,) = (tree / "b").glob("lib*/wav2small/_engine*.so")
    sections = subprocess.run(["readelf", "-S", "-W", str(so)], capture_output=True, text=True, check=True).stdout
    assert ".debug_info" not in sections, f"{so.stat().st_size} B with debug info"
    assert "csrc/engine.c" not in build()   # nothing changed: nothing compiled again
    header = tree / "csrc" / "w2s.h"
    header.write_text(header.read_text() + "\n")
    again = build()
    assert all(f"csrc/{c}" in again for c in ("engine.c", "stream.c", "conv.c")), again[-3000:]


def test_a_source_tree_without_the_engine_says_so(tmp_path):
    """`pip install . && python -m wav2small predict ...` (or `import wav2small`) in the checkout's
    root imports the source tree, whose C engine is not built: Python said "cannot import name
    '_engine' from partially initialized module 'wav2small' (most likely due to a circular import)"."""
    import wav2small

    pkg = Path(wav2small.__file__).parent
    speech = str(FRONT_CENTER)
    shutil.copytree(pkg, tmp_path / "src" / "wav2small", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # -S and site-packages on PYTHONPATH: no .pth files, so no editable install's finder (a checkout
    # installed with pip install -e) supplies the engine from elsewhere
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", "-m", "wav2small", *args], capture_output=True, cwd=cwd, env=env)

    r = run("predict", speech, cwd=tmp_path / "src")
    err = r.stderr.decode()
    assert r.returncode != 0 and "C engine is not built in" in err and "circular" not in err, err
    # with the engine beside it, the same tree runs the README's command
    shutil.copytree(pkg, tmp_path / "built" / "wav2small", ignore=shutil.ignore_patterns("__pycache__"))
    r = run("predict", "--json", speech, cwd=tmp_path / "built")
    assert r.returncode == 0 and b'"decision": "reliable"' in r.stdout, r.stderr
