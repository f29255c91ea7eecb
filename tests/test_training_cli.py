"""The `python -m training.<command>` lines themselves: modules that have none say so, bad counts are
refused before any work, every option has a --help line, the docs' commands do not overwrite the
repository's reports."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys

import pytest
from conftest import REPO


def option_help(text: str) -> dict[str, str]:
    """Each option of an argparse --help text (its first name) and its description, without the
    "(default: ...)" that training.cli.HelpFormatter and the dataclass parsers add."""
    section = text.split("\noptions:\n")[-1].split("\n\n", 1)[0]
    out: dict[str, str] = {}
    name = ""
    for line in section.splitlines():
        if line.startswith("  -"):   # "  --name METAVAR   description" (or the description on the next lines)
            invocation, _, desc = line.strip().partition("  ")
            name = invocation.split()[0].rstrip(",")
            out[name] = desc
        else:
            out[name] += " " + line.strip()
    return {k: re.sub(r"\(default: [^)]*\)", "", v).strip() for k, v in out.items()}


def test_option_help_reads_argparse_layouts():
    import argparse

    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--short", help="said")
    p.add_argument("--a_rather_long_option_name", help="said on the next line " * 6)
    p.add_argument("--none")
    p.add_argument("--only_default", default=3, help="(default: %(default)s)")
    got = option_help(p.format_help())
    assert set(got) == {"-h", "--short", "--a_rather_long_option_name", "--none", "--only_default"}
    assert got["--short"] == "said" and got["--a_rather_long_option_name"].startswith("said on the next line said")
    assert got["--none"] == "" and got["--only_default"] == ""


@pytest.mark.parametrize("module", ["export", "qat", "quantize"])
@pytest.mark.parametrize("args", [[], ["--help"]])
def test_modules_without_a_command_line_say_so(module: str, args: list[str]):
    """training.export and training.qat did nothing and exited 0 (also with --help)."""
    r = subprocess.run([sys.executable, "-m", f"training.{module}", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr.startswith(f"training.{module} has no command line: ") and r.stderr.count("\n") == 1
    assert ("--qat=auto" if module == "qat" else "wav2small convert") in r.stderr


@pytest.mark.parametrize("module, args, match", [
    ("quant_ablation", ["training/default/model.safetensors", "--clips=0"], "--clips must be >= 4"),
    ("quant_ablation", ["training/default/model.safetensors", "--clips=3"], "--clips must be >= 4"),
    ("vad_baseline", ["--clips=0"], "--clips must be >= 1"),
    ("vad_baseline", ["--clips=-3"], "--clips must be >= 1"),
])
def test_bad_clip_counts_are_refused_at_once(module: str, args: list[str], match: str, capsys):
    """--clips=0 ended in a ZeroDivisionError (quant_ablation) or in silero-vad's timing (vad_baseline)."""
    main = importlib.import_module(f"training.{module}").main
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"python -m training.{module}: error: {match}" in err, err


@pytest.mark.parametrize("module, options", [
    ("uq_select", ["--cache", "--threads"]),
    ("uq_report", ["--seed", "--threads"]),
    ("onnx_export", ["--opset"]),
    ("ood", ["--seed"]),
    ("prosody", ["--n", "--seed"]),
    ("vad_baseline", ["--clips"]),
])
def test_every_option_has_a_help_line(module: str, options: list[str], capsys):
    main = importlib.import_module(f"training.{module}").main
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and out.startswith(f"usage: python -m training.{module} ")
    got = option_help(out)
    assert set(options) <= set(got) and not [k for k, v in got.items() if not v], got
    if module == "onnx_export":   # the limit main() enforces
        assert "17 (the default) or higher" in got["--opset"]
    if module == "vad_baseline":
        assert "(default: 24)" in out


def test_the_docs_do_not_send_an_evaluation_over_the_committed_report():
    """docs/students.md and .json are made by scripts/make_students_report.sh only: docs/distillation.md
    told users with a real teacher to evaluate with --out=docs/students (as the README does: runs/students)."""
    page = (REPO / "docs" / "distillation.md").read_text()
    assert "--out=docs/students" not in page and "--out=runs/students" in page


@pytest.mark.parametrize("module, args, message", [
    ("training.uncertainty", ["--ood_bn=bad", "--out_dir=unused"], "--ood_bn must be one of batch, speech, eval"),
    ("training.uncertainty", ["--batch_speech=1", "--out_dir=unused"], "--batch_speech must be >= 2"),
])
def test_a_check_that_ends_with_system_exit_reads_as_every_other_error(module, args, message, tmp_path):
    """training.cli's convention, `<prog>: error: <what>` with status 1, for the checks that end a run
    with SystemExit("...") too (they printed the bare message)."""
    r = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith(f"python -m {module}: error: {message}"), r.stderr


@pytest.mark.parametrize("module, args", [
    ("training.distill", ["--max_iters=1"]),
    ("training.uncertainty", []),
    ("training.familiarity", [str(REPO / "training" / "default_uq")]),
])
@pytest.mark.parametrize("files, resumable", [(["model.safetensors"], False), (["ckpt.pt"], True)])
def test_a_new_run_never_writes_over_a_directory_that_holds_one(module, args, files, resumable, tmp_path):
    """One check (training.files.held_run) for the three commands that train: a directory with any
    of a run's files is refused by name, with --resume offered only where there is a checkpoint to
    continue and the command can (training.familiarity has none)."""
    out = tmp_path / "run"
    out.mkdir()
    for f in files:
        (out / f).write_bytes(b"a run's file")
    r = subprocess.run([sys.executable, "-m", module, *args, f"--out_dir={out}"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    said = f"python -m {module}: error: --out_dir {out} already holds a run ({', '.join(files)}): "
    assert r.returncode in (1, 2) and r.stderr.strip().endswith(said + (
        "continue it with --resume=true, or " if resumable and module != "training.familiarity" else "") +
        "choose another --out_dir"), r.stderr
    assert [p.read_bytes() for p in out.iterdir()] == [b"a run's file"] * len(files)


@pytest.mark.parametrize("module, args", [
    ("training.distill", ["--max_iters=1"]),
    ("training.uncertainty", []),
    ("training.familiarity", [str(REPO / "training" / "default_uq")]),
    ("training.release", [str(REPO / "training" / "default_uq")]),
])
def test_an_out_dir_that_is_a_file_is_refused_before_the_work(module, args, tmp_path):
    """training.uncertainty and training.familiarity trained (minutes) and only then failed to write,
    with "File exists"; training.release calibrated first. training.distill already checked."""
    out = tmp_path / "a_file"
    out.write_bytes(b"not a directory")
    r = subprocess.run([sys.executable, "-m", module, *args, f"--out_dir={out}"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode in (1, 2) and r.stderr.strip().splitlines()[-1].endswith(f"{out} is a file: choose a directory") \
        or module == "training.distill" and r.stderr.strip().endswith(f"out_dir {out} is a file"), r.stderr
    assert out.read_bytes() == b"not a directory" and [p.name for p in tmp_path.iterdir()] == ["a_file"]
