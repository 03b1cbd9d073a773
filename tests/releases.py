"""Fake IEMOCAP and MSP-Podcast releases in their real on-disk formats, and
their preparation; shared by the corpus tests."""

import os
import re

import numpy as np
import tensorflow_datasets as tfds
from conftest import write_wav

from cpcjax.data.corpora import iemocap, msp_podcast

# IEMOCAP: IEMOCAP_full_release/Session<n>/{dialog/EmoEvaluation,sentences/wav}.

IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"

# Per dialog: (summary line, evaluator lines, wav to write). Wav kinds:
# seconds at 16 kHz mono, "44k" (44.1 kHz stereo), "cut" (truncated after
# writing), "empty" (0 bytes) or None (no wav). The first two summary lines
# are copied from real files (data_formats/); the others follow their format.
DIALOGS = {
    ("Session1", "Ses01F_impro05"): [
        (
            "[140.2250 - 145.6000]\tSes01F_impro05_F019\tang\t[1.5000, 4.0000, 4.5000]",
            [
                "C-E1:\tAnger;\t()",
                "A-E3:\tval 2; act 4; dom  4;\t()",
                "A-E4:\tval 1; act 4; dom  5;\t(threatening, belligerent)",
            ],
            0.8,
        ),
        (
            "[146.0100 - 148.2000]\tSes01F_impro05_M003\tneu\t[2.5000, 2.5000, 2.5000]",
            ["C-E2:\tNeutral;\t()", "A-E1:\tval 3; act 2; dom  2;\t()"],
            "44k",
        ),
        (
            "[150.5000 - 152.1000]\tSes01F_impro05_F020\texc\t[5.5000, 3.5000, 3.0000]",
            ["C-E3:\tExcited;\t()", "A-E3:\tval 5; act 3; dom  3;\t()"],
            0.6,
        ),
        (
            "[153.0000 - 155.0000]\tSes01F_impro05_M004\tsad\t[2.0000, 2.0000, 0.5000]",
            ["C-E1:\tSadness;\t()"],
            0.5,
        ),
        # Two ratings where three belong: malformed.
        (
            "[156.0000 - 157.5000]\tSes01F_impro05_F021\tneu\t[2.5000, 2.5000]",
            ["C-E1:\tNeutral;\t()"],
            0.5,
        ),
    ],
    ("Session1", "Ses01M_impro07"): [
        (
            "[204.8100 - 206.6000]\tSes01M_impro07_M033\thap\t[3.5000, 2.5000, 1.5000]",
            [
                "C-E1:\tExcited;\t()",
                "C-E2:\tHappiness;\t()",
                "A-E1:\tval 3; act 2; dom  2;\t()",
                "A-M1:\tval 4; act 3; dom  3;\t()",
            ],
            0.7,
        ),
        (
            "[207.0000 - 209.1000]\tSes01M_impro07_F012\txxx\t[3.0000, 2.5000, 2.0000]",
            ["C-E1:\tFrustration;\t()", "C-E2:\tNeutral;\t()"],
            0.5,
        ),
        (
            "[210.0000 - 211.0000]\tSes01M_impro07_F013\tneu\t[3.0000, 3.0000, 3.0000]",
            ["C-E1:\tNeutral;\t()"],
            None,
        ),
    ],
    ("Session2", "Ses02M_script01_1"): [
        (
            "[10.1000 - 12.3000]\t"
            "Ses02M_script01_1_F005\tfru\t[2.0000, 3.5000, 2.5000]",
            ["C-E1:\tFrustration;\t()"],
            0.9,
        ),
        (
            "[13.0000 - 15.0000]\t"
            "Ses02M_script01_1_M007\txxx\t[3.0000, 2.5000, 2.0000]",
            ["C-E2:\tAnger;\t()"],
            0.5,
        ),
        # Spaces where the release has TABs: still a summary line.
        (
            "[ 16.0000 - 17.5000 ]  "
            "Ses02M_script01_1_M008  neu  [2.0000,3.0000,  4.0000]",
            [],
            0.5,
        ),
        (
            "[18.0000 - 19.0000]\t"
            "Ses02M_script01_1_F006\tsad\t[1.5000, 1.5000, 2.0000]",
            ["C-E1:\tSadness;\t()"],
            "cut",
        ),
        (
            "[20.0000 - 21.0000]\t"
            "Ses02M_script01_1_M009\tneu\t[3.0000, 3.0000, 3.0000]",
            ["C-E1:\tNeutral;\t()"],
            "empty",
        ),
    ],
}


def speech_like(seconds, rate, seed, channels=1):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(len(t))
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_kind(path, kind, seed):
    """A wav of IEMOCAP's shape, or a broken one: `kind` is seconds, "44k"
    (a stereo 44.1 kHz file), "empty" or "cut" (truncated mid-data)."""
    if kind == "44k":
        wav = speech_like(0.75, 44100, seed, channels=2)
        write_wav(path, wav=wav, rate=44100, subtype="PCM_16")
    elif kind == "empty":
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()
    elif kind == "cut":
        write_wav(path, wav=speech_like(0.6, 16000, seed), subtype="PCM_16")
        with open(path, "r+b") as f:
            f.truncate(44 + 1000)  # header + 500 samples of the 9600 it declares
    else:
        write_wav(path, wav=speech_like(kind, 16000, seed), subtype="PCM_16")


