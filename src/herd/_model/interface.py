"""Interfaces: a service declared once as a Python class of typed async methods.

From that one declaration herd derives the server (`herd.serve`) and the driver (`herd.driver`).
Errors an interface declares subclass `ServiceError` and cross the wire as themselves.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

import msgspec

from herd._model.errors import ConfigurationError, HerdError

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])

_SERVICE_ERRORS: dict[str, type[ServiceError]] = {}


class ServiceError(HerdError):
    """Base class of the errors an interface declares.

    Declare fields as class annotations; the caller receives the same type with the same fields::

        class NotFound(herd.ServiceError):
            video: VideoId

        raise NotFound("no such video", video=VideoId(7))
    """

    _herd_struct: ClassVar[type[msgspec.Struct] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "message" in inspect.get_annotations(cls):
            raise ConfigurationError(
                f"{cls.__name__}: `message` is every error's text, not a field"
            )
        cls._herd_struct = None
        _SERVICE_ERRORS[_error_key(cls)] = cls

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message or type(self).__name__)
        self.message = message
        declared = _error_fields(type(self))
        unknown = set(fields) - set(declared)
        missing = set(declared) - set(fields)
        if unknown or missing:
            raise TypeError(
                f"{type(self).__name__}: unknown fields {sorted(unknown)}, "
                f"missing fields {sorted(missing)}"
            )
        for name, value in fields.items():
            setattr(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in _error_fields(type(self))}
        return (_rebuild_error, (type(self), self.message, fields))


def _rebuild_error(cls: type[ServiceError], message: str, fields: dict[str, Any]) -> ServiceError:
    return cls(message, **fields)


def _error_key(cls: type[ServiceError]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _error_fields(cls: type[ServiceError]) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is ServiceError or not (
            isinstance(klass, type) and issubclass(klass, ServiceError)
        ):
            continue
        hints.update(
            {
                name: hint
                for name, hint in typing.get_type_hints(klass).items()
                if name in inspect.get_annotations(klass)
                and typing.get_origin(hint) is not ClassVar
            }
        )
    return hints


def _error_struct(cls: type[ServiceError]) -> type[msgspec.Struct]:
    if cls.__dict__.get("_herd_struct") is None:
        cls._herd_struct = msgspec.defstruct(
            f"{cls.__name__}Fields", list(_error_fields(cls).items()), kw_only=True
        )
    struct = cls._herd_struct
    assert struct is not None
    return struct


def error_to_wire(error: ServiceError) -> tuple[str, dict[str, Any]]:
    """The registry key and the field values of a declared error."""
    return _error_key(type(error)), {n: getattr(error, n) for n in _error_fields(type(error))}


def error_from_wire(key: str, message: str, fields: Any) -> ServiceError | None:
    """Rebuild a declared error from the wire, or None if this process does not know its type
    or the fields do not fit it (a server built against another version of the error)."""
    cls = _SERVICE_ERRORS.get(key)
    if cls is None:
        return None
    try:
        values = msgspec.convert(fields, _error_struct(cls))
    except msgspec.ValidationError:
        return None
    return cls(message, **{f: getattr(values, f) for f in values.__struct_fields__})


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """What `herd.method` declares about a method."""

    idempotent: bool = False
    attempts: int | None = None
    timeout: float | None = None
    admin: bool = False


_OPTIONS_ATTR = "__herd_method__"


def method(
    *,
    idempotent: bool = False,
    attempts: int | None = None,
    timeout: float | None = None,
    admin: bool = False,
) -> Callable[[F], F]:
    """Declare call policy for an interface method.

    Args:
        idempotent: the method is safe to run twice, so a timed-out attempt may be retried on
            another instance. Connect failures and overload refusals are retried either way,
            because the server never ran the request.
        attempts: total attempts including the first (default: the driver's, 2).
        timeout: cap on one attempt in seconds; the call's deadline still bounds it.
        admin: the method changes infrastructure: the server runs it only for callers that
            present its admin token (and refuses it outright when it has none).
    """
    if attempts is not None and attempts < 1:
        raise ConfigurationError("attempts counts the first try too: it must be >= 1")
    options = MethodOptions(idempotent=idempotent, attempts=attempts, timeout=timeout, admin=admin)

    def mark(fn: F) -> F:
        setattr(fn, _OPTIONS_ATTR, options)
        return fn

    return mark


@dataclasses.dataclass(frozen=True, eq=False)
class MethodSpec:
    """Everything herd derived from one interface method."""

    service: str
    name: str
    options: MethodOptions
    params: tuple[str, ...]
    args_type: type[msgspec.Struct]
    result_type: Any
    args_decoder: msgspec.msgpack.Decoder[Any]
    result_decoder: msgspec.msgpack.Decoder[Any]
    keyword_only: tuple[str, ...] = ()
    """The trailing `params` declared after `*`: the server passes them by keyword."""


class Interface:
    """Base class of service interfaces: "the service interface is the service".

    Subclass it with a name to declare a service; subclass the declaration to implement it::

        class Movies(herd.Interface, name="movie"):
            @herd.method(idempotent=True)
            async def presentation(self, videos: list[VideoId]) -> list[PresentationVideo]: ...

        class MovieService(Movies):
            async def presentation(self, videos): ...
    """

    __herd_name__: ClassVar[str]
    __herd_interface__: ClassVar[type[Interface]]

    async def astart(self) -> None:
        """Start what an implementation runs beside its methods (an event subscription);
        `herd.run` calls it once the server listens, before the instance is announced."""

    async def aclose(self) -> None:
        """Release what this object holds: a driver closes its connections and its share of the
        registry watch; an implementation may override it to close the drivers it owns
        (`herd.run` calls it as the process exits)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for reserved in _RESERVED & cls.__dict__.keys():
            if inspect.iscoroutinefunction(cls.__dict__[reserved]) and name is not None:
                raise ConfigurationError(
                    f"{cls.__name__}.{reserved}: the name is taken by every driver's own method"
                )
        if name is not None:
            if not name or not name.replace("-", "").replace("_", "").isalnum():
                raise ConfigurationError(f"service name {name!r}: use letters, digits, - and _")
            cls.__herd_name__ = name
            cls.__herd_interface__ = cls
            _methods_cache.pop(cls, None)
        elif not hasattr(cls, "__herd_interface__"):
            raise ConfigurationError(
                f"{cls.__name__}: declare an interface with a name: "
                f'class {cls.__name__}(herd.Interface, name="...")'
            )


_RESERVED = frozenset({"astart", "aclose"})
_methods_cache: dict[type[Interface], dict[str, MethodSpec]] = {}


def interface_of(obj: type[Interface] | Interface) -> type[Interface]:
    """The interface class an implementation or driver class serves."""
    cls = obj if isinstance(obj, type) else type(obj)
    iface = getattr(cls, "__herd_interface__", None)
    if iface is None:
        raise ConfigurationError(f"{cls.__name__} is not a herd.Interface")
    return typing.cast(type[Interface], iface)


def methods(obj: type[Interface] | Interface) -> dict[str, MethodSpec]:
    """The method specs of an interface, derived once from its annotations."""
    iface = interface_of(obj)
    specs = _methods_cache.get(iface)
    if specs is None:
        specs = {
            name: _spec(iface, name, fn)
            for name, fn in iface.__dict__.items()
            if not name.startswith("_")
            and name not in _RESERVED
            and inspect.iscoroutinefunction(fn)
        }
        if not specs:
            raise ConfigurationError(f"interface {iface.__name__} declares no async methods")
        _methods_cache[iface] = specs
    return specs


def _spec(iface: type[Interface], name: str, fn: Callable[..., Any]) -> MethodSpec:
    where = f"{iface.__name__}.{name}"
    try:
        hints = typing.get_type_hints(fn)
    except NameError as exc:
        raise ConfigurationError(f"{where}: cannot resolve annotation: {exc}") from exc
    signature = inspect.signature(fn)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for param in list(signature.parameters.values())[1:]:
        if param.kind is param.POSITIONAL_ONLY:
            raise ConfigurationError(f"{where}: positional-only parameters have no name to send")
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise ConfigurationError(f"{where}: *args and **kwargs cannot cross the wire")
        if param.name not in hints:
            raise ConfigurationError(f"{where}: parameter {param.name!r} needs a type annotation")
        if param.default is param.empty:
            fields.append((param.name, hints[param.name]))
        else:
            fields.append((param.name, hints[param.name], param.default))
    if "return" not in hints:
        raise ConfigurationError(f"{where}: the result needs a type annotation")
    # forbid_unknown_fields: extra trailing arguments are refused, not silently dropped.
    args_type = msgspec.defstruct(
        f"{iface.__name__}_{name}_args", fields, array_like=True, forbid_unknown_fields=True
    )
    result_type = hints["return"]
    try:
        args_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(args_type)
        result_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(result_type)
    except TypeError as exc:
        raise ConfigurationError(f"{where}: type cannot cross the wire: {exc}") from exc
    return MethodSpec(
        service=iface.__herd_name__,
        name=name,
        options=getattr(fn, _OPTIONS_ATTR, MethodOptions()),
        params=tuple(f[0] for f in fields),
        args_type=args_type,
        result_type=result_type,
        args_decoder=args_decoder,
        result_decoder=result_decoder,
        keyword_only=tuple(
            p.name for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY
        ),
    )
