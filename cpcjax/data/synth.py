"""Procedurally synthesized speech-like audio with known emotion labels.

This is the embedded demo corpus: there is no real emotional speech that can
ship with cpcjax, so the quickstart and the tests run on audio made here. It
is a check that the machinery learns (that CPC features and the recognizer
pick up prosody that is known to carry the labels), not a benchmark of
emotion recognition.

The signal is a source-filter model. A glottal flow pulse train (Rosenberg
pulses with jitter and shimmer) follows an F0 contour; its derivative, given
a spectral tilt, excites a cascade of four formant resonators whose
frequencies move between vowel targets and scale with the speaker's
vocal-tract length. Syllables have smooth amplitude envelopes, consonants are
noise bursts (fricatives, stop bursts, aspiration), words are separated by
occasional pauses.

How the labels arise, per labeled utterance:

1. An emotion category is drawn (`CATEGORIES`), and a latent
   (activation, valence, dominance) point is drawn around that category's
   centroid on the 1-5 scale; dominance follows activation, as it does in
   IEMOCAP.
2. The prosody is a fixed linear function of the centred latent
   z = (latent - 3) / 2 times the speaker's expressiveness, plus small
   per-utterance variation that no label explains (`prosody_for`):
   activation raises pitch, pitch range, rate, level and vocal tension (a
   flatter spectrum); valence adds smaller cues (pitch, a rising instead of a
   falling end, less jitter and shimmer, slightly raised formants);
   dominance adds level, lowers pitch and shortens pauses.
3. Two or three "raters" each score every dimension with an integer 1-5
   (latent + rater bias + noise, rounded), and the label is their mean, as
   for IEMOCAP's evaluators.

Activation has the most and the strongest cues and the least rater noise, so
it is the easiest to recover from audio; valence rests on weak cues partly
masked by speaker differences, dominance mostly on cues it shares with
activation.

Everything is a deterministic function of a seed. Each utterance draws from
its own `numpy.random.default_rng((seed, part, speaker, index))`, so any
utterance can be made alone, in any order or in parallel.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import scipy.signal

from cpcjax.constants import SAMPLE_RATE

CATEGORIES = ("neu", "hap", "sad", "ang")
SEXES = ("F", "M")

# Default sizes: a many-speaker unlabeled part (the demo's "LibriSpeech") and
# a 5-session, 10-speaker labeled part (the demo's "IEMOCAP").
UNLABELED_SPEAKERS = 40
UNLABELED_UTTERANCES_PER_SPEAKER = 10
UNLABELED_SECONDS = (1.5, 3.0)
LABELED_SESSIONS = 5
LABELED_UTTERANCES_PER_SPEAKER = 50
LABELED_SECONDS = (1.0, 3.0)

# Seed-path components, so the two parts and the speaker/utterance streams
# never share random numbers.
_UNLABELED = 0
_LABELED = 1
_SPEAKER_STREAM = 0
_UTTERANCE_STREAM = 1

# Latent (activation, valence, dominance) centroids on the 1-5 scale, near
# IEMOCAP's per-category means.
_CENTROIDS = {
    "neu": (2.8, 3.0, 2.8),
    "hap": (3.5, 4.0, 3.3),
    "sad": (2.1, 2.1, 2.3),
    "ang": (3.9, 1.8, 3.9),
}
_LATENT_SD = (0.45, 0.4, 0.3)
# Dominance moves with activation within a category.
_DOMINANCE_FOLLOWS_ACTIVATION = 0.6
LABELED_CATEGORY_PRIOR = (0.3, 0.25, 0.2, 0.25)
# Read audiobook speech is mostly calm.
UNLABELED_CATEGORY_PRIOR = (0.55, 0.15, 0.15, 0.15)

# Rater noise (sd on the 1-5 scale) per dimension: raters agree most on
# activation, as in IEMOCAP.
_RATER_SD = (0.4, 0.65, 0.55)
_RATER_BIAS_SD = 0.15

# Average adult male formants F1-F3 (Peterson & Barney 1952), Hz, of the
# vowels i I E ae A O U u V 3r; F4 is nearly vowel independent.
_VOWEL_FORMANTS = np.array(
    [
        [270, 2290, 3010, 3500],
        [390, 1990, 2550, 3500],
        [530, 1840, 2480, 3500],
        [660, 1720, 2410, 3500],
        [730, 1090, 2440, 3500],
        [570, 840, 2410, 3500],
        [440, 1020, 2240, 3500],
        [300, 870, 2240, 3500],
        [640, 1190, 2390, 3500],
        [490, 1350, 1690, 3500],
    ],
    dtype=np.float64,
)
_FORMANT_BANDWIDTHS = np.array([70.0, 90.0, 130.0, 180.0])

# Onset consonants: probability, and noise kind. "stop" is a silent closure
# followed by a short burst; "h" is aspiration through the vocal tract.
_ONSETS = ("none", "stop", "s", "sh", "f", "h")
_ONSET_PROBS = (0.25, 0.3, 0.15, 0.08, 0.1, 0.12)
# Pass bands (Hz, for the reference tract) and relative levels of frication.
_FRICATION = {
    "s": ((3800.0, 7000.0), 0.15),
    "sh": ((1900.0, 4500.0), 0.18),
    "f": ((1200.0, 7000.0), 0.06),
    "stop": ((600.0, 6500.0), 0.3),
}
_ASPIRATION_LEVEL = 0.3

# Time-varying vocal tract: the excitation is cut into blocks, each filtered
# by its own resonator cascade in the frequency domain and overlap-added. The
# FFT is long enough for the narrowest resonance to ring out (F1 at 70 Hz
# bandwidth decays by about 90 dB in 896 samples), so blocks join smoothly.
_BLOCK = 128
_NFFT = 1024

# Levels: speech-active RMS of a neutral utterance, and the ceiling no peak
# may pass. With this synthesis' crest factor peaks land around -6 dBFS.
_NOMINAL_RMS_DB = -19.0
_MAX_PEAK_DB = -1.0
_NOISE_FLOOR_DB = -66.0


@dataclasses.dataclass(frozen=True)
class SpeakerParams:
    """A synthetic speaker.

    Attributes:
        name: speaker id, e.g. "Ses01F" or "spk007".
        sex: "F" or "M"; picks the pitch and vocal-tract ranges.
        f0_hz: base pitch (F0 of calm neutral speech), Hz.
        vtl_scale: formant scale factor, 1.0 for the reference adult male
            tract, larger for a shorter tract.
        rate_sps: calm speaking rate, syllables per second.
        level_db: habitual loudness offset, dB.
        tilt: habitual voice-quality offset added to the tension (see
            `Prosody.tilt`).
        jitter: habitual cycle-to-cycle period perturbation (relative sd).
        breathiness: aspiration noise relative to the voiced excitation.
        expressiveness: how strongly the prosody follows the emotion.
    """

    name: str
    sex: str
    f0_hz: float
    vtl_scale: float
    rate_sps: float
    level_db: float
    tilt: float
    jitter: float
    breathiness: float
    expressiveness: float


@dataclasses.dataclass(frozen=True)
class Emotion:
    """The emotional state an utterance is spoken in.

    Attributes:
        category: one of `CATEGORIES`.
        activation: latent activation on the 1-5 scale (before raters).
        valence: latent valence on the 1-5 scale.
        dominance: latent dominance on the 1-5 scale.
    """

    category: str
    activation: float
    valence: float
    dominance: float


@dataclasses.dataclass(frozen=True)
class Prosody:
    """The acoustic parameters of one utterance.

    Attributes:
        pitch_shift_st: mean F0 relative to the speaker's base, semitones.
        pitch_range_st: size of pitch accents, semitones.
        final_slope_st: F0 movement over the last syllable, semitones
            (negative: a falling statement end; positive: a rise).
        rate_sps: speaking rate, syllables per second (pauses excluded).
        level_db: RMS of the speech-active samples, dBFS.
        tilt: vocal tension in [0, 1]; 0 is a lax voice with a steep
            spectrum, 1 a pressed voice with a flat one.
        jitter: cycle-to-cycle period perturbation (relative sd).
        shimmer: cycle-to-cycle amplitude perturbation (relative sd).
        formant_shift: factor on all formants (lip spreading raises them).
        pause_prob: probability of a pause between two words.
        breathiness: aspiration noise relative to the voiced excitation.
    """

    pitch_shift_st: float
    pitch_range_st: float
    final_slope_st: float
    rate_sps: float
    level_db: float
    tilt: float
    jitter: float
    shimmer: float
    formant_shift: float
    pause_prob: float
    breathiness: float


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One synthesized utterance and everything that determined it.

    Attributes:
        id: utterance id.
        speaker: the speaker.
        emotion: the latent emotional state.
        prosody: the acoustic parameters derived from speaker and emotion.
        labels: rater means (activation, valence, dominance), float32 [3].
        audio: int16 [S] at `SAMPLE_RATE`.
        session: IEMOCAP-style session 1-5 (labeled part), or 0.
    """

    id: str
    speaker: SpeakerParams
    emotion: Emotion
    prosody: Prosody
    labels: np.ndarray
    audio: np.ndarray
    session: int = 0


