"""Exceptions raised by samtrack's core. Each message says what was wrong and what to do."""

from __future__ import annotations


class SamtrackError(Exception):
    """Base class of every error samtrack raises on purpose."""

    code = "error"


class CheckpointError(SamtrackError):
    """A checkpoint file is missing, unreadable, not in Meta's format or of another model."""

    code = "bad_checkpoint"


class ModelNameError(SamtrackError, ValueError):
    """A model name that samtrack does not know."""

    code = "unknown_model"


class ImageSizeError(SamtrackError, ValueError):
    """A model input size the model cannot take (models.registry.image_size_problem)."""

    code = "bad_image_size"


class FrameError(SamtrackError, ValueError):
    """A frame that is not an HxWx3 uint8 RGB array."""

    code = "bad_frame"


class PromptError(SamtrackError, ValueError):
    """A prompt with bad points, box, labels or mask."""

    code = "bad_prompt"


class FrameWindowError(SamtrackError, ValueError):
    """A prompt names a frame that is not (or no longer) in the tracker's feature window."""

    code = "frame_out_of_window"


class UnknownObjectError(SamtrackError, KeyError):
    """An object id that the tracker does not track."""

    code = "unknown_object"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TooManyObjectsError(SamtrackError, ValueError):
    """A new object id while the tracker already tracks its maximum number of objects."""

    code = "too_many_objects"


class DownloadError(SamtrackError):
    """A checkpoint download that failed or produced a file of the wrong size."""

    code = "download_failed"


class DeviceError(SamtrackError, ValueError):
    """A device that cannot run here (no GPU, a driver too old for this torch, no such index), or a backend
    that does not run on the device asked for."""

    code = "bad_device"


class NoDetectorError(SamtrackError, ValueError):
    """A concept prompt to a daemon started without a detector."""

    code = "no_detector"


class UnknownConceptError(SamtrackError, KeyError):
    """A concept text that the stream does not have."""

    code = "unknown_concept"

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class TooManyConceptsError(SamtrackError, ValueError):
    """A new concept on a stream that already has its maximum number of concepts."""

    code = "too_many_concepts"
