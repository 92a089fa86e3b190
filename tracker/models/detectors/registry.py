"""The open-vocabulary detectors samtrack knows: their names, hub repositories and the files each needs."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import ModelNameError


@dataclass(frozen=True)
class DetectorSpec:
    """One detector: its name in samtrack, its repository on the Hugging Face hub, what it is and what it needs."""

    name: str  # e.g. "owlv2-base"
    repo: str  # the hub repository its weights, config and tokenizer come from
    family: str  # the module in this package that builds it
    params_m: int  # parameters, millions (the real config's), for the docs and `weights list`
    tokenizer_offline: bool  # True: its tokenizer is built from a vocabulary installed here (open_clip's CLIP BPE)
    needs_gpu: bool = False  # True: refused on a CPU (too slow to be of use there)
    gated: bool = False  # True: the hub serves its files only to a logged-in user who accepted its licence


DETECTORS: dict[str, DetectorSpec] = {s.name: s for s in (
    DetectorSpec("owlv2-base", "google/owlv2-base-patch16-ensemble", "owlv2", 155, tokenizer_offline=True),
    DetectorSpec("omdet-turbo", "omlab/omdet-turbo-swin-tiny-hf", "omdet_turbo", 115, tokenizer_offline=True),
    DetectorSpec("grounding-dino-tiny", "IDEA-Research/grounding-dino-tiny", "grounding_dino", 172,
                 tokenizer_offline=False),
    DetectorSpec("sam3", "facebook/sam3", "sam3", 840, tokenizer_offline=True, needs_gpu=True, gated=True),
)}


def detector_spec(name: str) -> DetectorSpec:
    """The spec of a detector name such as "owlv2-base"."""
    if name not in DETECTORS:
        raise ModelNameError(f"unknown detector {name!r}; known detectors: {', '.join(DETECTORS)}")
    return DETECTORS[name]


def is_detector(name: str) -> bool:
    return name in DETECTORS