def _rng(*path: int) -> np.random.Generator:
    return np.random.default_rng([int(p) for p in path])


def sample_speaker(rng: np.random.Generator, name: str, sex: str) -> SpeakerParams:
    """Draws a speaker's voice.

    Args:
        rng: the random generator to draw from.
        name: the speaker id to record.
        sex: "F" (pitch 170-250 Hz, short tract) or "M" (90-145 Hz, long
            tract).

    Returns:
        The speaker's parameters.
    """
    if sex == "F":
        f0_hz = rng.uniform(170.0, 250.0)
        vtl_scale = rng.uniform(1.10, 1.24)
    elif sex == "M":
        f0_hz = rng.uniform(90.0, 145.0)
        vtl_scale = rng.uniform(0.93, 1.05)
    else:
        raise ValueError(f"sex must be 'F' or 'M', got {sex!r}")
    return SpeakerParams(
        name=name,
        sex=sex,
        f0_hz=float(f0_hz),
        vtl_scale=float(vtl_scale),
        rate_sps=float(rng.uniform(3.8, 5.2)),
        level_db=float(rng.normal(0.0, 1.0)),
        tilt=float(rng.normal(0.0, 0.06)),
        jitter=float(rng.uniform(0.004, 0.010)),
        breathiness=float(rng.uniform(0.03, 0.10)),
        expressiveness=float(rng.uniform(0.8, 1.2)),
    )


