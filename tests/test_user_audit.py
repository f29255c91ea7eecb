"""What a user runs and hits, found by an audit from a user's side: each test fails on the code
before its fix. Real speech (alsa-utils, pocketsphinx-testdata) or speech synthesised by espeak-ng."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import wav2small

FRONT_CENTER = Path("/usr/share/sounds/alsa/Front_Center.wav")


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wav2small", *args], capture_output=True, **kw)


def _flac_bytes(path: Path) -> bytes:
    pcm, rate = sf.read(path, dtype="int16")
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="FLAC")
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_a_file_that_is_a_pipe_is_read_like_standard_input(fmt):
    """`cat speech.wav | wav2small predict /dev/stdin` (or a named pipe, or `<(...)`) crashed with
    soundfile's ValueError traceback ("frames must be specified for non-seekable files") for WAV,
    and FLAC failed with "flac decoder lost sync": libsndfile needs to seek."""
    data = FRONT_CENTER.read_bytes() if fmt == "wav" else _flac_bytes(FRONT_CENTER)
    want = _cli("predict", "--csv", str(FRONT_CENTER))
    assert want.returncode == 0, want.stderr
    r = _cli("predict", "--csv", "/dev/stdin", input=data)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()
    # the same numbers as the file itself; only the name differs
    assert r.stdout.decode().splitlines()[1].split(",")[1:] == want.stdout.decode().splitlines()[1].split(",")[1:]


def test_a_fifo_is_read_by_the_api(tmp_path):
    fifo = tmp_path / "speech.fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen(["sh", "-c", f"cat {FRONT_CENTER} > {fifo}"])
    try:
        pcm, rate = wav2small.audio.read(fifo)
    finally:
        writer.wait(timeout=30)
    want, want_rate = wav2small.audio.read(FRONT_CENTER)
    assert rate == want_rate and np.array_equal(pcm, want)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_an_unreadable_file_says_permission_denied():
    """libsndfile said only "System error." for a file the user may not read."""
    with tempfile.TemporaryDirectory() as d:   # in /tmp: pytest's tmp_path is closed to other users
        os.chmod(d, 0o755)
        f = Path(d) / "secret.wav"
        f.write_bytes(FRONT_CENTER.read_bytes())
        f.chmod(0)
        _as_nobody_read(f)


def _as_nobody_read(f: Path) -> None:
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                        sys.executable, "-c",
                        "import sys, wav2small.audio as a\n"
                        "try: a.read(sys.argv[1])\n"
                        "except a.AudioError as e: print(e)\n", str(f)],
                       capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.stdout.strip() == f"cannot read {f}: Permission denied", (r.stdout, r.stderr)



@pytest.fixture(scope="module")
def espeak_clip(tmp_path_factory) -> tuple[np.ndarray, int]:
    path = tmp_path_factory.mktemp("espeak") / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "hello there, how are you today"], check=True)
    return wav2small.audio.read(path)


def test_a_bad_clip_in_a_batch_is_named_by_its_index(espeak_clip):
    """predict(list of clips) said "clip has 10 samples ..." without saying which of the list."""
    from wav2small.errors import AudioError, AudioTooShortError

    pcm, rate = espeak_clip
    with pytest.raises(AudioTooShortError, match=r"^clip 1 of the 3: clip has 7 samples at 16000 Hz \(10 at"):
        wav2small.predict([pcm, pcm[:10], pcm], sample_rate=rate)
    nan = pcm.copy()
    nan[100] = np.nan
    with pytest.raises(AudioError, match=r"^clip 2 of the 3: the clip holds 1 NaN"):
        wav2small.predict([pcm, pcm, nan], sample_rate=rate)
    assert [p.decision for p in wav2small.predict([pcm, pcm], sample_rate=rate)] == ["reliable"] * 2


def test_a_source_tree_without_the_engine_says_so(tmp_path):
    """`pip install . && python -m wav2small predict ...` (or `import wav2small`) in the checkout's
    root imports the source tree, whose C engine is not built: Python said "cannot import name
    '_engine' from partially initialized module 'wav2small' (most likely due to a circular import)"."""
    import shutil

    import site

    pkg = Path(wav2small.__file__).parent
    shutil.copytree(pkg, tmp_path / "src" / "wav2small", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    # -S and site-packages on PYTHONPATH: no .pth files, so no editable install's finder (a checkout
    # installed with pip install -e) supplies the engine from elsewhere
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(site.getsitepackages())}

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", "-m", "wav2small", *args], capture_output=True, cwd=cwd, env=env)

    r = run("predict", str(FRONT_CENTER), cwd=tmp_path / "src")
    err = r.stderr.decode()
    assert r.returncode != 0 and "C engine is not built in" in err and "circular" not in err, err
    # with the engine beside it, the same tree runs the README's command
    shutil.copytree(pkg, tmp_path / "built" / "wav2small", ignore=shutil.ignore_patterns("__pycache__"))
    r = run("predict", "--json", str(FRONT_CENTER), cwd=tmp_path / "built")
    assert r.returncode == 0 and b'"decision": "reliable"' in r.stdout, r.stderr


CARDS = Path("/usr/share/pocketsphinx/test/data/cards/001.wav")   # 16 kHz mono 16-bit speech


def test_c_cli_reads_a_wave_format_extensible_pcm_file(tmp_path):
    """w2s_cli refused mono 16-bit PCM written as WAVE_FORMAT_EXTENSIBLE (libsndfile's WAVEX, many
    recorders) with "only mono 16-bit PCM WAV is read", which it is; other formats stay refused."""
    from conftest import DEFAULT_W2S, REPO

    out = tmp_path / "out"
    r = subprocess.run(["make", "-s", "-C", str(REPO / "csrc"), f"OUT={out}", f"{out}/w2s_cli"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    pcm, rate = sf.read(CARDS, dtype="int16")
    wavex, floatx = tmp_path / "wavex.wav", tmp_path / "floatx.wav"
    sf.write(wavex, pcm, rate, format="WAVEX", subtype="PCM_16")
    sf.write(floatx, pcm / 32768.0, rate, format="WAVEX", subtype="FLOAT")
    assert sf.info(wavex).format == "WAVEX" and wavex.read_bytes()[20:22] == b"\xfe\xff"
    r = subprocess.run([str(out / "w2s_cli"), str(DEFAULT_W2S), str(CARDS), str(wavex)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    rows = r.stdout.splitlines()
    assert len(rows) == 3 and rows[1].split("\t")[1:] == rows[2].split("\t")[1:]
    r = subprocess.run([str(out / "w2s_cli"), str(DEFAULT_W2S), str(floatx)], capture_output=True, text=True)
    assert r.returncode == 1 and "only mono 16-bit PCM WAV is read" in r.stderr
