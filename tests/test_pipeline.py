"""Task mixes: the DreamOmni pipeline keeps every guarantee of the spine (mix, determinism, resume, verify)."""

import collections
import shutil

import pytest

from collage.api import generate_run, iter_samples, make_config
from collage.config import aspect_buckets
from collage.errors import UserError

from conftest import REPO, run_cli, tar_hashes

PIPELINES = REPO / "pipelines"


def test_every_task_has_a_pipeline():
    from collage.tasks import TASKS

    for task in TASKS:
        cfg = make_config(pipeline=str(PIPELINES / f"{task}.yaml"), n=10)
        assert cfg.name == task and [m.task for m in cfg.mix] == [task]
    cfg = make_config(pipeline=str(PIPELINES / "dreamomni.yaml"), n=68_000_000)
    weights = {m.task: m.weight for m in cfg.mix}
    assert weights == {"t2i": 12, "inpaint": 12, "edit": 12, "drag": 12, "reference": 12, "segdet": 8}
    assert cfg.name == "dreamomni" and cfg.num_shards == 68_000


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, assets):
    out = tmp_path_factory.mktemp("mix")
    generate_run(str(out), pipeline=str(PIPELINES / "dreamomni.yaml"), n=340, seed=11, size=128, shard_size=85,
                 aspect_ratios="all", image_format="png", backend="local")
    return out


def test_the_mix_follows_the_weights(mixed_run):
    samples = list(iter_samples(str(mixed_run)))
    assert len(samples) == 340
    counts = collections.Counter(s["json"]["task"] for s in samples)
    assert set(counts) == {"t2i", "inpaint", "edit", "drag", "reference", "segdet"}
    for task, weight in {"t2i": 12, "drag": 12, "segdet": 8}.items():
        expected = 340 * weight / 68
        assert abs(counts[task] - expected) < 4 * expected ** 0.5, counts
    assert all(s["__key__"].startswith("dreamomni-") for s in samples)
    assert (mixed_run / "dreamomni-000003.tar").exists()


def test_each_sample_records_its_aspect_bucket(mixed_run):
    buckets = aspect_buckets(128)
    seen = set()
    for s in iter_samples(str(mixed_run)):
        meta = s["json"]
        assert (meta["width"], meta["height"]) == buckets[meta["bucket"]]
        assert s["tgt"].shape[:2] == (meta["height"], meta["width"])
        seen.add(meta["bucket"])
    assert len(seen) > 20


def test_mixed_runs_are_deterministic_and_verify(mixed_run, tmp_path):
    again = tmp_path / "again"
    generate_run(str(again), pipeline=str(PIPELINES / "dreamomni.yaml"), n=340, seed=11, size=128, shard_size=85,
                 aspect_ratios="all", image_format="png", backend="local")
    assert tar_hashes(again) == tar_hashes(mixed_run)
    result = run_cli("verify", str(mixed_run))
    assert result.returncode == 0, result.stderr


def test_a_mixed_run_resumes(mixed_run, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(mixed_run, partial)  # the fixture's whole run, then cut as an interruption leaves it
    for name in ("dreamomni-000001.stats.json", "dreamomni-000002.tar"):  # an interrupted run, as seen on disk
        (partial / name).unlink()
    summary = generate_run(str(partial), pipeline=str(PIPELINES / "dreamomni.yaml"), n=340, seed=11, size=128,
                           shard_size=85, aspect_ratios="all", image_format="png", backend="local")
    assert summary.skipped_shards == 2 and summary.samples == 340
    keys = [s["__key__"] for s in iter_samples(str(partial))]
    assert len(keys) == len(set(keys)) == 340
    assert tar_hashes(partial) == tar_hashes(mixed_run)  # the redone shards are the same bytes
    assert run_cli("verify", str(partial)).returncode == 0


def test_bad_pipeline_files(tmp_path):
    cases = {
        "tasks: 3": "needs a `tasks:` list",
        "tasks: [{weight: 2}]": "needs a `task:` key",
        "tasks: [{task: drag, weight: heavy}]": "is not a number",
        "tasks: [{task: drag, ops: [fly]}]": "fly",
        "name: 'a b'\ntasks: [{task: drag}]": "letters, digits",
        "tasks: [ {task: drag": "not valid yaml",
    }
    for i, (text, words) in enumerate(cases.items()):
        path = tmp_path / f"p{i}.yaml"
        path.write_text(text)
        with pytest.raises(UserError, match=words.replace("`", ".")):
            make_config(pipeline=str(path), n=10)
    result = run_cli("generate", "--pipeline", str(tmp_path / "p0.yaml"), "--n", "10", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1


def test_iter_samples_takes_any_mix_of_runs_and_shards(mixed_run, tmp_path):
    """A list of run directories and shard files reads as their concatenation; a missing path is one error."""
    from collage.errors import UserError
    from collage.worker import sample_seed

    whole = [s["__key__"] for s in iter_samples(str(mixed_run))]
    shards = sorted(str(p) for p in mixed_run.glob("*.tar"))
    mixed = [s["__key__"] for s in iter_samples([str(mixed_run), shards[0], mixed_run])]
    first = [s["__key__"] for s in iter_samples(shards[0])]
    assert mixed == whole + first + whole
    with pytest.raises(UserError, match="no such run directory or shard"):
        list(iter_samples([str(mixed_run), str(tmp_path / "nope")]))
    # seeds every json reader keeps exactly (JavaScript's doubles: 53 bits)
    assert all(0 <= s["json"]["seed"] < 2**53 for s in iter_samples(str(mixed_run), decode=True))
    assert max(sample_seed(7, shard, i, 0) for shard in range(4) for i in range(1000)) > 2**50
