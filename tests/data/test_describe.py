"""Planning a dataset (``describe_dataset``, for dry runs) computes and writes nothing, and agrees with loading."""

from __future__ import annotations

import collections

import pytest

from benchmark.data import builtin, folder, synth
from benchmark.data.registry import NO_PLAN, describe_dataset, load_dataset
from tests.data.test_loaders_notes import nsynth_tree

TINY = dict(sample_rate=16000, n_notes=12, n_clips=4, clip_seconds=2.0, pitch_min=55, pitch_max=67)


def _per_split(dataset) -> dict[str, int]:
    return dict(collections.Counter(it.split for it in dataset.items))


@pytest.fixture
def no_rendering(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a dataset plan must not render")

    monkeypatch.setattr(builtin, "generate", forbidden)
    monkeypatch.setattr(synth, "render", forbidden)


def test_describing_the_paper_dataset_writes_nothing(tmp_path, no_rendering):
    cache = tmp_path / "cache"
    cache.mkdir()
    plan = describe_dataset("builtin", cache, preset="large", workers=2, progress=True)
    assert list(cache.iterdir()) == []
    assert plan.status == "absent" and plan.items is None and plan.problem is None
    assert plan.identity == builtin.builtin_identity(builtin.resolve_spec("large"))
    assert plan.root == cache / "datasets" / f"builtin-{plan.identity}"
    assert plan.count() == plan.to_compute == 2800 and set(plan.splits) == {"train", "valid", "test"}
    assert plan.count(max_items=100) == 300 and plan.count("test", max_items=10) == 10
    assert plan.seconds > 0
    assert "renders 2800 of 2800 items" in "\n".join(plan.lines())


def test_plan_agrees_with_loading_and_sees_the_cache(tmp_path, monkeypatch):
    before = describe_dataset("builtin", tmp_path, preset="smoke", **TINY)
    assert list(tmp_path.iterdir()) == []
    loaded = load_dataset("builtin", tmp_path, preset="smoke", workers=1, progress=False, **TINY)
    assert before.identity == loaded.identity and before.root == loaded.root
    assert before.splits == _per_split(loaded) and before.to_compute == len(loaded) == 16

    def forbidden(*args, **kwargs):
        raise AssertionError("a dataset plan must not render")

    monkeypatch.setattr(builtin, "generate", forbidden)
    cached = describe_dataset("builtin", tmp_path, preset="smoke", **TINY)
    assert (cached.status, cached.to_compute, cached.seconds) == ("present", 0, None)
    assert cached.items == loaded.items and cached.identity == loaded.identity

    loaded.items[0].path.unlink()  # deleted after completion: loading re-renders it
    deleted = describe_dataset("builtin", tmp_path, preset="smoke", **TINY)
    assert (deleted.status, deleted.to_compute, deleted.items) == ("partial", 1, None)
    (loaded.root / builtin.MARKER).unlink()  # interrupted generation: loading resumes
    loaded.items[1].path.unlink()
    resumed = describe_dataset("builtin", tmp_path, preset="smoke", **TINY)
    assert (resumed.status, resumed.to_compute, resumed.items) == ("partial", 2, None)


def test_folder_plan_lists_without_opening_files(audio_folder, monkeypatch):
    loaded = load_dataset("folder", audio_folder)

    def forbidden(*args, **kwargs):
        raise AssertionError("a dataset plan must not read audio")

    monkeypatch.setattr(folder.sf, "info", forbidden)
    plan = describe_dataset("folder", audio_folder)
    assert (plan.status, plan.identity, plan.splits) == ("present", loaded.identity, {"test": 6})
    assert plan.items == loaded.items


def test_on_disk_dataset_plan_is_its_listing(tmp_path):
    loaded = load_dataset("nsynth", nsynth_tree(tmp_path))
    plan = describe_dataset("nsynth", tmp_path)
    assert (plan.status, plan.identity, plan.splits) == ("present", loaded.identity, _per_split(loaded))
    missing = describe_dataset("nsynth", tmp_path / "nowhere")
    assert missing.status == "unavailable" and "magenta.tensorflow.org" in missing.problem


def load_unplanned(root, **options):
    """A plugin loader with no planning route."""
    raise AssertionError("describe_dataset must not call a loader it cannot plan")


def test_a_loader_without_planning_route_is_not_called():
    plan = describe_dataset(f"{__name__}:load_unplanned", None, anything=1)
    assert (plan.status, plan.work, plan.identity, plan.splits) == ("unknown", NO_PLAN, None, None)
    assert plan.count() is None and plan.lines()[-1] == f"  unknown: {NO_PLAN}"
