"""Request validation: botocore's model of the SageMaker API, plus what botocore's ``ParamValidator`` skips.

``ParamValidator`` checks types, required members, enums and minimums, but not ``max`` lengths and
values nor ``pattern`` constraints; SageMaker checks them server-side and answers
``ValidationException`` with "Value '…' at '…' failed to satisfy constraint: …". This module walks
the operation's input shape and applies them all, so a job name like ``fold_1``, a tag key with a
``#``, a 2501-character hyperparameter or more than 100 hyperparameters are refused as AWS refuses
them. Java-style ``\\p{L}`` / ``\\p{Z}`` / ``\\p{N}`` classes in patterns become Python's Unicode
``\\w`` / ``\\s`` (slightly wider: it also admits ``_``, which the tag pattern allows anyway).

Where AWS's pages disagree the stricter reading wins: the model allows
``KeepAlivePeriodInSeconds`` up to 21600, but the warm-pools guide says "The maximum length of time
allowed for the KeepAlivePeriodInSeconds is 3600 seconds (60 minutes)" — the emulator refuses more
than 3600.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

KEEP_ALIVE_MAX_S = 3600


class RequestInvalid(Exception):
    """Answered as ``ValidationException`` (HTTP 400)."""

    code = "ValidationException"


@lru_cache(maxsize=1)
def service_model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("sagemaker")


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern | None:
    translated = pattern.replace(r"\p{L}", r"\w").replace(r"\p{Z}", r"\s").replace(r"\p{N}", r"\d")
    translated = translated.replace(r"\p{M}", "").replace(r"\p{P}", r"\W")
    try:
        return re.compile(translated, re.DOTALL)
    except re.error:
        return None  # a pattern Python cannot read is not checked (none of cvtune's fields)


def _path_name(path: str) -> str:
    # AWS names members in camelCase in its messages ('trainingJobName', 'resourceConfig.keepAlive…')
    return ".".join(p[:1].lower() + p[1:] for p in path.split(".")) if path else ""


def _constraints(value: Any, shape: Any, path: str, errors: list[str]) -> None:
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return
        for name, member in shape.members.items():
            if name in value:
                _constraints(value[name], member, f"{path}.{name}" if path else name, errors)
    elif kind == "list":
        if isinstance(value, list):
            if "max" in meta and len(value) > meta["max"]:
                errors.append(f"Value '{value}' at '{_path_name(path)}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']}")
            for i, item in enumerate(value):
                _constraints(item, shape.member, f"{path}.{i + 1}", errors)
    elif kind == "map":
        if isinstance(value, dict):
            if "max" in meta and len(value) > meta["max"]:
                errors.append(f"Value at '{_path_name(path)}' failed to satisfy constraint: Map must have at most {meta['max']} entries")
            for key, item in value.items():
                _constraints(key, shape.key, f"{path}.key", errors)
                _constraints(item, shape.value, f"{path}.{key}", errors)
    elif kind == "string":
        if isinstance(value, str):
            if "max" in meta and len(value) > meta["max"]:
                errors.append(f"Value '{value[:64]}' at '{_path_name(path)}' failed to satisfy constraint: Member must have length less than or equal to {meta['max']}")
            pattern = meta.get("pattern")
            compiled = _compiled(pattern) if pattern else None
            if compiled is not None and not compiled.fullmatch(value):
                errors.append(f"Value '{value[:64]}' at '{_path_name(path)}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}")
    elif kind in ("integer", "long", "float", "double"):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and "max" in meta and value > meta["max"]:
            errors.append(f"Value '{value}' at '{_path_name(path)}' failed to satisfy constraint: Member must have value less than or equal to {meta['max']}")


def constraint_errors(operation: str, params: dict[str, Any]) -> list[str]:
    """What SageMaker refuses beyond botocore's checks (patterns, maximums, keep-alive); [] if nothing.

    Also what cvtune's dry run checks (:func:`cvtune.sagemaker.requests.validate`)."""
    shape = service_model().operation_model(operation).input_shape
    errors: list[str] = []
    if shape is not None:
        _constraints(params, shape, "", errors)
    keep_alive = (params.get("ResourceConfig") or {}).get("KeepAlivePeriodInSeconds")
    if operation in ("CreateTrainingJob", "UpdateTrainingJob") and keep_alive is not None and keep_alive > KEEP_ALIVE_MAX_S:
        errors.append(
            f"Value '{keep_alive}' at 'resourceConfig.keepAlivePeriodInSeconds' failed to satisfy constraint: "
            f"Member must have value less than or equal to {KEEP_ALIVE_MAX_S}"
        )
    return errors


def validate(operation: str, params: dict[str, Any]) -> None:
    """Raise :class:`RequestInvalid` as SageMaker would for ``params`` of ``operation``."""
    from botocore.validate import ParamValidator

    shape = service_model().operation_model(operation).input_shape
    if shape is None:
        return
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise RequestInvalid(report.generate_report())
    errors = constraint_errors(operation, params)
    if errors:
        head = f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} detected: "
        raise RequestInvalid(head + "; ".join(errors))
