"""Meta's released SAM2 / SAM2.1 models: names, hydra configs and checkpoint URLs."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ModelNameError

# Meta's published download locations (sam2 repository, checkpoints/download_ckpts.sh).
SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824"
SAM21_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"


@dataclass(frozen=True)
class ModelSpec:
    """One released model: its canonical name, hydra config and checkpoint file."""

    name: str  # e.g. "sam2.1_hiera_t"
    config: str  # config path inside the sam2 package
    filename: str  # checkpoint file name as Meta publishes it
    base_url: str  # Meta's directory for that release

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.filename}"


_SIZES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


def image_size_problem(size: int) -> str | None:
    """Why a model input size cannot be used, or None: Hiera tiles an 8x8 window embedding over size/4, so the
    size is a multiple of 32 and at least 64 (Meta's is 1024)."""
    if size % 32 != 0 or size < 64:
        near = max(64, (size + 16) // 32 * 32)
        return f"image size {size} is not a multiple of 32 of at least 64: use {near} (Meta's is 1024; 512 is " \
               "faster on CPUs)"
    return None


def _specs() -> dict[str, ModelSpec]:
    specs = {}
    for short, long in _SIZES.items():
        specs[f"sam2_hiera_{short}"] = ModelSpec(
            f"sam2_hiera_{short}", f"configs/sam2/sam2_hiera_{short}.yaml",
            f"sam2_hiera_{long}.pt", SAM2_BASE_URL,
        )
        specs[f"sam2.1_hiera_{short}"] = ModelSpec(
            f"sam2.1_hiera_{short}", f"configs/sam2.1/sam2.1_hiera_{short}.yaml",
            f"sam2.1_hiera_{long}.pt", SAM21_BASE_URL,
        )
    return specs


MODELS: dict[str, ModelSpec] = _specs()
_ALIASES = {
    **{f"{v}_hiera_{long}": f"{v}_hiera_{short}" for v in ("sam2", "sam2.1") for short, long in _SIZES.items()},
    **{f"{v}_hiera_b": f"{v}_hiera_b+" for v in ("sam2", "sam2.1")},
}


def model_spec(name: str) -> ModelSpec:
    """The spec for a model name such as "sam2.1_hiera_t" (long forms like "sam2.1_hiera_tiny" too)."""
    key = _ALIASES.get(name, name)
    if key.endswith(".pt"):
        key = _ALIASES.get(key[:-3], key[:-3])
    if key not in MODELS:
        raise ModelNameError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return MODELS[key]
