"""Who spoke when: the pocketsphinx transcript split into speaker turns.

How speakers are told apart. pocketsphinx's voice activity detector cuts the
file into speech regions at pauses. Each region becomes a cloud of MFCC
frames (12 cepstral coefficients, 25 ms windows every 10 ms, the quietest
30% of frames dropped), modelled as one full-covariance Gaussian. Regions
are merged bottom-up, the closest pair first, for as long as the Bayesian
information criterion says that one Gaussian explains the pair better than
two (ΔBIC < 0); what is left is one cluster per speaker, so the number of
speakers is found, not given. The words of the whole-file transcript go to
the region their midpoint falls in.

BIC_PENALTY weighs the model-size term of ΔBIC. Measured on eight clips
(two espeak-ng dialogues of male and female voices, one of two male voices,
one of British and American voices; two_cities and beckett from the
moonshine-voice wheel alone and spliced into an alternating dialogue; that
wheel's endgame_nagg_nell dialogue), every penalty from 2.75 to 3.25 found
exactly one speaker in the monologues, two in the dialogues, and put every
region with its speaker; 2.5 split endgame's two voices into four and 3.5
merged the two real readers. Limits: a speaker change without a pause stays
inside one region, and two voices of the same kind recorded alike will be
merged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.inference.base import (
    ItemInput,
    ModelOutput,
    PostProcessorConfig,
    PostProcessorModel,
)
from shared.inference.files.audio import SAMPLE_RATE, load_speech
from shared.inference.speech import Transcriber, Word, speech_regions

BIC_PENALTY = 3.0
# A full 12x12 covariance needs some frames; shorter regions (a "yes")
# join the speaker whose Gaussian explains them best after clustering.
MIN_CLUSTER_FRAMES = 40
COEFFICIENTS = 12
WINDOW, HOP, FFT_SIZE, MEL_BANDS = 400, 160, 512, 26
QUIET_FRAME_FRACTION = 0.3


class SpeakerDiarization(PostProcessorModel):
    model_type = "stt-diarization"
    name = "pocketsphinx-mfcc-bic"

    def __init__(self) -> None:
        import numpy

        self.transcriber = Transcriber()
        self.mel_filters = _mel_filters()
        # DCT-II (orthonormal) of the log mel energies, cepstra 1..12: c0 is
        # loudness, which says more about the microphone than the voice.
        bands = numpy.arange(MEL_BANDS)
        self.dct = numpy.sqrt(2 / MEL_BANDS) * numpy.cos(
            numpy.pi / MEL_BANDS * (bands[:, None] + 0.5) * numpy.arange(1, COEFFICIENTS + 1)
        )
        self.window = numpy.hamming(WINDOW)

    def run(self, item: ItemInput, file: Path | None, config: PostProcessorConfig) -> ModelOutput:
        samples = load_speech(item, file)
        words = self.transcriber.words(samples)
        regions = speech_regions(samples)
        speakers = self.speakers(samples, regions)
        segments = _segments(regions, speakers, words)
        return ModelOutput(
            raw={
                "model": self.name,
                "segments": segments,
                "speakers": len({segment["speaker"] for segment in segments}),
            },
            text="\n".join(
                f"{segment['speaker']}: {segment['text']}"
                for segment in segments
                if segment["text"]
            ),
        )

    def speakers(self, samples: Any, regions: list[tuple[int, int]]) -> list[int]:
        """A speaker number for each region, numbered in order of first turn."""
        import numpy

        frames = [self.mfcc(samples[start:end]) for start, end in regions]
        long = [index for index, region in enumerate(frames) if len(region) >= MIN_CLUSTER_FRAMES]
        if not long:
            return [0] * len(regions)
        clusters = _bic_clusters([frames[index] for index in long])
        gaussians = [_gaussian(numpy.vstack([frames[long[i]] for i in c])) for c in clusters]
        labels = []
        for region in frames:
            scores = [_log_likelihood(region, *gaussian) for gaussian in gaussians]
            labels.append(int(numpy.argmax(scores)) if len(region) else 0)
        # Renumber so that SPEAKER_1 is whoever speaks first.
        order: dict[int, int] = {}
        return [order.setdefault(label, len(order)) for label in labels]

    def mfcc(self, samples: Any) -> Any:
        import numpy

        signal = samples.astype(numpy.float32) / 32768
        signal = numpy.append(signal[:1], signal[1:] - 0.97 * signal[:-1])
        count = 1 + (len(signal) - WINDOW) // HOP
        if count < 1:
            return numpy.zeros((0, COEFFICIENTS))
        indices = numpy.arange(WINDOW)[None, :] + HOP * numpy.arange(count)[:, None]
        power = numpy.abs(numpy.fft.rfft(signal[indices] * self.window, FFT_SIZE)) ** 2
        energy = numpy.log(power.sum(axis=1) + 1e-10)
        cepstra = numpy.log(power @ self.mel_filters.T + 1e-10) @ self.dct
        return cepstra[energy >= numpy.quantile(energy, QUIET_FRAME_FRACTION)]


def _mel_filters() -> Any:
    import numpy

    def to_mel(hertz: Any) -> Any:
        return 2595 * numpy.log10(1 + hertz / 700)

    edges = 700 * (10 ** (numpy.linspace(to_mel(60), to_mel(7600), MEL_BANDS + 2) / 2595) - 1)
    bins = numpy.floor((FFT_SIZE + 1) * edges / SAMPLE_RATE).astype(int)
    filters = numpy.zeros((MEL_BANDS, FFT_SIZE // 2 + 1))
    for band in range(MEL_BANDS):
        left, centre, right = bins[band : band + 3]
        filters[band, left:centre] = (numpy.arange(left, centre) - left) / max(centre - left, 1)
        filters[band, centre:right] = (right - numpy.arange(centre, right)) / max(right - centre, 1)
    return filters


def _bic_clusters(regions: list[Any]) -> list[list[int]]:
    """Agglomerative clustering by ΔBIC. Clusters are kept as sufficient
    statistics (count, sum, sum of outer products), so a merge never
    revisits frames, and the pair scores are kept in a matrix of which a
    merge recomputes one row: O(n²) scores for n regions, not O(n³)."""
    import numpy

    dimension = regions[0].shape[1]
    penalty = BIC_PENALTY * 0.5 * (dimension + dimension * (dimension + 1) / 2)
    members = [[index] for index in range(len(regions))]
    counts = numpy.array([len(region) for region in regions], dtype=float)
    sums = numpy.stack([region.sum(axis=0) for region in regions])
    outers = numpy.stack([region.T @ region for region in regions])
    own = counts * _log_determinant(counts, sums, outers)

    def delta_bic(index: int) -> Any:
        """ΔBIC of merging cluster `index` with each cluster (inf with itself)."""
        count = counts + counts[index]
        merged = _log_determinant(count, sums + sums[index], outers + outers[index])
        delta = 0.5 * (count * merged - own - own[index]) - penalty * numpy.log(count)
        delta[index] = numpy.inf
        return delta

    deltas = numpy.stack([delta_bic(index) for index in range(len(members))])
    while len(members) > 1:
        keep, gone = sorted(int(i) for i in numpy.unravel_index(numpy.argmin(deltas), deltas.shape))
        if deltas[keep, gone] >= 0:
            break
        members[keep] += members.pop(gone)
        counts[keep] += counts[gone]
        sums[keep] += sums[gone]
        outers[keep] += outers[gone]
        counts, sums, outers, own = (
            numpy.delete(array, gone, axis=0) for array in (counts, sums, outers, own)
        )
        deltas = numpy.delete(numpy.delete(deltas, gone, axis=0), gone, axis=1)
        merged = slice(keep, keep + 1)
        own[merged] = counts[merged] * _log_determinant(
            counts[merged], sums[merged], outers[merged]
        )
        deltas[keep] = deltas[:, keep] = delta_bic(keep)
    return members


def _log_determinant(count: Any, sums: Any, outers: Any) -> Any:
    import numpy

    mean = sums / count[:, None]
    covariance = outers / count[:, None, None] - mean[:, :, None] * mean[:, None, :]
    # A little ridge keeps a short region's covariance invertible.
    covariance += 1e-4 * numpy.eye(sums.shape[1])
    return numpy.linalg.slogdet(covariance)[1]


def _gaussian(frames: Any) -> tuple[Any, Any, float]:
    import numpy

    mean = frames.mean(axis=0)
    covariance = numpy.cov(frames, rowvar=False) + 1e-4 * numpy.eye(frames.shape[1])
    return mean, numpy.linalg.inv(covariance), float(numpy.linalg.slogdet(covariance)[1])


def _log_likelihood(frames: Any, mean: Any, precision: Any, log_determinant: float) -> float:
    import numpy

    if len(frames) == 0:
        return 0.0
    centred = frames - mean
    distances = numpy.einsum("ij,jk,ik->i", centred, precision, centred)
    return float(-0.5 * (distances.mean() + log_determinant))


def _segments(
    regions: list[tuple[int, int]], speakers: list[int], words: list[Word]
) -> list[dict[str, Any]]:
    """One segment per turn: consecutive regions of one speaker are joined,
    and each word goes to the region its midpoint is in (or the nearest)."""
    spans = [(start / SAMPLE_RATE, end / SAMPLE_RATE) for start, end in regions]
    if not spans and words:
        # Words the detector heard no speech around: one speaker said them.
        spans, speakers = [(words[0].start, words[-1].end)], [0]
    region_words: list[list[Word]] = [[] for _ in spans]
    for word in words:
        middle = (word.start + word.end) / 2
        nearest = min(
            range(len(spans)),
            key=lambda index: max(spans[index][0] - middle, middle - spans[index][1], 0),
        )
        region_words[nearest].append(word)
    segments: list[dict[str, Any]] = []
    for (start, end), speaker, heard in zip(spans, speakers, region_words, strict=True):
        label = f"SPEAKER_{speaker + 1}"
        start = min([start, *(word.start for word in heard)])
        end = max([end, *(word.end for word in heard)])
        text = " ".join(word.word for word in heard)
        if segments and segments[-1]["speaker"] == label:
            previous = segments[-1]
            previous["end"] = round(end, 2)
            previous["text"] = " ".join(filter(None, [previous["text"], text]))
        else:
            segments.append(
                {"speaker": label, "start": round(start, 2), "end": round(end, 2), "text": text}
            )
    return segments
