"""The input pipeline: deterministic per step, process-count independent, masked."""

import numpy as np
import pytest

from cpcjax.config import ConfigError
from cpcjax.data import pipeline, protocols


def test_crop_batches_are_a_function_of_the_step(unlabeled_utts):
    a = pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=3, rows=slice(0, 8))
    b = pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=3, rows=slice(0, 8))
    for step in (0, 5, 17):
        np.testing.assert_array_equal(a.batch(step)["wav"], b.batch(step)["wav"])
    assert a.batch(0)["wav"].shape == (8, 10240)
    assert not np.array_equal(a.batch(0)["wav"], a.batch(1)["wav"])
    other_seed = pipeline.CropBatches(
        unlabeled_utts, 10240, 8, seed=4, rows=slice(0, 8)
    )
    assert not np.array_equal(a.batch(0)["wav"], other_seed.batch(0)["wav"])


def test_crops_come_from_the_utterance(unlabeled_utts):
    batches = pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=0, rows=slice(0, 8))
    rows = batches.global_rows(2)
    wav = batches.batch(2)["wav"]
    for r, w in zip(rows, wav):
        full = batches.utts.audio(r)
        starts = [
            s
            for s in range(len(full) - 10240 + 1)
            if full[s] == w[0] and np.array_equal(full[s : s + 10240], w)
        ]
        assert starts, "crop is not a window of its utterance"


