"""The app signs and verifies tokens with the JWT secret exactly as the stack generates it.

CloudFormation builds the secret from the template's ``GenerateSecretString``: the template JSON
plus one generated top-level field. This test builds such a value from the synthesized template
(a real random key in the generator's charset and length), serves it through a stubbed Secrets
Manager client, and runs the app's own issue/verify path on the ``dev`` stage.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from synth_support import Synth


class _FakeSecretsManager:
    def __init__(self, arn: str, value: str) -> None:
        self.arn = arn
        self.value = value

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        assert SecretId == self.arn
        return {"ARN": self.arn, "SecretString": self.value}


def generated_secret(generator: dict[str, Any]) -> str:
    """What Secrets Manager stores for this ``GenerateSecretString`` (hex charset, as configured)."""
    alphabet = sorted(set("0123456789abcdefghijklmnopqrstuvwxyz") - set(generator["ExcludeCharacters"]))
    assert alphabet == list("0123456789abcdef")
    value = "".join(secrets.choice(alphabet) for _ in range(generator["PasswordLength"]))
    doc = json.loads(generator["SecretStringTemplate"])
    doc[generator["GenerateStringKey"]] = value
    return json.dumps(doc)


def test_app_issues_and_verifies_tokens_with_the_generated_secret(dev: Synth, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import tokens
    from chalicelib.store import keys

    secret = next(r for r in dev.template_json["Resources"].values() if r["Type"] == "AWS::SecretsManager::Secret")
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:sparkgate-jwt-AbCdEf"
    fake = _FakeSecretsManager(arn, generated_secret(secret["Properties"]["GenerateSecretString"]))
    monkeypatch.setattr(keys, "client", lambda service: fake)
    monkeypatch.setenv("SPARKGATE_STAGE", "dev")
    monkeypatch.setenv("SPARKGATE_JWT_SECRET_ARN", arn)
    keys.forget_cached_keys()
    try:
        token, ttl = tokens.issue_token(tokens.Principal(user_id="u-1", username="alice"))
        assert ttl == 7 * 24 * 3600
        claims = tokens.decode_token(token)  # the signature half of verify_token (no table here)
        assert (claims["sub"], claims["name"]) == ("u-1", "alice")
    finally:
        keys.forget_cached_keys()
