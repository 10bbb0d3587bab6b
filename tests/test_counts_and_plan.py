import time
import tracemalloc

import pytest

from collage.config import MixEntry, RunConfig, aspect_buckets
from collage.counts import parse_count
from collage.errors import UserError
from collage.runner import plan_text
from collage.writer import shard_stem


@pytest.mark.parametrize("text, value", [
    ("1000", 1000), ("12M", 12_000_000), ("12m", 12_000_000), ("1.5k", 1500), ("1.5K", 1500), ("12_000_000", 12_000_000),
    ("3e6", 3_000_000), (" 7 ", 7), ("2b", 2_000_000_000), ("1,000", 1000), (5, 5),
])
def test_counts_accepted(text, value):
    assert parse_count(text) == value


@pytest.mark.parametrize("text", ["", "12X", "-5", "0", "1.0005k", "1.5", "k", "12 M M", "nan", "1e", "0.1k2", True])
def test_counts_refused_with_a_clear_message(text):
    with pytest.raises(UserError) as err:
        parse_count(text)
    message = str(err.value)
    assert "--n" in message and "\n" not in message


def _cfg(n, shard_size=1000):
    return RunConfig(name="drag", mix=(MixEntry("drag", ("translate",)),), n=n, shard_size=shard_size)


@pytest.mark.parametrize("n, shard_size, shards, last", [
    (1000, 1000, 1, 1000), (1001, 1000, 2, 1), (12_000_000, 1000, 12_000, 1000), (7, 3, 3, 1), (1, 1000, 1, 1),
])
def test_shard_plan(n, shard_size, shards, last):
    cfg = _cfg(n, shard_size)
    assert cfg.num_shards == shards
    assert cfg.shard_samples(shards - 1) == last
    assert sum(cfg.shard_samples(k) for k in range(shards)) == n
    for outside in (-1, shards):  # no shard beyond the plan (an empty one would pass for finished)
        with pytest.raises(ValueError, match="outside this run"):
            cfg.shard_samples(outside)


def test_planning_twelve_million_is_instant_and_small():
    tracemalloc.start()
    started = time.perf_counter()
    cfg = _cfg(12_000_000)
    text = plan_text(cfg, bytes_per_sample=100_000)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "12,000,000 samples in 12,000 shards" in text and "1.2 TB" in text
    assert elapsed < 0.5 and peak < 1_000_000


def test_shard_names_and_keys_have_no_dots():
    assert shard_stem("drag", 12) == "drag-000012"
    assert "." not in shard_stem("dreamomni", 999_999)


def test_aspect_buckets_span_4_to_1_and_1_to_4():
    buckets = aspect_buckets(512)
    assert len(buckets) == 31
    ratios = [w / h for w, h in buckets]
    assert ratios == sorted(ratios)
    assert ratios[0] == pytest.approx(0.25, rel=0.08) and ratios[-1] == pytest.approx(4, rel=0.08)
    assert buckets[15] == (512, 512)
    for w, h in buckets:
        assert w % 16 == 0 and h % 16 == 0
        assert abs(w * h / 512**2 - 1) < 0.1
