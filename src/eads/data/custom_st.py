"""A user's own spatio-temporal data set as a benchmark spec: :class:`CustomData`.

The spec is what a cell carries in its params (``dataclasses.asdict``), so it holds plain
values only; :meth:`CustomData.load` reads the data through
:func:`eads.data.spatiotemporal.load_custom`, whose checks (rank, key, graph size, negative or
NaN distances, ...) are the spec's. See ``docs/spatiotemporal.md`` for a worked example.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

CUSTOM = "custom"
"""The data set name of a user's own data (:class:`CustomData`)."""


@dataclass(frozen=True)
class CustomData:
    """A user's own data set, run under the name ``custom`` (see ``docs/spatiotemporal.md``).

    Read by :func:`eads.data.spatiotemporal.load_custom`: ``path[key]`` is the ``(time, nodes,
    features)`` series, ``target_feature`` the forecast feature, and exactly one of
    ``adjacency`` (an ``N x N`` weight CSV, no header) or ``distances`` (a ``from,to,cost`` edge
    list) the graph. ``in_steps -> out_steps`` are the window lengths in steps of
    ``step_minutes``; the split is the standard chronological 6:2:2. The whole spec travels in
    each cell's params, so the cell ids depend on it (and on the absolute file paths).
    """

    path: str
    key: str
    step_minutes: float
    target_feature: int = 0
    adjacency: str | None = None
    distances: str | None = None
    in_steps: int = 12
    out_steps: int = 12

    def resolved(self) -> CustomData:
        """The same spec with absolute file paths (cells may run in another directory)."""

        def absolute(p):
            return None if p is None else str(Path(p).expanduser().resolve())

        return replace(
            self,
            path=absolute(self.path),
            adjacency=absolute(self.adjacency),
            distances=absolute(self.distances),
        )

    def load(self):
        """The data set (:class:`eads.data.spatiotemporal.SpatioTemporalDataset`)."""
        from eads.data.spatiotemporal import load_custom

        return load_custom(
            self.path,
            key=self.key,
            target_feature=self.target_feature,
            adjacency_path=self.adjacency,
            distance_path=self.distances,
            step_minutes=self.step_minutes,
        )

    def windows(self) -> dict[str, int]:
        """The window lengths as :func:`eads.data.spatiotemporal.make_forecast_splits` takes
        them."""
        return {"history": self.in_steps, "horizon": self.out_steps}


def spec_key(custom: CustomData | dict | None) -> tuple | None:
    """A hashable form of a spec or of its params dict (a cache key); None for None."""
    if custom is None:
        return None
    spec = asdict(custom) if isinstance(custom, CustomData) else dict(custom)
    return tuple(sorted(spec.items()))


__all__ = ["CUSTOM", "CustomData", "spec_key"]
