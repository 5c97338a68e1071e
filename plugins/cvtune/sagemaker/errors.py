"""What an AWS error says, decided in one place: its code and message, "not found", "already exists".

SageMaker answers a missing resource with ``ResourceNotFound`` ("Resource being access is not
found.") for some operations and with a ``ValidationException`` whose message says so for others
(``DescribeTrainingJob``: "Requested resource not found."; ``DescribeModel``: "Could not find
model"); a name that is taken with ``ResourceInUse`` ("Resource being accessed is in use.") or a
``ValidationException`` saying it already exists (botocore's SageMaker client exceptions).
S3 says ``NoSuchKey`` / ``404`` / ``NotFound``.
"""

from __future__ import annotations

NOT_FOUND_CODES = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NotFound", "404"})
ALREADY_EXISTS_CODES = frozenset({"ResourceInUse", "ResourceAlreadyExists", "EntityAlreadyExists"})
_NOT_FOUND_WORDS = ("not found", "does not exist", "could not find")
_EXISTS_WORDS = ("already exist", "must be unique")


def error_code(exc: BaseException) -> str:
    """The ``Error.Code`` of a botocore ``ClientError`` (``""`` for anything else)."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", "") or "")


def error_message(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Message", "") or "")


def is_not_found(exc: BaseException) -> bool:
    """The resource the call named does not exist."""
    code = error_code(exc)
    if code in NOT_FOUND_CODES:
        return True
    message = (error_message(exc) or str(exc)).lower()
    return code == "ValidationException" and any(w in message for w in _NOT_FOUND_WORDS)


def is_already_exists(exc: BaseException) -> bool:
    """The name the call wanted to create is taken."""
    code = error_code(exc)
    if code in ALREADY_EXISTS_CODES:
        return True
    message = (error_message(exc) or str(exc)).lower()
    return bool(code) and any(w in message for w in _EXISTS_WORDS)