def write_iemocap_release(root):
    """Writes a tiny IEMOCAP_full_release/ under `root`; returns its path."""
    release = os.path.join(root, "IEMOCAP_full_release")
    seed = 0
    for (session, dialog), blocks in DIALOGS.items():
        labels_dir = os.path.join(release, session, "dialog", "EmoEvaluation")
        os.makedirs(labels_dir, exist_ok=True)
        lines = [IEMOCAP_HEADER, ""]
        for summary, evaluators, wav in blocks:
            lines += [summary, *evaluators, ""]
            utt = re.search(r"Ses0\S+", summary).group()
            if wav is not None:
                seed += 1
                write_kind(
                    os.path.join(
                        release, session, "sentences", "wav", dialog, f"{utt}.wav"
                    ),
                    wav,
                    seed,
                )
        with open(os.path.join(labels_dir, f"{dialog}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    labels_dir = os.path.join(release, "Session1", "dialog", "EmoEvaluation")
    # macOS resource fork: binary, would be a malformed file if read.
    with open(os.path.join(labels_dir, "._Ses01F_impro05.txt"), "wb") as f:
        f.write(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        [garbage\n")
    # Sub-folder and non-.txt files: lines that would change labels or be
    # reported if they were read.
    os.makedirs(os.path.join(labels_dir, "Attribute"))
    with open(os.path.join(labels_dir, "Attribute", "Ses01F_impro05_e3.txt"), "w") as f:
        f.write(
            "Ses01F_impro05_F019 :act 4; val 2; dom 4; ()\n"
            "[1.0 - 2.0]\tSes01F_impro05_F019\tneu\t[1.0000, 1.0000, 1.0000]\n"
            "[not a summary line\n"
        )
    with open(os.path.join(labels_dir, "Ses01F_impro05.txt~"), "w") as f:
        f.write("[1.0 - 2.0]\tSes01F_impro05_F019\tneu\t[1.0000, 1.0000, 1.0000]\n")
    return release


def prepare_iemocap(data_dir, manual_dir):
    builder = iemocap.Iemocap(data_dir=str(data_dir))
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir), try_download_gcs=False
        ),
    )
    return builder


# MSP-Podcast: wavs in one folder, labels in one csv.

MSP_HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"

# v1.8: labels_concensus.csv (sic), "Validation", Test3 present.
V18_ROWS = [
    "MSP-PODCAST_0001_0008.wav,N,2.2,4.0,2.6,30,Male,Train",
    "MSP-PODCAST_0001_0009.wav,N,3.777778,3.555556,3.777778,39,Male,Train",
    "MSP-PODCAST_0001_0011.wav,N,4.125,4.75,4.0,39,Male,Test1",
    "MSP-PODCAST_0001_0013.wav,N,3.0,3.75,3.166667,39,Male,Test1",
    "MSP-PODCAST_0002_0033.wav,N,4.8,4.2,5.4,Unknown,Unknown,Validation",
    "MSP-PODCAST_0002_0039.wav,N,4.0,4.2,4.2,Unknown,Female,Validation",
    # The file DATA.md names as stereo 44.1 kHz in v1.8 (labels made up).
    "MSP-PODCAST_1023_0235.wav,A,5.2,2.6,5.0,1132,Female,Train",
    "MSP-PODCAST_0001_0016.wav,N,2.4,4.2,2.8,30,Male,Train",  # empty wav
    "MSP-PODCAST_0001_0019.wav,H,3.6,4.8,4.0,30,Male,Train",  # truncated wav
    "MSP-PODCAST_0001_0020.wav,H,4.6,4.8,4.0,30,Male,Train",  # no wav
    "MSP-PODCAST_0001_0024.wav,N,2.0,3.0,2.4x,30,Male,Train",  # non-numeric
    "MSP-PODCAST_0001_0027.wav,N,3.6,3.8",  # fields missing
    "MSP-PODCAST_0001_0030.wav,Q,2.0,4.4,2.8,30,Male,Train",  # unknown class
    "MSP-PODCAST_0001_0025.wav,H,2.4,5.8,3.6,30,Male,Test3",  # no public labels
]

# v1.11-like: Audio/ and labels/labels_consensus.csv, three-part names,
# Development and Test2, no Test1.
V111_ROWS = [
    "MSP-PODCAST_0001_0008_0001.wav,N,2.2,4.0,2.6,30,Male,Train",
    "MSP-PODCAST_0001_0009.wav,N,3.777778,3.555556,3.777778,39,Male,Train",
    "MSP-PODCAST_0002_0033.wav,N,4.8,4.2,5.4,Unknown,Unknown,Development",
    "MSP-PODCAST_0001_0016.wav,N,2.4,4.2,2.8,30,Male,Test2",
    "MSP-PODCAST_0001_0025.wav,H,2.4,5.8,3.6,30,Male,Test3",
]
V111_COUNTS = {"train": 2, "development": 1, "test2": 1}


def write_msp_release(root, rows, audio_dir, labels_dir, labels_file, skip_wavs=()):
    """A release tree: one wav per row (except `skip_wavs`) and the labels csv."""
    os.makedirs(os.path.join(root, audio_dir))
    os.makedirs(os.path.join(root, labels_dir))
    for seed, row in enumerate(rows):
        name = row.split(",")[0]
        if name[:-4] not in skip_wavs:
            write_wav(os.path.join(root, audio_dir, name), seed=seed)
    with open(os.path.join(root, labels_dir, labels_file), "w") as f:
        f.write("\n".join([MSP_HEADER, *rows]) + "\n")
    return str(root)


def prepare_msp(manual_dir, data_dir, config=None, **kwargs):
    builder = msp_podcast.MspPodcast(data_dir=str(data_dir), config=config)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(manual_dir), try_download_gcs=False, **kwargs
        ),
    )
    return builder