def sample_emotion(
    rng: np.random.Generator,
    prior: Sequence[float] = LABELED_CATEGORY_PRIOR,
    category: str | None = None,
) -> Emotion:
    """Draws a category and a latent (activation, valence, dominance) point.

    Args:
        rng: the random generator to draw from.
        prior: probabilities of `CATEGORIES`.
        category: fixes the category instead of drawing it.

    Returns:
        The emotion, with latent dimensions clipped to [1, 5].
    """
    if category is None:
        category = CATEGORIES[rng.choice(len(CATEGORIES), p=np.asarray(prior))]
    ca, cv, cd = _CENTROIDS[category]
    da = rng.normal(0.0, _LATENT_SD[0])
    valence = cv + rng.normal(0.0, _LATENT_SD[1])
    dominance = cd + _DOMINANCE_FOLLOWS_ACTIVATION * da + rng.normal(0.0, _LATENT_SD[2])
    return Emotion(
        category=category,
        activation=float(np.clip(ca + da, 1.0, 5.0)),
        valence=float(np.clip(valence, 1.0, 5.0)),
        dominance=float(np.clip(dominance, 1.0, 5.0)),
    )


def prosody_for(
    emotion: Emotion, speaker: SpeakerParams, rng: np.random.Generator
) -> Prosody:
    """Maps an emotional state to acoustic parameters for one speaker.

    Each parameter is linear in z = (latent - 3) / 2 (about [-1, 1]) scaled by
    the speaker's expressiveness, plus a small random term no label explains.

    Args:
        emotion: the latent emotional state.
        speaker: the speaker.
        rng: the random generator for the unexplained variation.

    Returns:
        The utterance's prosody.
    """
    za, zv, zd = (
        (np.array([emotion.activation, emotion.valence, emotion.dominance]) - 3.0)
        / 2.0
        * speaker.expressiveness
    )
    noise = rng.normal(size=10)
    return Prosody(
        pitch_shift_st=float(4.0 * za + 1.0 * zv - 1.0 * zd + 0.6 * noise[0]),
        pitch_range_st=float(
            np.clip(2.2 + 1.6 * za + 0.8 * zv + 0.3 * noise[1], 0.4, 6.0)
        ),
        final_slope_st=float(-1.0 + 3.0 * zv + 1.5 * noise[2]),
        rate_sps=float(
            speaker.rate_sps * 2.0 ** (0.4 * za + 0.1 * zd + 0.06 * noise[3])
        ),
        level_db=float(
            np.clip(
                _NOMINAL_RMS_DB
                + speaker.level_db
                + 4.0 * za
                + 1.2 * zd
                + 0.7 * noise[4],
                -40.0,
                _MAX_PEAK_DB - 6.0,
            )
        ),
        tilt=float(
            np.clip(
                0.5 + 0.35 * za + 0.1 * zd + speaker.tilt + 0.05 * noise[5], 0.05, 0.95
            )
        ),
        jitter=float(
            np.clip(speaker.jitter * np.exp(-0.6 * zv + 0.25 * noise[6]), 0.001, 0.04)
        ),
        shimmer=float(np.clip(0.04 * np.exp(-0.5 * zv + 0.25 * noise[7]), 0.005, 0.15)),
        formant_shift=float(1.0 + 0.04 * zv + 0.015 * noise[8]),
        pause_prob=float(
            np.clip(0.25 - 0.12 * zd - 0.06 * za + 0.03 * noise[9], 0.02, 0.6)
        ),
        breathiness=float(speaker.breathiness * np.exp(-0.7 * za)),
    )


