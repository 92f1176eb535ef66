"""The errors of ``thanx_async.webhooks``, both below :class:`~thanx_async.ThanxError`.

The tree (the rest of it is drawn in ``thanx_async._errors``)::

    ThanxError
    ├── InvalidSignatureError      X-Thanx-Signature missing or not the body's HMAC
    └── WebhookPayloadError        a correctly signed body we cannot read

Neither message ever contains the secret, the signature or the body (which
names people): only what is wrong and where.
"""

from __future__ import annotations

from thanx_async._errors import ThanxError

__all__ = ["InvalidSignatureError", "WebhookPayloadError"]


class InvalidSignatureError(ThanxError):
    """A delivery's ``X-Thanx-Signature`` is missing or is not the HMAC of its body.

    Answer such a delivery 401 and act on nothing in it.
    """


class WebhookPayloadError(ThanxError, ValueError):
    """A correctly signed delivery whose body is not a webhook we can read.

    Raised for a body that is not JSON, an envelope without ``event``, or a
    known event whose required fields are missing or of the wrong type (a
    count that is negative, ``failures`` that is not a list...). Unknown
    events are never an error: they become :class:`UnknownEvent`.
    """
