"""Discovery documents: RFC 9728 protected-resource metadata, RFC 8414 authorization-server
metadata and the OpenID configuration. The issuer is byte-identical in all of them, in every
token and in every authorization response: ``PUSHGO_PUBLIC_BASE_URL``, else the request's
(forwarded) origin.
"""

from __future__ import annotations

from typing import Any

from pushgo.protocol import oauth as oauth_wire


def protected_resource(base: str) -> dict[str, Any]:
    return {"resource": f"{base}/mcp", "authorization_servers": [base],
            "scopes_supported": list(oauth_wire.SCOPES), "bearer_methods_supported": ["header"],
            "resource_name": "pushgo"}


def authorization_server(base: str, *, dcr: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "issuer": base,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "revocation_endpoint": f"{base}/oauth/revoke",
        "jwks_uri": f"{base}/oauth/jwks.json",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post",
                                                  "client_secret_basic"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_post",
                                                       "client_secret_basic"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(oauth_wire.SCOPES),
        "ui_locales_supported": list(oauth_wire.LOCALES),
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }
    if dcr:
        doc["registration_endpoint"] = f"{base}/oauth/register"
    return doc


def openid_configuration(base: str, *, dcr: bool) -> dict[str, Any]:
    """The RFC 8414 document again, for clients that look here first (the MCP SDKs try both).
    pushgo issues no ID token, so no ID-token field (``subject_types_supported``,
    ``id_token_signing_alg_values_supported``) is claimed; what discovery needs (issuer,
    endpoints, ``response_types_supported``, PKCE methods) is all there."""
    return authorization_server(base, dcr=dcr)
