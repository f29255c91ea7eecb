"""The Python API and the CLI: inputs accepted, results, clear errors, no torch at run time."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import FRONT_CENTER, REPO, to_int16

import wav2small
from wav2small import Model, Prediction
from wav2small.errors import (
    AudioError,
    AudioTooShortError,
    ModelChecksumError,
    ModelError,
    ModelTruncatedError,
    ModelVersionError,
    NotAModelError,
)


def test_import_does_not_load_torch():
    code = "import sys, wav2small; wav2small.Model(); assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_engine_version_matches_package():
    from wav2small import _engine

    assert _engine.__version__ == wav2small.__version__, "stale build of the C extension"


def test_predict_forms_agree(speech_clips):
    pcm = speech_clips[0]
    p = wav2small.predict(pcm)
    assert isinstance(p, Prediction)
    assert p == wav2small.predict(pcm.astype(np.float64))
    assert p == wav2small.predict(list(pcm.astype(np.float64)))
    as_int16 = np.clip(np.rint(pcm * 32768), -32768, 32767).astype(np.int16)
    assert p == wav2small.predict(as_int16)
    assert np.allclose(p.as_array(), [p.arousal, p.dominance, p.valence])
    assert list(p.as_dict()) == ["arousal", "dominance", "valence", "sigma", "speech_prob", "decision",
                                 "modulation_db", "steady"]
    assert 0.0 <= p.steady <= 1.0   # the shipped model's file has the steadiness measure
    print("\n", p)


def test_list_of_clips_gives_list(speech_clips):
    out = wav2small.predict(speech_clips[:3])
    assert isinstance(out, list) and len(out) == 3
    assert out[1] == wav2small.predict(speech_clips[1])


def test_loud_floats_are_scaled_not_clipped(speech_clips):
    """Floats beyond +-1 are scaled to their peak (the prenorm makes gain invisible) instead of
    being clipped into a square wave."""
    pcm = speech_clips[2] / np.abs(speech_clips[2]).max()
    full_scale = np.rint(pcm * 32767).astype(np.int16)
    a = wav2small.predict(full_scale).as_array()
    b = wav2small.predict(pcm * 400.0).as_array()
    clipped = wav2small.predict(np.clip(pcm * 400.0, -1, 1)).as_array()
    assert np.allclose(a, b, atol=1e-3), (a, b)
    assert not np.allclose(a, clipped, atol=1e-2)


def test_resampling(speech_clips):
    import soxr

    pcm = speech_clips[3]
    at_8k = soxr.resample(pcm, 16000, 8000)
    at_44k = soxr.resample(pcm, 16000, 44100)
    ref = wav2small.predict(pcm).as_array()
    # 8 kHz loses the upper half of the spectrum: for full-band speech the model hears another clip
    # (0.03-0.09 away over the test clips' pocketsphinx and alsa speech, 0.001 for asterisk's
    # telephone prompts), the one a 16 kHz clip band-limited the same way is (measured <= 6e-4)
    at_8k_pred = wav2small.predict(at_8k, sample_rate=8000).as_array()
    assert np.allclose(at_8k_pred, wav2small.predict(soxr.resample(at_8k, 8000, 16000)).as_array(), atol=2e-3)
    assert np.abs(at_8k_pred - ref).max() > 0.01   # this clip is full-band speech
    at_44k_pred = wav2small.predict(at_44k, sample_rate=44100).as_array()
    assert np.allclose(at_44k_pred, ref, atol=3e-3)   # measured 1.1e-3 here, at most 1.7e-3 over the test clips


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.zeros(0, np.float32), AudioTooShortError, "at least 64"),
        (np.zeros(63, np.int16), AudioTooShortError, "63 samples"),
        (np.array([0.1, np.nan] * 100, np.float32), AudioError, "NaN or infinite"),
        (np.array([0.1, np.inf] * 100), AudioError, "NaN or infinite"),
        (np.zeros((2, 16000), np.float32), AudioError, "1-D mono"),
        (np.zeros(16000, np.int32), AudioError, "unsupported dtype int32"),
        (np.zeros(16000, np.complex64), AudioError, "unsupported dtype"),
        ("speech.wav", AudioError, "numpy array or a list"),
        ([0.1, "a"], AudioError, "numbers only"),
    ],
)
def test_bad_input_raises_clear_error(bad, exc, match):
    with pytest.raises(exc, match=match):
        wav2small.predict(bad)


def test_non_contiguous_and_strided_input(speech_clips):
    pcm = speech_clips[4]
    stereo = np.stack([pcm, pcm], axis=1)  # (n, 2): a column is a strided view
    assert wav2small.predict(stereo[:, 0]) == wav2small.predict(pcm)


# ---- model files ------------------------------------------------------------------------------


def _default_bytes() -> bytes:
    from importlib import resources

    return resources.files("wav2small").joinpath("models", "default.w2s").read_bytes()


def test_model_file_errors(tmp_path):
    data = bytearray(_default_bytes())
    cases = {
        "truncated": (data[: len(data) // 2], ModelTruncatedError),
        "empty": (b"", ModelTruncatedError),
        "wrong magic": (b"RIFF" + data[4:], NotAModelError),
        "newer version": (data[:4] + bytes([wav2small._engine.FORMAT_VERSION + 1, 0]) + data[6:], ModelVersionError),
        "flipped byte": (data[:1000] + bytes([data[1000] ^ 0x40]) + data[1001:], ModelChecksumError),
        "wrong checksum": (data[:-4] + bytes(4), ModelChecksumError),
    }
    for name, (blob, exc) in cases.items():
        path = tmp_path / f"{name}.w2s"
        path.write_bytes(bytes(blob))
        with pytest.raises(exc, match=str(path)):
            Model(path)
    with pytest.raises(ModelError, match="cannot read model file"):
        Model(tmp_path / "missing.w2s")


def test_model_from_path_equals_default(tmp_path, speech_clips):
    path = tmp_path / "m.w2s"
    path.write_bytes(_default_bytes())
    assert Model(path).predict(speech_clips[0]) == Model().predict(speech_clips[0])
    assert "channels=13" in repr(Model(path))


# ---- CLI --------------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wav2small", *args], capture_output=True, text=True)


def test_cli_predict_table_json_csv(tmp_path, speech_files):
    files = [str(f) for f in speech_files[:2]]
    table = _cli("predict", *files)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.strip().splitlines()
    assert lines[0].split()[:4] == ["file", "arousal", "dominance", "valence"] and len(lines) == 3
    rows = json.loads(_cli("predict", "--json", *files).stdout)
    assert [r["file"] for r in rows] == files
    expected = wav2small.predict(wav2small.audio.load(files[0]))
    assert rows[0]["arousal"] == pytest.approx(expected.arousal)
    csv_out = _cli("predict", "--csv", *files).stdout.strip().splitlines()
    assert csv_out[0].startswith("file,arousal,dominance,valence") and len(csv_out) == 3


def test_cli_reports_bad_files_and_continues(tmp_path, speech_files):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(10, np.int16), 16000)
    r = _cli("predict", str(bad), str(speech_files[0]), str(short))
    assert r.returncode == 1
    assert "cannot read " + str(bad) in r.stderr and str(short) + ": clip has 10 samples" in r.stderr
    assert str(speech_files[0]) in r.stdout


def test_cli_table_columns_line_up_with_their_titles(speech_files):
    lines = _cli("predict", str(speech_files[0]), str(speech_files[1])).stdout.splitlines()
    # where each number column ends (file names and decisions are left-aligned, numbers right)
    ends = lambda line: [m.end() for m in re.finditer(r"\S+", line)][1:-1]
    # A/D/V, three sigmas, speech_prob, mod_dB and the shipped file's steady
    assert len(ends(lines[0])) == 9 and ends(lines[0]) == ends(lines[1]) == ends(lines[2])


def test_cli_reads_standard_input_and_warns_of_a_truncated_wav(tmp_path, speech_files):
    wav = speech_files[0].read_bytes()
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "--json", "-"], input=wav,
                       capture_output=True)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[0]
    assert row["file"] == "-" and row["arousal"] == pytest.approx(wav2small.predict(*wav2small.audio.read(speech_files[0])).arousal)
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "-"], input=b"not audio", capture_output=True)
    assert r.returncode == 1 and b"cannot read standard input" in r.stderr
    cut = tmp_path / "cut.wav"
    cut.write_bytes(wav[: len(wav) // 2])
    r = _cli("predict", "--json", str(cut))
    assert r.returncode == 0 and f"warning: {cut} is truncated" in r.stderr   # the samples there are used
    data, rate = sf.read(cut, dtype="float32")
    assert json.loads(r.stdout)[0]["arousal"] == pytest.approx(wav2small.predict(data, rate).arousal)
    with pytest.warns(wav2small.errors.TruncatedAudioWarning, match="promises"):
        wav2small.audio.read(cut)
    # the same cut file through standard input: the same samples and the same warning (it was silent)
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "--json", "-"], input=cut.read_bytes(),
                       capture_output=True, text=False)
    assert r.returncode == 0 and b"warning: standard input is truncated: its WAV header promises" in r.stderr
    assert json.loads(r.stdout)[0]["arousal"] == pytest.approx(wav2small.predict(data, rate).arousal)


def test_cli_threshold_options_are_checked_by_the_parser():
    for args, match in ((["--max-sigma", "-1"], "argument --max-sigma: must be a positive number"),
                        (["--min-speech-prob", "1.5"], "argument --min-speech-prob: must be within 0..1"),
                        (["--max-sigma", "abc"], "argument --max-sigma: must be a number, got 'abc'")):
        r = _cli("predict", *args, "x.wav")
        assert r.returncode == 2 and match in r.stderr


def test_a_model_error_says_what_to_do(tmp_path):
    data = bytearray(_default_bytes())
    data[4] = wav2small._engine.FORMAT_VERSION + 1
    with pytest.raises(ModelVersionError, match=f"the file is version {data[4]}, this engine reads version "
                                                f"{wav2small._engine.FORMAT_VERSION}"):
        Model.from_bytes(bytes(data))
    weights = REPO / "training" / "default" / "model.safetensors"
    with pytest.raises(NotAModelError, match="float safetensors weights: convert them with `wav2small convert`"):
        Model(weights)


def test_a_broken_command_plugin_does_not_take_predict_with_it(monkeypatch, capsys, speech_files):
    """A plugin that fails to load (a missing module; or `training` shadowed by a user's own folder
    of that name, in a wheel install) costs only its own command: predict runs, the loss is named."""
    from importlib.metadata import EntryPoint

    import wav2small.__main__ as cli

    broken = EntryPoint(name="broken", value="no_such_module_here:register", group="wav2small.commands")
    real = cli.entry_points
    monkeypatch.setattr(cli, "entry_points", lambda group: [*real(group=group), broken])
    assert cli.main(["predict", "--csv", str(speech_files[0])]) == 0
    out, err = capsys.readouterr()
    assert str(speech_files[0]) in out and err == ""   # predict loads no plugin at all
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    out, err = capsys.readouterr()
    assert e.value.code == 0 and "predict" in out and "convert" in out
    assert "the 'broken' command is unavailable (no_such_module_here:register: ModuleNotFoundError" in err


def test_predict_from_the_command_line_imports_no_training_code(speech_files):
    code = ("import sys; from wav2small.__main__ import main; main(['predict', sys.argv[1]]); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('training', 'torch')))")
    r = subprocess.run([sys.executable, "-c", code, str(speech_files[0])], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "[]", (r.stdout, r.stderr)


def test_cli_help_lists_convert():
    r = _cli("--help")
    assert r.returncode == 0 and "predict" in r.stdout and "convert" in r.stdout


# ---- threads ----------------------------------------------------------------------------------


def test_gil_is_released_while_the_engine_runs(speech_clips):
    """Another Python thread runs during one long engine call. Deterministic: with the switch
    interval at 10 s the interpreter never takes the GIL from a thread, so the counter can only
    advance while the engine has let go of it; the counter hands it back at every tick (sleep(0)),
    so the main thread reads the count as soon as the engine returns. A call that kept the GIL
    would count 0 (checked with a stand-in that sleeps with the GIL held)."""
    import sys
    import threading
    import time

    model = Model()
    pcm = to_int16(np.resize(speech_clips[0], 5 * 60 * 16000))   # 5 min of audio: a call of ~0.2 s
    ticks, started, stop = [0], threading.Event(), threading.Event()

    def count():
        started.set()
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    t = threading.Thread(target=count)
    t.start()
    started.wait()
    try:
        before = ticks[0]
        model._engine.predict(pcm)   # the binding itself: numpy's own GIL releases play no part
        during = ticks[0] - before
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert during > 0, "the counter thread never ran during the engine call: the GIL was held"


def test_shared_model_threads_match_sequential(speech_clips):
    from concurrent.futures import ThreadPoolExecutor

    model = Model()
    clips = speech_clips[:8]
    sequential = [model.predict_fixed(c).tolist() for c in clips]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda c: model.predict_fixed(c).tolist(), clips * 3))
    assert parallel == sequential * 3


def test_the_runtime_package_type_checks(tmp_path):
    """Its annotations are checked (wav2small ships py.typed, so a user's mypy reads them)."""
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", f"--cache-dir={tmp_path}", "wav2small"],
                       cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:]


