"""Service tokens whose signature the hub verified recently.

The service SDK signs a fresh token per request but keeps the same expiry for a while, so the same
token text comes back many times: remembering it saves the HMAC on most requests. A remembered token
is still checked for expiry and for the rights of the operation each time.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_SIZE = 256


class VerifiedTokens:
    def __init__(self, size: int = DEFAULT_SIZE):
        self._size = size
        self._tokens: OrderedDict[str, tuple[str, int]] = OrderedDict()  # token -> (policy, expiry)

    def policy_of(self, token_text: str, now: float) -> str | None:
        """The policy a remembered, unexpired token was signed for; None otherwise."""
        remembered = self._tokens.get(token_text)
        if remembered is None:
            return None
        policy, expiry = remembered
        if expiry <= now:
            del self._tokens[token_text]
            return None
        self._tokens.move_to_end(token_text)
        return policy

    def remember(self, token_text: str, policy: str, expiry: int) -> None:
        self._tokens[token_text] = (policy, expiry)
        self._tokens.move_to_end(token_text)
        while len(self._tokens) > self._size:
            self._tokens.popitem(last=False)
