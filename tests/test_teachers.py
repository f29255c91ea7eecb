"""Teachers: the Dawn layout and its loading path, ONNX, .w2s, labels, ensembles, specs."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DEFAULT_W2S

from training.teachers import (
    DAWN_HEAD_KEYS,
    DawnTeacher,
    EnsembleTeacher,
    LabelsTeacher,
    OnnxTeacher,
    Teacher,
    TeacherError,
    Wav2SmallTeacher,
    file_sha256,
    from_spec,
    make_random_dawn,
    normalize,
)


@pytest.fixture(scope="module")
def dawn_dir(tmp_path_factory) -> Path:
    return make_random_dawn(tmp_path_factory.mktemp("dawn") / "ckpt", seed=3)


@pytest.fixture(scope="module")
def clips(speech_clips) -> list[np.ndarray]:
    return [c[:32000] for c in speech_clips[:6]]


def _reference_dawn(path: Path, wave: np.ndarray) -> np.ndarray:
    """The audEERING model card's computation, written out from the saved tensors' own modules."""
    from training.teachers import dawn_model_class

    model = dawn_model_class().from_pretrained(str(path), local_files_only=True).eval()
    x = torch.from_numpy((wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)).float()[None]
    with torch.no_grad():
        h = model.wav2vec2(x).last_hidden_state.mean(dim=1)
        return model.classifier.out_proj(torch.tanh(model.classifier.dense(h)))[0].numpy()


def test_dawn_checkpoint_has_the_published_key_layout(dawn_dir: Path):
    from safetensors.torch import load_file

    keys = set(load_file(str(dawn_dir / "model.safetensors")))
    head = {k for k in keys if k.startswith("classifier.")}
    assert head == set(DAWN_HEAD_KEYS)  # dense + out_proj, as in EmotionModel's RegressionHead
    assert all(k.startswith("wav2vec2.") for k in keys - head)
    assert "wav2vec2.encoder.layers.0.attention.q_proj.weight" in keys
    state = load_file(str(dawn_dir / "model.safetensors"))
    hidden = state["wav2vec2.encoder.layers.0.attention.q_proj.weight"].shape[0]
    assert state["classifier.dense.weight"].shape == (hidden, hidden)
    assert state["classifier.out_proj.weight"].shape == (3, hidden)


def test_dawn_teacher_matches_the_model_card_computation(dawn_dir: Path, clips):
    teacher = DawnTeacher(dawn_dir)
    out = teacher(clips)
    assert out.shape == (len(clips), 3) and out.dtype == np.float32
    for wave, row in zip(clips, out):
        np.testing.assert_allclose(row, _reference_dawn(dawn_dir, wave), atol=1e-5)
    assert teacher.id.startswith("dawn:") and not teacher.clip_level
    # zero mean / unit variance first: gain and DC offset do not matter
    np.testing.assert_allclose(teacher([0.05 * c + 0.01 for c in clips]), out, atol=1e-4)
    # equal-length clips share a batch; the result must not depend on it
    np.testing.assert_allclose(np.concatenate([teacher([c]) for c in clips]), out, atol=1e-5)


def test_dawn_teacher_loads_a_legacy_pytorch_bin(dawn_dir: Path, tmp_path: Path, clips):
    """The published checkpoint is a transformers-4.17 pytorch_model.bin, whose positional conv is
    stored as weight_g / weight_v (old weight_norm); it must load without edits."""
    from safetensors.torch import load_file

    state = load_file(str(dawn_dir / "model.safetensors"))
    prefix = "wav2vec2.encoder.pos_conv_embed.conv."
    state[prefix + "weight_g"] = state.pop(prefix + "parametrizations.weight.original0")
    state[prefix + "weight_v"] = state.pop(prefix + "parametrizations.weight.original1")
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shutil.copy(dawn_dir / "config.json", legacy / "config.json")
    torch.save(state, legacy / "pytorch_model.bin")
    np.testing.assert_allclose(DawnTeacher(legacy)(clips[:2]), DawnTeacher(dawn_dir)(clips[:2]), atol=1e-6)


def test_dawn_teacher_refuses_missing_head_and_non_directories(dawn_dir: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(dawn_dir / "model.safetensors"))
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(dawn_dir / "config.json", broken / "config.json")
    # a head under other names (e.g. a plain Wav2Vec2ForSequenceClassification) would be random-initialised
    renamed = {k.replace("classifier.out_proj", "classifier.proj"): v for k, v in state.items()}
    save_file(renamed, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(TeacherError, match="missing.*classifier.out_proj"):
        DawnTeacher(broken)
    with pytest.raises(TeacherError, match="not a directory"):
        DawnTeacher("audeering/wav2vec2-large-robust-12-ft-emotion-msp-dim")
    with pytest.raises(TeacherError, match="1-D"):
        DawnTeacher(dawn_dir)([np.zeros((2, 100), np.float32)])


def test_dawn_teacher_without_or_with_a_wrong_config_json_is_one_line(dawn_dir: Path, tmp_path: Path):
    """A directory without config.json, or with one that does not describe the weights, ended
    training.distill and training.evaluate in an 87-line transformers traceback (and load report)."""
    import subprocess
    import sys

    from conftest import REPO

    no_config, wrong_config = tmp_path / "no_config", tmp_path / "wrong_config"
    for d in (no_config, wrong_config):
        d.mkdir()
        shutil.copy(dawn_dir / "model.safetensors", d / "model.safetensors")
    (wrong_config / "config.json").write_text("{}")   # transformers' defaults: wav2vec2-base's shapes
    with pytest.raises(TeacherError, match=f"{no_config} has no config.json \\(a Hugging Face model directory"):
        DawnTeacher(no_config)
    with pytest.raises(TeacherError, match=f"cannot load {wrong_config} as a wav2vec2 teacher: the shapes"):
        DawnTeacher(wrong_config)

    # the two commands that take --teacher, one case each (a subprocess costs seconds)
    for d, said, command in (
            (no_config, "has no config.json",
             ["training.distill", f"--out_dir={tmp_path / 'run'}", "--threads=1", "--tune_malloc=false"]),
            # the teacher is built before the corpus is read
            (wrong_config, "as a wav2vec2 teacher",
             ["training.evaluate", f"--corpus={tmp_path / 'none.csv'}", str(REPO / "training" / "default")])):
        r = subprocess.run([sys.executable, "-m", *command, f"--teacher=dawn:{d}"], cwd=REPO,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, (command, r.stderr[-2000:])
        assert r.stderr.startswith(f"python -m {command[0]}: error: dawn teacher: ") and said in r.stderr


@pytest.mark.parametrize("option, match", [
    ("--hidden=0", "--hidden must be a positive multiple of 4"),
    ("--hidden=63", "--hidden must be a positive multiple of 4 (the positional convolution's 4 groups"),
    ("--hidden=-8", "--hidden must be a positive multiple of 4"),
    ("--layers=-1", "--layers must be >= 1"),
    ("--layers=0", "--layers must be >= 1"),
    ("--seed=-1", "--seed must be >= 0"),
])
def test_standin_options_are_checked_before_training(tmp_path: Path, option: str, match: str, capsys):
    """--hidden=0 was a ZeroDivisionError, --hidden=63 "in_channels must be divisible by groups",
    --layers=-1 was accepted; nothing is read or trained before the check."""
    from training import teachers

    with pytest.raises(SystemExit) as e:
        teachers.main([f"--out={tmp_path / 't'}", f"--corpus={tmp_path / 'none.csv'}", option])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"python -m training.teachers: error: {match}" in err.replace("\n", " "), err
    assert not (tmp_path / "t").exists()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory, distilled_float) -> Path:
    from training.onnx_export import export_onnx

    return export_onnx(distilled_float, tmp_path_factory.mktemp("onnx") / "w2s.onnx")


def test_onnx_teacher_runs_a_waveform_graph(onnx_file: Path, distilled_float, clips):
    teacher = OnnxTeacher(onnx_file)
    out = teacher(clips)
    with torch.no_grad():
        ref = np.stack([distilled_float(torch.from_numpy(c)[None])[0].numpy() for c in clips])
    np.testing.assert_allclose(out, ref, atol=1e-4)
    assert teacher.id.startswith("onnx:") and teacher.id == OnnxTeacher(onnx_file).id
    with pytest.raises(TeacherError, match="no output"):
        OnnxTeacher(onnx_file, output="logits_missing")


def test_onnx_teacher_normalises_outside_the_graph_when_asked(tmp_path, clips):
    """`onnx+norm:` (normalize_input) for graphs that expect zero mean and unit variance done outside
    (audEERING's export): a graph that is not gain-invariant, its output the first three samples it
    gets, shows which input it was given (Wav2Small normalises inside, so it could not tell)."""
    import onnx
    from onnx import TensorProto, helper

    ints = [helper.make_tensor(n, TensorProto.INT64, [1], [v]) for n, v in (("start", 0), ("end", 3), ("axis", 1))]
    graph = helper.make_graph([helper.make_node("Slice", ["pcm", "start", "end", "axis"], ["adv"])], "first3",
                              [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, [1, "L"])],
                              [helper.make_tensor_value_info("adv", TensorProto.FLOAT, [1, 3])], ints)
    path = tmp_path / "first3.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    loud = [3.0 * c + 0.1 for c in clips]
    np.testing.assert_allclose(OnnxTeacher(path)(loud), np.stack([c[:3] for c in loud]), atol=1e-6)
    normalised = OnnxTeacher(path, normalize_input=True)(loud)
    np.testing.assert_allclose(normalised, np.stack([normalize(c)[:3] for c in loud]), atol=1e-5)
    np.testing.assert_allclose(normalised, np.stack([normalize(c)[:3] for c in clips]), atol=1e-4)  # gain gone


def test_w2s_teacher_is_the_engine(clips, default_model):
    teacher = Wav2SmallTeacher(DEFAULT_W2S)
    out = teacher(clips)
    ref = np.stack([default_model.predict(c).as_array() for c in clips])
    np.testing.assert_array_equal(out, ref.astype(np.float32))
    with pytest.raises(TeacherError, match="cannot load"):
        Wav2SmallTeacher(Path(__file__))


def test_ensemble_is_the_mean(onnx_file: Path, clips):
    a, b = Wav2SmallTeacher(DEFAULT_W2S), OnnxTeacher(onnx_file)
    ens = EnsembleTeacher([a, b])
    np.testing.assert_allclose(ens(clips), (a(clips) + b(clips)) / 2, atol=1e-6)
    weighted = EnsembleTeacher([a, b], [3, 1])
    np.testing.assert_allclose(weighted(clips), 0.75 * a(clips) + 0.25 * b(clips), atol=1e-6)
    assert a.id in ens.id and b.id in ens.id and not ens.clip_level
    spec = from_spec(f"ensemble:w2s:{DEFAULT_W2S},onnx:{onnx_file}")
    assert isinstance(spec, EnsembleTeacher) and spec.id == ens.id
    with pytest.raises(TeacherError, match="weights"):
        EnsembleTeacher([a, b], [1.0])


def test_labels_teacher_by_hash_or_path(tmp_path: Path, speech_files):
    files = speech_files[:3]
    rows = [(str(f), 0.1 * i, 0.2, 0.3 + i) for i, f in enumerate(files)]
    by_path = tmp_path / "by_path.csv"
    with open(by_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "arousal", "dominance", "valence"])
        w.writerows(rows)
    teacher = LabelsTeacher(by_path)
    ids = [file_sha256(f) for f in files]
    out = teacher([np.zeros(10, np.float32)] * 3, ids)
    np.testing.assert_allclose(out, [[0.0, 0.2, 0.3], [0.1, 0.2, 1.3], [0.2, 0.2, 2.3]], atol=1e-6)
    assert teacher.clip_level and isinstance(teacher, Teacher)
    by_hash = tmp_path / "by_hash.csv"
    by_hash.write_text("sha256,arousal,dominance,valence\n" + "".join(f"{i},{r[1]},{r[2]},{r[3]}\n"
                                                                       for i, r in zip(ids, rows)))
    np.testing.assert_allclose(LabelsTeacher(by_hash)([np.zeros(1)] * 3, ids), out)
    with pytest.raises(TeacherError, match="no targets"):
        teacher([np.zeros(1)], ["0" * 64])
    with pytest.raises(TeacherError, match="needs the clip ids"):
        teacher([np.zeros(1)])
    bad = tmp_path / "bad.csv"
    bad.write_text("path,arousal\nx.wav,0.5\n")
    with pytest.raises(TeacherError, match="dominance"):
        LabelsTeacher(bad)


def test_specs(tmp_path: Path):
    assert isinstance(from_spec(f"w2s:{DEFAULT_W2S}"), Wav2SmallTeacher)
    for spec, msg in (("nope:x", "unknown teacher kind"), ("dawn:", "needs an argument"),
                      ("prosdy", "unknown teacher kind 'prosdy'"),   # a typo, not a missing argument
                      (f"onnx:{tmp_path / 'missing.onnx'}", "no file"), ("ensemble:", "no members")):
        with pytest.raises(TeacherError, match=msg):
            from_spec(spec)


def test_normalize():
    x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    y = normalize(x)
    assert abs(float(y.mean())) < 1e-6 and abs(float(y.std()) - 1) < 1e-4


@pytest.mark.usefixtures("espeak_ng")
def test_standin_teacher_is_fitted_and_saved_in_the_dawn_layout(tmp_path: Path, clips, capsys):
    from training.corpus import build
    from training.teachers import fit_standin

    build(tmp_path / "c", {"espeak"}, espeak=40, flite=0, max_per_group=0, seed=0, cache_dir=tmp_path / "cache")
    out = fit_standin(tmp_path / "teacher", tmp_path / "c" / "manifest.csv", steps=4, batch=8, log=lambda m: None)
    fitted, init = DawnTeacher(out), DawnTeacher(make_random_dawn(tmp_path / "init", seed=0))
    assert fitted.id != init.id and not np.allclose(fitted(clips), init(clips))
    again = fit_standin(tmp_path / "teacher2", tmp_path / "c" / "manifest.csv", steps=4, batch=8, log=lambda m: None)
    np.testing.assert_array_equal(DawnTeacher(again)(clips), fitted(clips))  # deterministic on one thread
    # the command line never replaces a teacher silently: students and caches name it by its content
    from training import teachers

    args = [f"--out={out}", f"--corpus={tmp_path / 'c' / 'manifest.csv'}", "--steps=2"]
    with pytest.raises(SystemExit) as e:
        teachers.main(args)
    assert e.value.code == 2 and "already holds a teacher" in capsys.readouterr().err
    assert DawnTeacher(out).id == fitted.id
    teachers.main([*args, "--overwrite"])
    assert DawnTeacher(out).id != fitted.id