def test_a_users_code_sees_the_types_it_gets(tmp_path):
    """What a user's mypy infers from the README's calls: a Prediction for a clip, a list for a list or a
    tuple of clips, a Stream whose read() is a Prediction, float sample rates (they were Any, or refused)."""
    user = tmp_path / "user.py"
    user.write_text(
        "import numpy as np\nimport wav2small\n"
        "x = np.zeros(16000, np.float32)\nm = wav2small.Model()\n"
        "reveal_type(wav2small.predict(x))\nreveal_type(wav2small.predict([x, x], threads=2))\n"
        "reveal_type(m.predict((x, x), sample_rate=44100.0))\n"
        "s = m.stream(sample_rate=44100.0)\nreveal_type(s)\nreveal_type(s.read())\n")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", f"--cache-dir={tmp_path / 'cache'}", str(user)],
                       cwd=REPO, capture_output=True, text=True)
    revealed = [t.removeprefix("builtins.") for t in re.findall(r'Revealed type is "([^"]+)"', r.stdout)]
    assert revealed == ["wav2small.model.Prediction", "list[wav2small.model.Prediction]",
                        "list[wav2small.model.Prediction]", "wav2small.stream.Stream",
                        "wav2small.model.Prediction"], r.stdout
    assert "error" not in r.stdout, r.stdout


