"""Corpus manifests: Debian speech + synthesis, split by speaker/voice, never by clip."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import corpus, prosody
from training.cli import ToolError
from training.corpus import build, debian_entries, group_split, read_manifest
from training.teachers import file_sha256

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.usefixtures("espeak_ng")   # a failure, not a skip, when it is missing


def test_debian_entries_are_grouped_hashed_and_split_by_group(speech_files):
    entries = debian_entries(max_per_group=5)
    assert len(entries) >= 10, "the core speech packages should give several groups"
    groups = defaultdict(set)
    for e in entries:
        groups[e.group].add(e.split)
        assert e.seconds >= 0.5 and e.source.startswith("debian:")
    assert all(len(s) == 1 for s in groups.values())
    assert all(sum(e.group == g for e in entries) <= 5 for g in groups)
    assert len({e.sha256 for e in entries}) == len(entries)  # the same recording never twice
    some = entries[:: max(1, len(entries) // 5)]
    assert all(file_sha256(e.path) == e.sha256 for e in some)
    # asterisk en and es are one speaker (Allison): one group
    allison = [e for e in entries if e.group == "asterisk-Allison"]
    assert allison and {e.language for e in allison} <= {"en_US", "es_MX"}
    assert debian_entries(max_per_group=5) == entries  # deterministic


def test_group_split_is_stable_and_roughly_70_15_15():
    names = [f"speaker-{i}" for i in range(2000)]
    splits = [group_split(n) for n in names]
    # the same on every machine and in every process: the first 8 hex digits of the name's SHA-256
    # as a fraction of 2^32 (not Python's salted hash()), cut at 0.70 and 0.85
    for n in ("hedgewars-Default", "klettres-tn", "asterisk-en", *names[:50]):
        u = int(hashlib.sha256(n.encode()).hexdigest()[:8], 16) / 2**32
        assert group_split(n) == ("train" if u < 0.70 else "val" if u < 0.85 else "test"), n
    for name, frac in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        assert abs(splits.count(name) / len(names) - frac) < 0.03


@needs_espeak
def test_build_writes_a_manifest_that_reads_back(tmp_path: Path):
    out = tmp_path / "corpus"
    entries = build(out, {"debian", "espeak"}, espeak=12, flite=0, max_per_group=2, seed=0,
                    cache_dir=tmp_path / "cache")
    back = read_manifest(out / "manifest.csv")
    assert back == entries
    synth = [e for e in back if e.source == "espeak"]
    assert len(synth) == 12
    items = prosody.build_corpus(12, 0)
    for e, it in zip(synth, items):
        assert e.group == f"espeak-{it.params.variant}" and e.split == it.split
        np.testing.assert_allclose(e.targets, it.targets, atol=1e-6)
        info = sf.info(e.path)
        assert info.samplerate == 16000 and abs(info.frames / 16000 - e.seconds) < 1e-3
    assert all(e.targets is None for e in back if e.source != "espeak")
    summary = (out / "summary.json").read_text()
    assert '"train"' in summary and '"labelled"' in summary
    assert json.loads(summary)["fingerprint"] == corpus.fingerprint(back)


def test_fingerprint_follows_content_not_paths_or_order():
    from dataclasses import replace

    entries = [corpus.Entry(f"/a/{i}.wav", f"{i:064x}", 1.0, "espeak", f"espeak-v{i % 3}", "en",
                            ("train", "val", "test")[i % 3], (0.1 * i, 0.5, 0.5)) for i in range(6)]
    fp = corpus.fingerprint(entries)
    assert len(fp) == 16 and int(fp, 16) >= 0
    moved = [replace(e, path="/elsewhere" + e.path) for e in entries]
    assert corpus.fingerprint(moved[::-1]) == fp
    changes = ({"sha256": "f" * 64}, {"split": "val"}, {"group": "espeak-other"}, {"targets": (0.9, 0.5, 0.5)})
    for change in changes:
        assert corpus.fingerprint([replace(entries[0], **change)] + entries[1:]) != fp, change
    assert corpus.fingerprint(entries[1:]) != fp


def test_read_manifest_rejects_a_group_in_two_splits(tmp_path: Path, speech_files):
    path = tmp_path / "manifest.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=corpus.COLUMNS)
        w.writeheader()
        for i, split in enumerate(("train", "test")):
            w.writerow({"path": str(speech_files[i]), "sha256": "x", "seconds": "1", "source": "debian:x",
                        "group": "same-speaker", "language": "en", "split": split,
                        "arousal": "", "dominance": "", "valence": ""})
    with pytest.raises(ValueError, match="more than one split"):
        read_manifest(path)
    with pytest.raises(FileNotFoundError, match="training.corpus"):
        read_manifest(tmp_path / "absent.csv")


@pytest.mark.usefixtures("flite")
def test_flite_clips_vary_rate_and_split_by_voice(tmp_path: Path):
    entries = corpus.flite_entries(6, seed=1, cache_dir=tmp_path)
    assert len(entries) == 6
    for e in entries:
        pcm, rate = sf.read(e.path)
        assert rate == 16000 and np.sqrt(np.mean(pcm ** 2)) > 1e-3
        assert e.split == corpus.FLITE_VOICES[e.group.removeprefix("flite-")][1]
    again = corpus.flite_entries(6, seed=1, cache_dir=tmp_path)
    assert [e.sha256 for e in again] == [e.sha256 for e in entries]


@needs_espeak
def test_command_line(tmp_path: Path):
    out = subprocess.run([sys.executable, "-m", "training.corpus", f"--out={tmp_path / 'c'}", "--sources=debian,espeak",
                          "--espeak=6", "--max_per_group=1", f"--cache_dir={tmp_path / 'cache'}"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and (tmp_path / "c" / "manifest.csv").is_file()
    assert len(read_manifest(tmp_path / "c" / "manifest.csv")) > 6


@needs_espeak
def test_command_line_replaces_a_corpus_only_with_overwrite(tmp_path: Path, capsys):
    """--out holding a manifest.csv (of other options) was replaced silently; now only with --overwrite
    (as training.teachers), and the refusal comes before anything is synthesised."""
    out = tmp_path / "c"
    out.mkdir()
    (out / "manifest.csv").write_text("an earlier corpus\n")
    args = [f"--out={out}", "--sources=espeak", "--espeak=3", f"--cache_dir={tmp_path / 'cache'}"]
    with pytest.raises(SystemExit) as e:
        corpus.main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"python -m training.corpus: error: --out {out} already holds a corpus " \
                                 "(manifest.csv) that records no options (an older or hand-made one): choose " \
                                 "another --out, or --overwrite" in err, err
    assert (out / "manifest.csv").read_text() == "an earlier corpus\n" and not (tmp_path / "cache").exists()
    corpus.main([*args, "--overwrite"])
    assert len(read_manifest(out / "manifest.csv")) == 3
    # the same command again: the same corpus, left as it is (a documented command can be rerun)
    written = {f: (out / f).read_bytes() for f in ("manifest.csv", "summary.json")}
    capsys.readouterr()
    corpus.main(args)
    assert "already holds this corpus" in capsys.readouterr().out
    assert {f: (out / f).read_bytes() for f in written} == written
    # other options (one more clip) are refused before anything is synthesised
    with pytest.raises(SystemExit) as e:
        corpus.main([*args[:2], "--espeak=4", f"--cache_dir={tmp_path / 'cache2'}"])
    assert e.value.code == 2 and "of other options" in capsys.readouterr().err
    assert not (tmp_path / "cache2").exists()
    # the same options now giving other content (here: a clip's hash changed by hand) is refused too
    text = (out / "manifest.csv").read_text().splitlines()
    row = text[1].split(",")
    row[1] = "0" * 64
    (out / "manifest.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]) + "\n")
    with pytest.raises(ToolError, match="holds a corpus of these options with fingerprint"):
        corpus.main(args)
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        corpus.main([f"--out={tmp_path / 'file'}", "--sources=espeak", "--espeak=3"])
    assert e.value.code == 2 and "is a file" in capsys.readouterr().err
