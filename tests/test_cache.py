"""Annotation cache: computed once per (clip, crop, augmentation, teacher), on disk, resumable."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import CountingTeacher as Counting

from training import augment
from training.cache import AnnotationCache, View, run_teacher
from training.distill import render_view
from training.teachers import LabelsTeacher, file_sha256


@pytest.fixture(scope="module")
def corpus(speech_files, speech_clips):
    from wav2small.model import to_int16

    ids = [file_sha256(f) for f in speech_files[:8]]
    return dict(zip(ids, [to_int16(c[:24000]) for c in speech_clips[:8]]))


def views_of(corpus, aug: str = "none") -> list[View]:
    out = []
    for k, (i, pcm) in enumerate(corpus.items()):
        for v in range(3):
            out.append(View(i, 1000 * v, 8000, augment.key(augment.draw(aug, 10 * k + v))))
    return out


def test_annotate_once_then_from_disk(tmp_path: Path, corpus):
    render = lambda v: render_view(corpus[v.clip], v, "repeat")
    views = views_of(corpus)
    teacher = Counting()
    cache = AnnotationCache(tmp_path, teacher, shard_size=5)
    out = cache.annotate(views, render, batch=4, progress=False)
    assert out.shape == (24, 3) and teacher.clips == 24
    # the values are the teacher's on exactly the rendered view
    np.testing.assert_array_equal(out[7], teacher.inner([render(views[7])])[0])
    again = cache.annotate(views, render, progress=False)
    assert teacher.clips == 24 and np.array_equal(again, out)
    fresh_teacher = Counting()
    from_disk = AnnotationCache(tmp_path, fresh_teacher).annotate(views[::-1], render, progress=False)
    assert fresh_teacher.clips == 0 and np.array_equal(from_disk, out[::-1])
    assert len(list(cache.dir.glob("shard-*.npz"))) == 5  # 24 views in shards of 5
    assert (cache.dir / "teacher.txt").read_text().strip() == teacher.id
    # another augmentation of the same crops is another view
    noisy = views_of(corpus, "strong")
    new_keys = {v.key(teacher) for v in noisy} - {v.key(teacher) for v in views}
    cache.annotate(noisy, render, progress=False)
    assert len(new_keys) > 12 and teacher.clips == 24 + len(new_keys)


def test_killed_run_resumes_where_it_stopped(tmp_path: Path, corpus):
    render = lambda v: render_view(corpus[v.clip], v, "repeat")
    views = views_of(corpus)
    killed = Counting(fail_after=3)  # shards of 4 views, batches of 2: one shard finishes, the next dies halfway
    with pytest.raises(KeyboardInterrupt):
        AnnotationCache(tmp_path, killed, shard_size=4).annotate(views, render, batch=2, progress=False)
    assert len(list(Path(tmp_path).rglob("shard-*.npz"))) == 1
    assert not list(Path(tmp_path).rglob("*.tmp"))
    second = Counting()
    out = AnnotationCache(tmp_path, second, shard_size=4).annotate(views, render, batch=2, progress=False)
    assert second.clips == len(views) - 4
    clean = AnnotationCache(tmp_path / "clean", Counting()).annotate(views, render, progress=False)
    np.testing.assert_array_equal(out, clean)


def test_keys_cover_teacher_crop_and_augmentation(corpus, tmp_path: Path):
    teacher = Counting()
    clip = next(iter(corpus))
    base = View(clip, 0, 8000)
    keys = {base.key(teacher), View(clip, 1, 8000).key(teacher), View(clip, 0, 8001).key(teacher),
            View(clip, 0, 8000, augment.key(augment.draw("default", 1))).key(teacher)}
    assert len(keys) == 4
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text(f"sha256,arousal,dominance,valence\n{clip},0.1,0.2,0.3\n")
    labels = LabelsTeacher(labels_csv)
    # clip-level teachers: one key per clip, whatever the crop
    assert base.key(labels) == View(clip, 500, 4000, "x").key(labels) != base.key(teacher)
    out = run_teacher(labels, [base, View(clip, 9, 9)], lambda v: pytest.fail("labels need no audio"))
    np.testing.assert_allclose(out, [[0.1, 0.2, 0.3]] * 2)


def test_online_mode_checks_teacher_output(corpus):
    class Bad:
        id, clip_level = "bad", False

        def __call__(self, waves, ids=None):
            return np.full((len(waves), 2), np.nan)

    class NaN(Bad):
        def __call__(self, waves, ids=None):
            return np.full((len(waves), 3), np.nan)

    clip = next(iter(corpus))
    with pytest.raises(ValueError, match="shape"):
        run_teacher(Bad(), [View(clip, 0, 100)], lambda v: np.zeros(100, np.float32))
    with pytest.raises(ValueError, match="non-finite"):   # the right shape, but NaN
        run_teacher(NaN(), [View(clip, 0, 100)], lambda v: np.zeros(100, np.float32))