def rate_labels(emotion: Emotion, rng: np.random.Generator) -> np.ndarray:
    """Scores an emotional state the way IEMOCAP's evaluators do.

    Two or three raters each give an integer 1-5 per dimension (latent + a
    per-rater bias + noise, rounded); the label is their mean, so values
    like 2.5 or 3.3333 occur as in IEMOCAP.

    Args:
        emotion: the latent emotional state.
        rng: the random generator for the raters.

    Returns:
        float32 [3]: (activation, valence, dominance) in [1, 5].
    """
    num_raters = int(rng.integers(2, 4))
    truth = np.array([emotion.activation, emotion.valence, emotion.dominance])
    bias = rng.normal(0.0, _RATER_BIAS_SD, size=(num_raters, 1))
    noise = rng.normal(0.0, 1.0, size=(num_raters, 3)) * np.asarray(_RATER_SD)
    ratings = np.clip(np.rint(truth + bias + noise), 1.0, 5.0)
    return ratings.mean(axis=0).astype(np.float32)


@dataclasses.dataclass
class _Syllable:
    start: int  # samples
    end: int
    onset: str
    onset_end: int  # where the vowel nucleus begins
    coda_start: int  # where a final /s/ begins (== end when none)
    vowel: int
    stressed: bool
    amplitude: float


def _plan_syllables(
    rng: np.random.Generator, prosody: Prosody, num_samples: int
) -> list[_Syllable]:
    """Lays out words, syllables and pauses to fill the utterance."""
    lead = rng.uniform(0.05, 0.15)
    trail = rng.uniform(0.05, 0.15)
    available = num_samples / SAMPLE_RATE - lead - trail
    # Durations in seconds at the nominal rate, then stretched to fit exactly.
    mean_syllable = 1.0 / prosody.rate_sps
    items: list[tuple[str, float, bool]] = []  # ("syl" | "pause", duration, stressed)
    total = 0.0
    done = False
    while not done:
        num_syllables = int(rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25]))
        stress = int(rng.integers(num_syllables))
        for i in range(num_syllables):
            duration = (
                mean_syllable * rng.lognormal(0.0, 0.2) * (1.25 if i == stress else 0.9)
            )
            # Stop at the syllable count that best fills the time, so the
            # stretch below stays near 1 and the rate near nominal.
            if items and abs(total + duration - available) >= abs(total - available):
                done = True
                break
            items.append(("syl", duration, i == stress))
            total += duration
        if not done and rng.random() < prosody.pause_prob:
            duration = rng.uniform(0.08, 0.25)
            items.append(("pause", duration, False))
            total += duration
    while items[-1][0] == "pause":
        total -= items.pop()[1]
    stretch = available / total

    syllables = []
    t = lead
    for kind, duration, stressed in items:
        duration *= stretch
        if kind == "syl":
            start = int(round(t * SAMPLE_RATE))
            end = int(round((t + duration) * SAMPLE_RATE))
            length = end - start
            onset = _ONSETS[rng.choice(len(_ONSETS), p=_ONSET_PROBS)]
            onset_fraction = {
                "none": 0.0,
                "stop": rng.uniform(0.2, 0.3),
                "s": rng.uniform(0.25, 0.4),
                "sh": rng.uniform(0.25, 0.4),
                "f": rng.uniform(0.2, 0.35),
                "h": rng.uniform(0.12, 0.2),
            }[onset]
            coda_fraction = rng.uniform(0.15, 0.25) if rng.random() < 0.2 else 0.0
            syllables.append(
                _Syllable(
                    start=start,
                    end=end,
                    onset=onset,
                    onset_end=start + int(onset_fraction * length),
                    coda_start=end - int(coda_fraction * length),
                    vowel=int(rng.integers(len(_VOWEL_FORMANTS))),
                    stressed=stressed,
                    amplitude=float(
                        (1.0 if stressed else rng.uniform(0.55, 0.8))
                        * rng.uniform(0.9, 1.1)
                    ),
                )
            )
        t += duration
    return syllables


