"""GET a worker's query endpoint, as the clients do."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from sagas.errors import ConfigurationError
from sagas.protocol import TOKEN_ENV

__all__ = ["Answer", "ask"]

Answer = tuple[int, dict[str, Any]]
"""An endpoint's status and JSON body."""


def ask(url: str, headers: dict[str, str], timeout: float) -> Answer | None:
    """GET a query endpoint: (status, JSON body), or ``None`` when it does not answer.

    Raises:
        ConfigurationError: the endpoint wants a token this client does not have.
    """
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = int(exc.code), json.loads(exc.read() or b"{}")
        except (OSError, ValueError, http.client.HTTPException):
            answer = int(exc.code), {}
        finally:
            exc.close()
    except (OSError, ValueError, http.client.HTTPException):
        return None
    if answer[0] == 401:
        sent = "a token it refused" if headers else "no token"
        where = urllib.parse.urlsplit(url).netloc
        raise ConfigurationError(
            f"the query endpoint at {where} wants a bearer token and this client sent "
            f"{sent}: give SagaClient(query_token=...) or set {TOKEN_ENV} to the workers' token"
        )
    return answer
