"""Progress of long work (build, push, pull, save, load): one dataclass every face can render."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One step of long work.

    ``phase`` is the verb ("build", "push", "pull", "save", "load", "samples"); ``what`` says what is being
    done, in one line ("STEP 2/5: RUN make", "blob sha256:ab12..."); ``done`` of ``total`` counts ``unit``
    ("steps", "bytes", "blobs", "images"; total 0 when unknown). ``output`` carries a RUN step's own output,
    which a face shows as it is (a learner needs it when a RUN fails).
    """

    phase: str
    what: str
    done: int = 0
    total: int = 0
    unit: str = ""
    output: str = ""

    @property
    def fraction(self) -> float | None:
        """done/total in [0, 1], or None when the total is not known."""
        if self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


ProgressCallback = Callable[[Progress], None]