def _ramp_envelope(length: int, attack: int, release: int) -> np.ndarray:
    """A raised-cosine on/off envelope of `length` samples."""
    env = np.ones(length)
    attack = min(attack, length // 2)
    release = min(release, length // 2)
    if attack > 0:
        env[:attack] = 0.5 - 0.5 * np.cos(np.pi * (np.arange(attack) + 0.5) / attack)
    if release > 0:
        env[length - release :] = 0.5 + 0.5 * np.cos(
            np.pi * (np.arange(release) + 0.5) / release
        )
    return env


def _f0_contour(
    rng: np.random.Generator,
    syllables: list[_Syllable],
    speaker: SpeakerParams,
    prosody: Prosody,
    num_samples: int,
) -> np.ndarray:
    """F0 in Hz per sample: declination, pitch accents, final rise or fall."""
    duration = num_samples / SAMPLE_RATE
    knot_t = []
    knot_st = []
    for i, syl in enumerate(syllables):
        centre = 0.5 * (syl.onset_end + syl.coda_start) / SAMPLE_RATE
        declination = 1.0 - 2.5 * centre / duration
        if syl.stressed:
            accent = prosody.pitch_range_st * rng.uniform(0.6, 1.2)
        else:
            accent = prosody.pitch_range_st * rng.uniform(-0.3, 0.2)
        if i < len(syllables) - 1:
            knot_t.append(centre)
            knot_st.append(declination + accent)
        else:
            # The end of a phrase carries the rise or fall.
            knot_t += [syl.onset_end / SAMPLE_RATE, syl.coda_start / SAMPLE_RATE]
            knot_st += [
                declination + accent,
                declination + accent + prosody.final_slope_st,
            ]
    # Work at block rate and smooth there: cheap, and F0 has no faster detail.
    num_blocks = -(-num_samples // _BLOCK)
    block_t = (np.arange(num_blocks) + 0.5) * _BLOCK / SAMPLE_RATE
    contour = np.interp(block_t, knot_t, knot_st)
    kernel = np.hanning(7)
    kernel /= kernel.sum()
    # A slow wander of about 0.3 semitones keeps held pitches from sounding
    # mechanical.
    drift = np.convolve(rng.normal(0.0, 1.0, num_blocks), np.hanning(17), "same")
    drift *= 0.3 / max(drift.std(), 1e-6)
    contour = np.convolve(np.pad(contour, 3, mode="edge"), kernel, "valid") + drift
    semitones = prosody.pitch_shift_st + np.interp(
        np.arange(num_samples) / SAMPLE_RATE, block_t, contour
    )
    return speaker.f0_hz * 2.0 ** (semitones / 12.0)


def _glottal_source(
    rng: np.random.Generator, f0: np.ndarray, prosody: Prosody
) -> tuple[np.ndarray, np.ndarray]:
    """Glottal flow derivative with jitter, shimmer and spectral tilt.

    Returns:
        (excitation [S] with unit RMS, glottal flow [S] in [0, ~1]).
    """
    phase = np.cumsum(f0) / SAMPLE_RATE
    max_cycles = int(phase[-1] * 1.2) + 16
    jitter = rng.normal(0.0, prosody.jitter, max_cycles)
    shimmer = np.clip(1.0 + rng.normal(0.0, prosody.shimmer, max_cycles), 0.2, None)
    # Perturb each cycle's frequency, indexing cycles by the unperturbed phase.
    phase = np.cumsum(f0 * (1.0 + jitter[phase.astype(np.int64)])) / SAMPLE_RATE
    cycle = np.minimum(phase.astype(np.int64), max_cycles - 1)
    frac = phase - np.floor(phase)
    # Rosenberg pulse; a tense voice has a short open phase and a sharp
    # closure, hence more high-frequency energy.
    open_quotient = 0.8 - 0.4 * prosody.tilt
    t_open = 0.65 * open_quotient
    t_close = 0.35 * open_quotient
    flow = np.where(
        frac < t_open,
        0.5 - 0.5 * np.cos(np.pi * frac / t_open),
        np.where(
            frac < t_open + t_close,
            np.cos(0.5 * np.pi * (frac - t_open) / t_close),
            0.0,
        ),
    )
    flow *= shimmer[cycle]
    excitation = np.diff(flow, prepend=0.0)
    pole = 0.8 - 0.65 * prosody.tilt
    excitation = scipy.signal.lfilter([1.0 - pole], [1.0, -pole], excitation)
    excitation /= max(np.sqrt(np.mean(excitation**2)), 1e-9)
    return excitation, flow


def _vocal_tract(excitation: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Filters blocks of `excitation` through per-block formant cascades.

    Args:
        excitation: [S] source signal.
        formants: [K, 4] formant frequencies (Hz) per block of `_BLOCK`
            samples, K = ceil(S / _BLOCK).

    Returns:
        [S] the filtered signal.
    """
    num_samples = excitation.shape[0]
    num_blocks = formants.shape[0]
    blocks = np.zeros(num_blocks * _BLOCK)
    blocks[:num_samples] = excitation
    spectra = np.fft.rfft(blocks.reshape(num_blocks, _BLOCK), n=_NFFT)  # [K, F]
    # Multiply out the four resonators' denominators into one 8th-order
    # polynomial per block, whose spectrum is one more FFT.
    r = np.exp(-np.pi * _FORMANT_BANDWIDTHS / SAMPLE_RATE)  # [4]
    theta = 2.0 * np.pi * formants / SAMPLE_RATE  # [K, 4]
    a1 = -2.0 * r * np.cos(theta)  # [K, 4]
    a2 = np.broadcast_to(r**2, a1.shape)
    denominator = np.ones((num_blocks, 1))
    for i in range(4):
        padded = np.pad(denominator, ((0, 0), (0, 2)))
        denominator = (
            padded
            + a1[:, i : i + 1] * np.roll(padded, 1, axis=1)
            + a2[:, i : i + 1] * np.roll(padded, 2, axis=1)
        )  # [K, 2i + 3]
    # Each resonator has unit gain at DC, so the cascade's gain is the
    # denominator's sum.
    gain = denominator.sum(axis=1, keepdims=True)  # [K, 1]
    response = gain / np.fft.rfft(denominator, n=_NFFT)  # [K, F]
    ringing = np.fft.irfft(spectra * response, n=_NFFT)  # [K, NFFT]
    # Overlap-add: block k's output starts at k * _BLOCK.
    hops = _NFFT // _BLOCK
    out = np.zeros((num_blocks + hops, _BLOCK))
    ringing = ringing.reshape(num_blocks, hops, _BLOCK)
    for j in range(hops):
        out[j : j + num_blocks] += ringing[:, j]
    return out.reshape(-1)[:num_samples]


@functools.lru_cache(maxsize=256)
def _bandpass(low: float, high: float, vtl_scale: float) -> np.ndarray:
    band = np.clip(np.array([low, high]) * vtl_scale, 100.0, 0.47 * SAMPLE_RATE)
    return scipy.signal.butter(2, band, btype="bandpass", fs=SAMPLE_RATE, output="sos")


@functools.lru_cache(maxsize=1)
def _highpass() -> np.ndarray:
    return scipy.signal.butter(2, 60.0, btype="highpass", fs=SAMPLE_RATE, output="sos")


def synthesize_utterance(
    seed: Any,
    speaker: SpeakerParams,
    prosody: Prosody,
    seconds: float,
) -> np.ndarray:
    """Synthesizes one speech-like utterance.

    Args:
        seed: anything `numpy.random.default_rng` accepts; fixes the syllables,
            vowels, consonants and all noise.
        speaker: the voice.
        prosody: the acoustic parameters (see `prosody_for`).
        seconds: duration; the result has round(seconds * SAMPLE_RATE)
            samples, with 50-150 ms of near-silence at each end.

    Returns:
        int16 [S] audio at `SAMPLE_RATE`.
    """
    rng = np.random.default_rng(seed)
    num_samples = int(round(seconds * SAMPLE_RATE))
    if num_samples < 0.4 * SAMPLE_RATE:
        raise ValueError(f"utterance too short: {seconds} s")
    syllables = _plan_syllables(rng, prosody, num_samples)

    voice_env = np.zeros(num_samples)
    aspiration_env = np.zeros(num_samples)
    frication_env = {kind: np.zeros(num_samples) for kind in _FRICATION}
    attack = int((0.035 - 0.02 * prosody.tilt) * SAMPLE_RATE)
    for syl in syllables:
        nucleus = slice(syl.onset_end, syl.coda_start)
        length = syl.coda_start - syl.onset_end
        voice_env[nucleus] = syl.amplitude * _ramp_envelope(
            length, attack, int(0.04 * SAMPLE_RATE)
        )
        onset_length = syl.onset_end - syl.start
        if syl.onset == "stop":
            # Silent closure, then a 10-20 ms burst just before the vowel.
            burst = min(int(rng.uniform(0.01, 0.02) * SAMPLE_RATE), onset_length)
            frication_env["stop"][syl.onset_end - burst : syl.onset_end] = (
                _ramp_envelope(burst, burst // 4, burst // 2)
            )
        elif syl.onset == "h":
            aspiration_env[syl.start : syl.onset_end] = _ramp_envelope(
                onset_length, onset_length // 3, onset_length // 4
            )
        elif syl.onset != "none":
            frication_env[syl.onset][syl.start : syl.onset_end] = _ramp_envelope(
                onset_length, onset_length // 3, onset_length // 5
            )
        coda_length = syl.end - syl.coda_start
        if coda_length > 0:
            frication_env["s"][syl.coda_start : syl.end] = 0.7 * _ramp_envelope(
                coda_length, coda_length // 5, coda_length // 3
            )

    f0 = _f0_contour(rng, syllables, speaker, prosody, num_samples)
    excitation, flow = _glottal_source(rng, f0, prosody)
    # Turbulence at the glottis is strongest while it is open.
    breath = rng.normal(0.0, 1.0, num_samples) * (0.3 + flow)
    source = (excitation + prosody.breathiness * breath) * voice_env
    source += _ASPIRATION_LEVEL * rng.normal(0.0, 1.0, num_samples) * aspiration_env

    # Formants glide between the vowel targets of successive syllables.
    num_blocks = -(-num_samples // _BLOCK)
    block_centres = (np.arange(num_blocks) + 0.5) * _BLOCK
    vowel_centres = [0.5 * (s.onset_end + s.coda_start) for s in syllables]
    targets = _VOWEL_FORMANTS[[s.vowel for s in syllables]]  # [N, 4]
    formants = np.stack(
        [np.interp(block_centres, vowel_centres, targets[:, i]) for i in range(4)],
        axis=1,
    )
    formants *= speaker.vtl_scale * prosody.formant_shift
    formants = np.minimum(formants, 0.45 * SAMPLE_RATE)
    speech = _vocal_tract(source, formants)

    # Frication is shaped by the small front cavity, not the formants; its
    # band scales with the tract like the formants do.
    white = rng.normal(0.0, 1.0, num_samples)
    voiced_rms = (
        np.sqrt(np.mean(speech[voice_env > 0.5] ** 2))
        if np.any(voice_env > 0.5)
        else 1.0
    )
    for kind, ((low, high), level) in _FRICATION.items():
        env = frication_env[kind]
        if not env.any():
            continue
        noise = scipy.signal.sosfilt(_bandpass(low, high, speaker.vtl_scale), white)
        noise /= max(np.sqrt(np.mean(noise**2)), 1e-9)
        speech += level * voiced_rms * noise * env

    # Remove DC and rumble from the glottal flow.
    speech = scipy.signal.sosfilt(_highpass(), speech)

    active = (voice_env > 0.05) | (aspiration_env > 0.05)
    for env in frication_env.values():
        active |= env > 0.05
    rms = np.sqrt(np.mean(speech[active] ** 2)) if active.any() else 1.0
    speech *= 10.0 ** (prosody.level_db / 20.0) / max(rms, 1e-9)
    peak = np.max(np.abs(speech))
    ceiling = 10.0 ** (_MAX_PEAK_DB / 20.0)
    if peak > ceiling:
        speech *= ceiling / peak
    speech += 10.0 ** (_NOISE_FLOOR_DB / 20.0) * rng.normal(0.0, 1.0, num_samples)
    return np.clip(np.rint(speech * 32767.0), -32768, 32767).astype(np.int16)


def labeled_speaker(seed: int, session: int, sex: str) -> SpeakerParams:
    """The speaker of sex `sex` in labeled session `session` (1-based)."""
    rng = _rng(seed, _LABELED, _SPEAKER_STREAM, session, SEXES.index(sex))
    return sample_speaker(rng, f"Ses{session:02d}{sex}", sex)


def unlabeled_speaker(seed: int, index: int) -> SpeakerParams:
    """Unlabeled speaker number `index`; even indices are female."""
    rng = _rng(seed, _UNLABELED, _SPEAKER_STREAM, index)
    return sample_speaker(rng, f"spk{index:03d}", SEXES[index % 2])


def _check_seconds(min_seconds: float, max_seconds: float) -> None:
    if not 0.5 <= min_seconds <= max_seconds:
        raise ValueError(
            f"need 0.5 <= min_seconds <= max_seconds, got {min_seconds}, {max_seconds}"
        )


def labeled_utterance(
    seed: int,
    session: int,
    sex: str,
    index: int,
    min_seconds: float = LABELED_SECONDS[0],
    max_seconds: float = LABELED_SECONDS[1],
) -> Utterance:
    """Labeled utterance `index` of the `sex` speaker of session `session`.

    Args:
        seed: the corpus seed.
        session: session number, 1-based.
        sex: "F" or "M".
        index: utterance number within the speaker.
        min_seconds: shortest duration.
        max_seconds: longest duration.

    Returns:
        The utterance, with id like "Ses01F_synth_F000".
    """
    _check_seconds(min_seconds, max_seconds)
    speaker = labeled_speaker(seed, session, sex)
    rng = _rng(seed, _LABELED, _UTTERANCE_STREAM, session, SEXES.index(sex), index)
    return _utterance(
        rng,
        f"{speaker.name}_synth_{sex}{index:03d}",
        speaker,
        LABELED_CATEGORY_PRIOR,
        min_seconds,
        max_seconds,
        session=session,
    )


def unlabeled_utterance(
    seed: int,
    speaker_index: int,
    index: int,
    min_seconds: float = UNLABELED_SECONDS[0],
    max_seconds: float = UNLABELED_SECONDS[1],
) -> Utterance:
    """Unlabeled utterance `index` of speaker `speaker_index`.

    Its emotion is drawn from a calmer prior than the labeled part's; the
    labels are computed but not part of the unlabeled corpus.

    Args:
        seed: the corpus seed.
        speaker_index: speaker number.
        index: utterance number within the speaker.
        min_seconds: shortest duration.
        max_seconds: longest duration.

    Returns:
        The utterance, with id like "spk007_0003".
    """
    _check_seconds(min_seconds, max_seconds)
    speaker = unlabeled_speaker(seed, speaker_index)
    rng = _rng(seed, _UNLABELED, _UTTERANCE_STREAM, speaker_index, index)
    return _utterance(
        rng,
        f"{speaker.name}_{index:04d}",
        speaker,
        UNLABELED_CATEGORY_PRIOR,
        min_seconds,
        max_seconds,
    )


def _utterance(
    rng,
    utterance_id: str,
    speaker,
    prior,
    min_seconds: float,
    max_seconds: float,
    session: int = 0,
) -> Utterance:
    """Emotion -> prosody -> ratings -> audio, all drawn from `rng` in this order."""
    emotion = sample_emotion(rng, prior)
    prosody = prosody_for(emotion, speaker, rng)
    labels = rate_labels(emotion, rng)
    seconds = rng.uniform(min_seconds, max_seconds)
    audio = synthesize_utterance(rng.integers(2**63), speaker, prosody, seconds)
    return Utterance(
        id=utterance_id,
        speaker=speaker,
        emotion=emotion,
        prosody=prosody,
        labels=labels,
        audio=audio,
        session=session,
    )


def unlabeled_examples(
    seed: int = 0,
    num_speakers: int = UNLABELED_SPEAKERS,
    utterances_per_speaker: int = UNLABELED_UTTERANCES_PER_SPEAKER,
    min_seconds: float = UNLABELED_SECONDS[0],
    max_seconds: float = UNLABELED_SECONDS[1],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The unlabeled many-speaker part (the demo's "LibriSpeech").

    Args:
        seed: the corpus seed.
        num_speakers: number of speakers, alternately female and male.
        utterances_per_speaker: utterances per speaker.
        min_seconds: shortest duration.
        max_seconds: longest duration.

    Yields:
        (key, example) with example = {"audio": int16 [S], "speaker": str,
        "id": str}; the key is the id.
    """
    for speaker_index in range(num_speakers):
        for index in range(utterances_per_speaker):
            utt = unlabeled_utterance(
                seed, speaker_index, index, min_seconds, max_seconds
            )
            yield (
                utt.id,
                {"audio": utt.audio, "speaker": utt.speaker.name, "id": utt.id},
            )


def labeled_examples(
    seed: int = 0,
    num_sessions: int = LABELED_SESSIONS,
    utterances_per_speaker: int = LABELED_UTTERANCES_PER_SPEAKER,
    min_seconds: float = LABELED_SECONDS[0],
    max_seconds: float = LABELED_SECONDS[1],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The labeled part (the demo's "IEMOCAP"): sessions of one F and one M.

    Args:
        seed: the corpus seed.
        num_sessions: number of sessions (1-5 mirrors IEMOCAP).
        utterances_per_speaker: utterances per speaker.
        min_seconds: shortest duration.
        max_seconds: longest duration.

    Yields:
        (key, example) with example = {"audio": int16 [S], "id": str like
        "Ses01F_synth_F000", "speaker": "Ses01F" or "Ses01M", "session": int,
        "category": one of `CATEGORIES`, "labels": float32 [3] (activation,
        valence, dominance) on 1-5}; the key is the id.
    """
    for session in range(1, num_sessions + 1):
        for sex in SEXES:
            for index in range(utterances_per_speaker):
                utt = labeled_utterance(
                    seed, session, sex, index, min_seconds, max_seconds
                )
                yield (
                    utt.id,
                    {
                        "audio": utt.audio,
                        "id": utt.id,
                        "speaker": utt.speaker.name,
                        "session": session,
                        "category": utt.emotion.category,
                        "labels": utt.labels,
                    },
                )