def test_epochs_visit_every_utterance_once(unlabeled_utts):
    batches = pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=0, rows=slice(0, 8))
    n = len(batches.utts)
    seen = np.concatenate([batches.global_rows(s) for s in range(-(-n // 8))])
    assert sorted(seen[:n]) == list(range(n))  # epoch 0 is a permutation


def test_process_rows_are_slices_of_the_global_batch(unlabeled_utts):
    whole = pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=1, rows=slice(0, 8))
    halves = [
        pipeline.CropBatches(unlabeled_utts, 10240, 8, seed=1, rows=slice(i, i + 4))
        for i in (0, 4)
    ]
    np.testing.assert_array_equal(
        np.concatenate([h.batch(7)["wav"] for h in halves]), whole.batch(7)["wav"]
    )


def test_short_utterances_are_left_out_of_crops(labeled_utts):
    batches = pipeline.CropBatches(labeled_utts, 20480, 8, seed=0, rows=slice(0, 8))
    assert batches.skipped == int(np.sum(labeled_utts.lengths < 20480))
    with pytest.raises(ConfigError, match="pretrain.window"):
        pipeline.CropBatches(labeled_utts, 10**7, 8, seed=0, rows=slice(0, 8))


def test_bucket_batches_pad_mask_and_standardise(labeled_utts):
    buckets = pipeline.bucket_lengths((1.0, 2.0))
    assert buckets == [16000, 32000]
    mean, std = labeled_utts.labels.mean(0), labeled_utts.labels.std(0)
    batches = pipeline.BucketBatches(
        labeled_utts,
        buckets,
        8,
        seed=0,
        rows=slice(0, 8),
        label_mean=mean,
        label_std=std,
    )
    for step in range(batches.batches_per_epoch + 2):
        b = batches.batch(step)
        length = b["wav"].shape[1]
        assert length in buckets
        assert np.all(b["lengths"] <= length)
        for w, n in zip(b["wav"], b["lengths"]):
            assert not np.any(w[n:])  # zero padding past the length
        # Every row of a batch comes from the same bucket.
        smaller = [x for x in buckets if x < length]
        if smaller:
            assert np.all(b["lengths"] > smaller[-1])
    np.testing.assert_array_equal(
        batches.batch(3)["targets"],
        pipeline.BucketBatches(
            labeled_utts,
            buckets,
            8,
            seed=0,
            rows=slice(0, 8),
            label_mean=mean,
            label_std=std,
        ).batch(3)["targets"],
    )


def test_eval_batch_sizes_halve_down_to_an_eighth_on_whole_devices():
    assert pipeline.eval_batch_sizes(32) == [32, 16, 8, 4]
    assert pipeline.eval_batch_sizes(32, multiple=8) == [32, 16, 8]
    assert pipeline.eval_batch_sizes(24, multiple=8) == [24]
    assert pipeline.eval_batch_sizes(6) == [6, 3]


def test_eval_batches_cover_every_utterance_once_whole(labeled_utts):
    seen, sizes = [], []
    for ids, batch in pipeline.eval_batches(labeled_utts, [16000], 8):
        sizes.append(batch["wav"].shape[0])
        for i, n, w in zip(ids, batch["lengths"], batch["weights"]):
            assert (w == 1) == (i >= 0)
            if i >= 0:
                assert n == labeled_utts.lengths[i]
                seen.append(i)
    assert sorted(seen) == list(range(len(labeled_utts)))
    assert set(sizes) <= {8, 4, 2, 1}
    # A bucket's last utterances fill smaller batches, not 8 rows of padding.
    assert sum(sizes) == len(labeled_utts)
    # At 32: batches of 32, 16, 8 and 4, so under 4 padding rows per bucket.
    odd = labeled_utts.subset(np.arange(len(labeled_utts) - 1))
    counts = np.bincount(
        pipeline._bucket_of(odd.lengths, pipeline.eval_buckets(odd, [16000]))
    )
    padding = sum(
        len(b["wav"]) - b["weights"].sum()
        for _, b in pipeline.eval_batches(odd, [16000], 32)
    )
    assert padding == sum(-c % 4 for c in counts) > 0


def test_eval_batches_give_each_process_its_rows_of_every_size(labeled_utts):
    whole = list(pipeline.eval_batches(labeled_utts, [16000], 8, 2))
    halves = [
        list(
            pipeline.eval_batches(
                labeled_utts,
                [16000],
                8,
                2,
                lambda b, p=p: slice(p * b // 2, (p + 1) * b // 2),
            )
        )
        for p in range(2)
    ]
    assert len(halves[0]) == len(halves[1]) == len(whole)
    for (ids, batch), (ids0, b0), (ids1, b1) in zip(whole, *halves):
        np.testing.assert_array_equal(ids0, ids)
        np.testing.assert_array_equal(ids1, ids)
        assert len(batch["wav"]) % 2 == 0
        np.testing.assert_array_equal(
            np.concatenate([b0["wav"], b1["wav"]]), batch["wav"]
        )


def test_leave_one_session_out_never_shares_sessions(labeled_utts):
    for fold in protocols.session_folds(labeled_utts.sessions):
        split = protocols.leave_one_session_out(
            labeled_utts.sessions, fold, 0.1, seed=0
        )
        assert set(labeled_utts.sessions[split["test"]]) == {fold}
        assert fold not in set(labeled_utts.sessions[split["train"]])
        assert fold not in set(labeled_utts.sessions[split["dev"]])
        everything = np.concatenate(list(split.values()))
        assert sorted(everything) == list(range(len(labeled_utts)))


def test_a_speaker_dev_split_holds_out_whole_speakers():
    # 5 sessions x 2 speakers x 10 utterances.
    sessions = np.repeat(np.arange(1, 6), 20)
    speakers = np.array(
        [f"s{s}{'FM'[i // 10]}" for s in range(1, 6) for i in range(20)]
    )
    for fold in (1, 3):
        split = protocols.leave_one_session_out(sessions, fold, 0.1, 0, speakers)
        dev, train = set(speakers[split["dev"]]), set(speakers[split["train"]])
        assert len(dev) == 1 and not dev & train
        assert len(split["dev"]) == 10 and len(split["train"]) == 70
        assert set(sessions[split["test"]]) == {fold}
        again = protocols.leave_one_session_out(sessions, fold, 0.1, 0, speakers)
        np.testing.assert_array_equal(again["dev"], split["dev"])
    # A quarter of 80 utterances: two speakers.
    split = protocols.leave_one_session_out(sessions, 1, 0.25, 0, speakers)
    assert len(set(speakers[split["dev"]])) == 2
    with pytest.raises(ValueError, match="set finetune.dev_split='utterances'"):
        protocols.leave_one_session_out(
            sessions, 1, 0.1, 0, np.where(sessions == 1, "a", "b")
        )


def test_stock_librispeech_fields_are_renamed_and_splits_concatenated():
    from cpcjax.data import sources

    stock = [
        {"speech": np.arange(n, dtype=np.int64), "speaker_id": 19, "id": f"19-198-{n}"}
        for n in (3, 5)
    ]
    other = [{"speech": np.zeros(7, np.int64), "speaker_id": 26, "id": "26-495-0"}]
    source = sources.ConcatSource(
        [
            sources.RenamedSource(stock, {"speech": "audio", "speaker_id": "speaker"}),
            sources.RenamedSource(other, {"speech": "audio", "speaker_id": "speaker"}),
        ]
    )
    utts = pipeline.index_source(source, labeled=False, desc="test")
    assert list(utts.lengths) == [3, 5, 7]
    assert list(utts.speakers) == ["19", "19", "26"]
    np.testing.assert_array_equal(utts.audio(1), np.arange(5) / 32768.0)


def test_the_audio_cache_reads_each_record_once_within_its_budget():
    from cpcjax.data import sources

    reads = []

    class Source:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            reads.append(i)
            return {"audio": np.full(100, i, np.int16)}  # 200 bytes

    cache = sources.AudioCache(Source(), budget_bytes=450)
    for _ in range(3):
        assert [int(cache[i]["audio"][0]) for i in range(3)] == [0, 1, 2]
    # Two examples fit; the third is read every time.
    assert reads == [0, 1, 2, 2, 2]
    assert len(cache) == 3 and cache.used == 400