def _signature_names(doc: str) -> list[str]:
    """Parameter names of a pybind11 function from the first line of its docstring ('self' dropped)."""
    first = doc.splitlines()[0]
    inner = first[first.index("(") + 1 : first.rindex(") ->")]
    names, depth, start = [], 0, 0
    for i, ch in enumerate(inner + ","):
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == "," and depth == 0:
            part = inner[start:i].strip()
            if part:
                names.append(part.split(":")[0].strip())
            start = i + 1
    return [n for n in names if n != "self"]


def test_the_engine_stub_matches_the_extension():
    """wav2small/_engine.pyi declares exactly the extension's names, with the same kind (class,
    function, property, constant) and the same parameter names: mypy checks calls against it, so a
    binding added, renamed or removed without the stub would go unchecked or be flagged wrongly."""
    import ast
    import inspect

    from wav2small import _engine

    tree = ast.parse((REPO / "wav2small" / "_engine.pyi").read_text())

    def params(fn: ast.FunctionDef) -> list[str]:
        a = fn.args
        return [p.arg if p not in a.posonlyargs else "" for p in a.posonlyargs + a.args + a.kwonlyargs
                if p.arg != "self"]

    def check_function(name: str, fn: ast.FunctionDef, real: object) -> None:
        got = _signature_names(real.__doc__ or "")
        # positional-only in the stub ("") <-> unnamed (argN) in the binding
        want = ["" if g.startswith("arg") else g for g in got]
        assert params(fn) == want, (name, params(fn), got)

    stub: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub[node.target.id] = node
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub[node.name] = node
    real = {n for n in dir(_engine) if not n.startswith("_")} | {"__version__"}
    assert set(stub) == real, (sorted(set(stub) - real), sorted(real - set(stub)))
    for name, node in stub.items():
        obj = getattr(_engine, name)
        if isinstance(node, ast.ClassDef):
            assert inspect.isclass(obj), name
            members = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            have = {n for n in dir(obj) if not n.startswith("_")} | {"__init__"}
            assert set(members) == have, (name, sorted(set(members) - have), sorted(have - set(members)))
            for m, fn in members.items():
                is_prop = any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)
                assert is_prop == isinstance(inspect.getattr_static(obj, m), property), (name, m)
                if not is_prop:
                    check_function(f"{name}.{m}", fn, getattr(obj, m))
        elif isinstance(node, ast.FunctionDef):
            assert callable(obj), name
            check_function(name, node, obj)
        else:
            assert not callable(obj), name


