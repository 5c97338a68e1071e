"""The option schema of a platform: the keys of the ``cvtune`` connection extra, one model per backend.

One pydantic model per backend (:class:`cvtune.local.options.LocalOptions`,
:class:`cvtune.sagemaker.options.SageMakerOptions`) serves the connection extra, ``cvtune tune
--backend-config`` and the documentation tables (:func:`options_table`; a test keeps the README and
docs/sagemaker.md equal to it). :func:`parse_options` turns pydantic's errors into
:class:`~cvtune.errors.ConfigError`'s ``field: problem — fix`` with "did you mean" for a typo.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from cvtune.errors import ConfigError

M = TypeVar("M", bound="Options")


def option(default: Any = None, *, what: str, shown: str | None = None, fix: str | None = None, **constraints: Any) -> Any:
    """A documented option: ``what`` for the docs table, ``shown`` the default as the docs say it,
    ``fix`` the advice of an error."""
    extra: dict[str, JsonValue] = {"what": what}
    if shown is not None:
        extra["shown"] = shown
    if fix:
        extra["fix"] = fix
    return Field(default, json_schema_extra=extra, **constraints)


class Options(BaseModel):
    """Keys every backend takes. Unknown keys are errors, so a typo never falls back to a default."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    #: what the docs table says about the ``backend`` key
    backend_doc: ClassVar[str] = ""

    artifact_root: str | None = option(
        what="folds, ledgers, models, predictions, reports (a local directory or `s3://bucket/prefix`)",
        shown="`$CVTUNE_HOME`, else `$AIRFLOW_HOME/cvtune-artifacts`", min_length=1,
    )
    aws_conn_id: str | None = option(
        "aws_default",
        what="the Airflow AWS connection whose credentials (keys, session token, role, `endpoint_url`) "
        "reach `s3://` artifacts and AWS; `null`: boto3's default chain",
        min_length=1,
    )
    region_name: str | None = option(what="AWS region, e.g. `\"eu-west-1\"`", shown="the AWS connection's / environment's",
                                     min_length=1)

    def given(self) -> dict[str, Any]:
        """The options set explicitly (what the extra said), without the schema's defaults."""
        return {k: getattr(self, k) for k in self.model_fields_set}


def parse_options(model: type[M], extra: Mapping[str, Any], *, source: str, backend: str) -> M:
    """``extra`` validated by ``model``; the first problem as a ConfigError naming ``source.key``."""
    if not isinstance(extra, Mapping):
        raise ConfigError(source, f"expected a mapping of settings, got {type(extra).__name__}")
    try:
        return model.model_validate(dict(extra))
    except ValidationError as exc:
        raise _config_error(model, exc, source, backend) from None


def _config_error(model: type[Options], exc: ValidationError, source: str, backend: str) -> ConfigError:
    error = exc.errors()[0]
    raised = (error.get("ctx") or {}).get("error")
    if isinstance(raised, ConfigError):  # a model validator's check across keys: it names its key
        return ConfigError(f"{source}.{raised.field}", raised.problem, raised.fix)
    loc = [str(p) for p in error["loc"]]
    key = loc[0] if loc else ""
    name = f"{source}.{'.'.join(loc)}" if loc else source
    value = error.get("input")
    known = list(model.model_fields)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(sorted(known))}"
        return ConfigError(name, f"unknown setting for the {backend} backend", hint)
    field = model.model_fields.get(key)
    extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
    fix = str(extra["fix"]) if extra.get("fix") else None
    bounds = _bounds(field)
    kind = error["type"]
    if kind in ("int_type", "int_parsing", "int_from_float"):
        problem = f"expected an integer, got {value!r}"
    elif kind in ("float_type", "float_parsing"):
        problem = f"expected a {'non-negative ' if bounds[0] == 0 else ''}number, got {value!r}"
    elif kind == "bool_type":
        problem = f"expected true or false, got {value!r}"
    elif kind == "string_type":
        problem = f"expected a string, got {value!r}"
    elif kind == "string_too_short":
        problem = f"expected a non-empty string, got {value!r}"
    elif kind in ("list_type", "tuple_type"):
        problem = f"expected a list, got {value!r}"
    elif kind in ("dict_type", "mapping_type", "model_type", "model_attributes_type"):
        problem = f"expected a mapping, got {value!r}"
    elif kind == "literal_error":
        allowed = error.get("ctx", {}).get("expected", "")
        problem = f"must be one of {allowed.replace(' or ', ', ').replace(chr(39), '')}, got {value!r}"
    elif kind == "greater_than":
        problem = f"must be greater than {error.get('ctx', {}).get('gt')}, got {value!r}"
    elif kind in ("greater_than_equal", "less_than_equal", "less_than"):
        low, high = bounds
        if low is not None and high is not None:
            problem = f"must be between {low} and {high}, got {value}"
        elif low == 0 and kind.startswith("greater"):
            problem = f"expected a non-negative number, got {value!r}"
        elif low == 1 and kind.startswith("greater"):
            problem = f"must be a positive integer, got {value!r}"
        else:
            problem = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}"
    else:
        problem = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {value!r}"
    return ConfigError(name, problem, fix)


def _bounds(field: Any) -> tuple[Any, Any]:
    low = high = None
    for meta in getattr(field, "metadata", []) or []:
        low = getattr(meta, "ge", low) if getattr(meta, "ge", None) is not None else low
        high = getattr(meta, "le", high) if getattr(meta, "le", None) is not None else high
    return low, high


def options_table(model: type[Options]) -> str:
    """The markdown table of ``model``'s keys (``| key | default | what |``), as the docs show it."""
    import json

    rows = [("`backend`", '`"local"`', model.backend_doc)]
    for key, field in model.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if "shown" in extra:
            default = str(extra["shown"])
        elif field.is_required():
            default = "— (required)"
        elif field.default is None:
            default = "—"
        else:
            default = f"`{json.dumps(field.default)}`"
        rows.append((f"`{key}`", default, str(extra.get("what", ""))))
    lines = ["| key | default | what |", "| --- | --- | --- |"]
    lines += [f"| {k} | {d} | {w} |" for k, d, w in rows]
    return "\n".join(lines)
