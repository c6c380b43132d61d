"""Ids and facets: entities travel as integer ids; a facet is a view of an id, filled in batches.

Ids are `typing.NewType`s over `int` (``VideoId = NewType("VideoId", int)``): a list of 100
videos is a list of 100 ints on the wire, and the type checker still keeps a `VideoId` apart
from a `VisitorId`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec

from herd._model.errors import ConfigurationError


class _FacetMeta(msgspec.StructMeta):
    """Takes the `of=` class keyword, which msgspec's own metaclass would refuse."""

    def __new__(
        mcls,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        of: Any = None,
        **kwargs: Any,
    ) -> Any:
        if of is not None:
            annotations = namespace.setdefault("__annotations__", {})
            annotations.setdefault("id", of)
        cls = super().__new__(mcls, name, bases, namespace, **kwargs)
        if of is not None:
            setattr(cls, "__herd_of__", of)  # noqa: B010
        elif bases != (msgspec.Struct,) and not hasattr(cls, "__herd_of__"):
            raise ConfigurationError(f"facet {name} must name its id type: Facet, of=VideoId")
        return cls


class Facet(msgspec.Struct, metaclass=_FacetMeta, kw_only=True):
    """A view of an id, declared with the id type it views::

        class PresentationVideo(herd.Facet, of=VideoId):
            id: VideoId
            title: str

    `id` is added from `of=` when not declared.
    """

    __herd_of__: ClassVar[Any]

    if TYPE_CHECKING:

        def __init_subclass__(cls, of: Any = None, **kwargs: Any) -> None: ...


FacetT = TypeVar("FacetT", bound=Facet)
IdT = TypeVar("IdT", bound=int)


async def fill(
    ids: Sequence[IdT],
    fetch: Callable[[list[IdT]], Awaitable[Sequence[FacetT]]],
    *,
    batch: int = 100,
) -> list[FacetT | None]:
    """Fill facets for `ids` with batched calls to `fetch`, in the order of `ids`.

    Duplicate ids are fetched once; an id the service returned no facet for becomes None, so a
    row can omit it instead of failing the page.
    """
    if batch < 1:
        raise ConfigurationError("batch must be >= 1")
    unique = list(dict.fromkeys(ids))
    found: dict[int, FacetT] = {}
    for start in range(0, len(unique), batch):
        for facet in await fetch(unique[start : start + batch]):
            found[facet.id] = facet  # type: ignore[attr-defined]
    return [found.get(i) for i in ids]
