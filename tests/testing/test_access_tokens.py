"""The access-token table MockFCM and MockWNS share: issue, the Bearer check, revoke, expire."""

from __future__ import annotations

from pushgo.testing.access_tokens import AccessTokens


def test_bearer_check_follows_issue_expiry_and_revocation() -> None:
    now = [1000.0]
    tokens = AccessTokens("mock.", lambda: now[0])
    token = tokens.issue(60)
    assert token.startswith("mock.") and tokens.valid() == [token]
    assert tokens.accepts(f"Bearer {token}") and tokens.accepts(f"bearer  {token} ")
    assert not tokens.accepts(f"Basic {token}") and not tokens.accepts(None)
    assert not tokens.accepts("Bearer mock.forged")
    assert tokens.accepts("Bearer mock.forged", check=False)
    assert not tokens.accepts("Bearer ", check=False)
    now[0] += 60  # at its expiry
    assert not tokens.accepts(f"Bearer {token}") and tokens.valid() == []
    fresh = tokens.issue(60)
    tokens.expire()
    assert not tokens.accepts(f"Bearer {fresh}")
    again = tokens.issue(60)
    tokens.revoke()
    assert not tokens.accepts(f"Bearer {again}") and tokens.valid() == []