# ---- inputs a user hands over in odd ways -------------------------------------------------------

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
    r = subprocess.run([sys.executable, "-m", "wav2small", "predict", "--csv", "/dev/stdin"], input=data,
                       capture_output=True)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr.decode()
    # the same numbers as the file itself; only the name differs
    assert r.stdout.decode().splitlines()[1].split(",")[1:] == want.stdout.splitlines()[1].split(",")[1:]


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
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c",
                            "import sys, wav2small.audio as a\n"
                            "try: a.read(sys.argv[1])\n"
                            "except a.AudioError as e: print(e)\n", str(f)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert r.stdout.strip() == f"cannot read {f}: Permission denied", (r.stdout, r.stderr)


def test_a_bad_clip_in_a_batch_is_named_by_its_index(speech_clips):
    """predict(list of clips) said "clip has 10 samples ..." without saying which of the list."""
    pcm = speech_clips[0]
    with pytest.raises(AudioTooShortError, match=r"^clip 1 of the 3: clip has 10 samples"):
        wav2small.predict([pcm, pcm[:10], pcm])
    nan = pcm.copy()
    nan[100] = np.nan
    with pytest.raises(AudioError, match=r"^clip 2 of the 3: the clip holds 1 NaN"):
        wav2small.predict([pcm, pcm, nan])
    good = wav2small.predict([pcm, pcm])
    assert len(good) == 2 and good[0].as_dict() == good[1].as_dict()
