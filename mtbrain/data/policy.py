"""Label policies: how the known quirks of real box sets are handled, explicitly.

Real brain-MRI box sets disagree with themselves in known ways (see
``../shared/data/README.md``). Each quirk has a named option here instead of a behaviour
that happens by accident; readers take a :class:`LabelPolicy`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from mtbrain.errors import ConfigError, OnError


@dataclass(frozen=True)
class LabelPolicy:
    """How readers turn annotations into sample records.

    Attributes:
        foreign_box_ids: A box whose class id differs from the image's folder class (e.g.
            class-3 boxes in the Glioma folder). The folder is always the image's class.
            ``"keep"`` (default): the box stays a tumour box of the image.
            ``"drop"``: the box is moved to ``other_boxes``. ``"error"``: a problem.
        no_tumor_boxes: Boxes on images of class ``no_tumor`` (the Kaggle set draws one
            around the whole brain). ``"ignore"`` (default): moved to ``other_boxes``, so
            the image has no tumour box and is masked out of the box loss. ``"keep"``:
            they are treated as tumour boxes.
        multi_box: Which of several tumour boxes the record keeps. ``"all"`` (default):
            every box (the box loss matches the prediction to the nearest one).
            ``"largest"``: the largest. ``"union"``: one box around all of them.
        missing_label_file: An image without its label file (box layouts). ``"error"``
            (default): a problem. ``"class_only"``: the image keeps its folder class and
            no box (the classifier still learns from it).
        box_tolerance: Normalised coordinates outside [0, 1] by at most this much are
            clipped; further out is a problem.
        on_error: ``"raise"`` stops at the first problem; ``"skip"`` drops the sample and
            records the problem in the set's problem log.
    """

    foreign_box_ids: Literal["keep", "drop", "error"] = "keep"
    no_tumor_boxes: Literal["ignore", "keep"] = "ignore"
    multi_box: Literal["all", "largest", "union"] = "all"
    missing_label_file: Literal["error", "class_only"] = "error"
    box_tolerance: float = 0.01
    on_error: OnError = "raise"

    def __post_init__(self) -> None:
        choices = {
            "foreign_box_ids": ("keep", "drop", "error"),
            "no_tumor_boxes": ("ignore", "keep"),
            "multi_box": ("all", "largest", "union"),
            "missing_label_file": ("error", "class_only"),
            "on_error": ("raise", "skip"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"label policy {name}={value!r}: choose one of {allowed}")
        if not 0 <= self.box_tolerance < 0.5:
            raise ConfigError(f"label policy box_tolerance={self.box_tolerance}: must be in [0, 0.5)")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LabelPolicy:
        """Build from a config mapping; unknown keys are errors that name the key."""
        from mtbrain.config import from_dict

        return from_dict(cls, dict(values or {}), prefix="policy")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
