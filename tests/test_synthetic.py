"""Tests of the embedded synthetic corpus: the synthesizer and its TFDS builder."""

import re

import numpy as np
import pytest

from cpcjax.constants import SAMPLE_RATE
from cpcjax.data import synth
from cpcjax.data.corpora import synthetic

SR = SAMPLE_RATE


def _labeled(seed, num_sessions=2, utterances_per_speaker=3):
    return list(
        synth.labeled_examples(
            seed=seed,
            num_sessions=num_sessions,
            utterances_per_speaker=utterances_per_speaker,
        )
    )


def _active_rms_db(audio):
    """RMS in dBFS of the 20 ms frames within 30 dB of the loudest one."""
    x = audio.astype(np.float64) / 32768.0
    frames = x[: len(x) // 320 * 320].reshape(-1, 320)
    energy = np.mean(frames**2, axis=1)
    active = energy > energy.max() * 1e-3
    return 10.0 * np.log10(np.mean(energy[active]))


def _median_f0(audio):
    """Median autocorrelation pitch (Hz) of the loudest 40 ms frames."""
    x = audio.astype(np.float64)
    frames = x[: len(x) // 640 * 640].reshape(-1, 640)
    energy = np.mean(frames**2, axis=1)
    f0s = []
    for frame in frames[energy > 0.1 * energy.max()]:
        frame = frame - frame.mean()
        r = np.correlate(frame, frame, "full")[639:]
        lo, hi = SR // 400, SR // 60
        lag = lo + np.argmax(r[lo:hi])
        if r[lag] > 0.5 * r[0]:
            f0s.append(SR / lag)
    return np.median(f0s)


def test_same_seed_same_corpus_other_seed_other_corpus():
    first, second, other = _labeled(3), _labeled(3), _labeled(4)
    assert [k for k, _ in first] == [k for k, _ in second]
    for (_, a), (_, b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(a["audio"], b["audio"])
        np.testing.assert_array_equal(a["labels"], b["labels"])
        assert a["category"] == b["category"]
    # Same ids under another seed, but other audio and labels.
    assert [k for k, _ in first] == [k for k, _ in other]
    assert not any(
        len(a["audio"]) == len(b["audio"]) and np.array_equal(a["audio"], b["audio"])
        for (_, a), (_, b) in zip(first, other, strict=True)
    )
    assert any(
        not np.array_equal(a["labels"], b["labels"])
        for (_, a), (_, b) in zip(first, other, strict=True)
    )

    unlabeled = list(
        synth.unlabeled_examples(seed=3, num_speakers=2, utterances_per_speaker=2)
    )
    again = list(
        synth.unlabeled_examples(seed=3, num_speakers=2, utterances_per_speaker=2)
    )
    for (_, a), (_, b) in zip(unlabeled, again, strict=True):
        np.testing.assert_array_equal(a["audio"], b["audio"])


def test_utterance_does_not_depend_on_corpus_size_or_order():
    by_id = dict(_labeled(5, num_sessions=2, utterances_per_speaker=3))
    alone = synth.labeled_utterance(5, session=2, sex="M", index=1)
    assert alone.id == "Ses02M_synth_M001"
    np.testing.assert_array_equal(by_id[alone.id]["audio"], alone.audio)
    np.testing.assert_array_equal(by_id[alone.id]["labels"], alone.labels)

    unlabeled = dict(
        synth.unlabeled_examples(seed=5, num_speakers=3, utterances_per_speaker=2)
    )
    alone = synth.unlabeled_utterance(5, speaker_index=2, index=1)
    np.testing.assert_array_equal(unlabeled[alone.id]["audio"], alone.audio)


def test_unlabeled_examples_fields_and_levels():
    examples = list(
        synth.unlabeled_examples(seed=0, num_speakers=3, utterances_per_speaker=2)
    )
    assert len(examples) == 6
    assert len({key for key, _ in examples}) == 6
    assert {ex["speaker"] for _, ex in examples} == {"spk000", "spk001", "spk002"}
    for key, ex in examples:
        assert set(ex) == {"audio", "speaker", "id"}
        assert key == ex["id"] and ex["id"].startswith(ex["speaker"] + "_")
        audio = ex["audio"]
        assert audio.dtype == np.int16 and audio.ndim == 1
        # A CPC window is 20480 samples; every unlabeled utterance holds one.
        assert 1.5 * SR - 1 <= len(audio) <= 3.0 * SR + 1
        assert len(audio) >= 20480
        peak_db = 20.0 * np.log10(np.abs(audio.astype(np.int32)).max() / 32768.0)
        assert -20.0 < peak_db <= -1.0 + 1e-3


def test_labeled_examples_fields_speakers_and_ranges():
    examples = _labeled(0, num_sessions=2, utterances_per_speaker=3)
    assert len(examples) == 12
    id_pattern = re.compile(r"^Ses0([12])([FM])_synth_([FM])(\d{3})$")
    speakers_by_session = {}
    for key, ex in examples:
        assert key == ex["id"]
        match = id_pattern.match(ex["id"])
        assert match, ex["id"]
        session, _, sex, _ = match.groups()
        assert ex["session"] == int(session)
        assert ex["speaker"] == f"Ses0{session}{sex}"
        speakers_by_session.setdefault(ex["session"], set()).add(ex["speaker"])
        assert ex["category"] in synth.CATEGORIES
        labels = ex["labels"]
        assert labels.dtype == np.float32 and labels.shape == (3,)
        assert np.all((labels >= 1.0) & (labels <= 5.0))
        assert ex["audio"].dtype == np.int16
        assert 1.0 * SR - 1 <= len(ex["audio"]) <= 3.0 * SR + 1
    assert speakers_by_session == {1: {"Ses01F", "Ses01M"}, 2: {"Ses02F", "Ses02M"}}

    labeled_voices = {synth.labeled_speaker(0, s, sex) for s in (1, 2) for sex in "FM"}
    unlabeled_voices = {
        synth.unlabeled_speaker(0, i) for i in range(synth.UNLABELED_SPEAKERS)
    }
    assert not {v.name for v in labeled_voices} & {v.name for v in unlabeled_voices}
    assert not {(v.f0_hz, v.vtl_scale) for v in labeled_voices} & {
        (v.f0_hz, v.vtl_scale) for v in unlabeled_voices
    }


def test_speakers_span_female_and_male_pitch():
    female = synth.labeled_utterance(0, session=1, sex="F", index=0)
    male = synth.labeled_utterance(0, session=1, sex="M", index=0)
    assert female.speaker.f0_hz > 165.0 > 150.0 > male.speaker.f0_hz
    assert female.speaker.vtl_scale > male.speaker.vtl_scale
    # The audio carries the pitch, an octave or so apart.
    assert _median_f0(female.audio) > 1.4 * _median_f0(male.audio)


def test_activation_label_tracks_loudness_and_pitch():
    utterances = [
        synth.labeled_utterance(1, session, sex, index)
        for session in (1, 2)
        for sex in "FM"
        for index in range(12)
    ]
    activation = np.array([u.labels[0] for u in utterances])
    loudness = np.array([_active_rms_db(u.audio) for u in utterances])
    assert np.corrcoef(activation, loudness)[0, 1] > 0.6
    # Pitch relative to each speaker's own median rises with activation too.
    log_f0 = np.log(np.array([_median_f0(u.audio) for u in utterances]))
    speaker = np.array([u.speaker.name for u in utterances])
    for name in set(speaker):
        log_f0[speaker == name] -= np.median(log_f0[speaker == name])
    assert np.corrcoef(activation, log_f0)[0, 1] > 0.6
    # Categories sit where their centroids put them.
    category = np.array([u.emotion.category for u in utterances])
    assert (
        activation[category == "ang"].mean()
        > activation[category == "sad"].mean() + 1.0
    )


@pytest.mark.parametrize(
    "config, num_records, fields",
    [
        (
            synthetic.SyntheticSpeechConfig(
                name="tiny_emotion",
                part="emotion",
                num_sessions=2,
                utterances_per_speaker=3,
            ),
            12,
            {"audio", "id", "speaker", "session", "category", "labels"},
        ),
        (
            synthetic.SyntheticSpeechConfig(
                name="tiny_unlabeled",
                part="unlabeled",
                num_speakers=3,
                utterances_per_speaker=2,
            ),
            6,
            {"audio", "id", "speaker"},
        ),
    ],
    ids=["emotion", "unlabeled"],
)
def test_builder_prepares_array_record_once(
    tmp_path, monkeypatch, config, num_records, fields
):
    builder = synthetic.load_synthetic(config, tmp_path)
    assert builder.name == "synthetic_speech"
    assert builder.is_prepared()
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    records = [p for p in files if ".array_record" in p.name]
    assert records, files

    source = builder.as_data_source(split="train")
    assert len(source) == num_records
    ids = set()
    for i in range(len(source)):
        record = source[i]
        assert set(record) == fields
        assert (
            isinstance(record["audio"], np.ndarray)
            and record["audio"].dtype == np.int16
        )
        ids.add(record["id"].decode())
    assert len(ids) == num_records

    if config.part == "emotion":
        record = source[0]
        assert record["labels"].dtype == np.float32 and record["labels"].shape == (3,)
        assert 1 <= record["session"] <= 2
        # The stored audio and labels are exactly what the synthesizer makes.
        match = re.match(r"^Ses0(\d)([FM])_synth_[FM](\d{3})$", record["id"].decode())
        utt = synth.labeled_utterance(0, int(match[1]), match[2], int(match[3]))
        np.testing.assert_array_equal(record["audio"], utt.audio)
        np.testing.assert_array_equal(record["labels"], utt.labels)
        assert (
            builder.info.features["category"].int2str(record["category"])
            == utt.emotion.category
        )

    # Preparing again must reuse the files, never regenerate.
    def refuse(*args, **kwargs):
        raise AssertionError("regenerated a prepared corpus")

    monkeypatch.setattr(synth, "labeled_examples", refuse)
    monkeypatch.setattr(synth, "unlabeled_examples", refuse)
    stamps = {p: p.stat().st_mtime_ns for p in files}
    again = synthetic.load_synthetic(config, tmp_path)
    assert len(again.as_data_source(split="train")) == num_records
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps


def test_builder_info_says_what_the_corpus_is(tmp_path):
    emotion = synthetic.SyntheticSpeech(config="emotion", data_dir=tmp_path)
    unlabeled = synthetic.SyntheticSpeech(config="unlabeled", data_dir=tmp_path)
    assert not emotion.is_prepared()
    assert str(emotion.info.version) == "1.0.0"
    description = " ".join(emotion.info.description.split())
    assert "Synthesized speech-like audio" in description
    assert "not a benchmark of emotion recognition" in description
    features = emotion.info.features
    assert set(features) == {"audio", "id", "speaker", "session", "category", "labels"}
    assert features["audio"].sample_rate == SR
    assert features["category"].names == list(synth.CATEGORIES)
    assert "(activation, valence, dominance)" in features["labels"].doc.desc
    assert set(unlabeled.info.features) == {"audio", "id", "speaker"}
