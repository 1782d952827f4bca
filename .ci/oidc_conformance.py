"""Conformance of dancu's OpenID Connect provider, checked with an independent client library
(authlib) against a real running `dancu serve`: discovery -> authorization request with PKCE
(S256) -> the login page (personal ID, then the one-time code read from the development channel
file) -> token (client_secret_basic) -> ID token verified against the JWKS (iss, aud, exp, iat,
nonce) -> userinfo; then the abuse cases a client sees: redirect URI mismatch (an error page, no
redirect), code replay, wrong PKCE verifier; then refresh tokens (rotated on use, a spent one
revoking the session) and RP-initiated logout (end_session_endpoint).

Usage: oidc_conformance.py BASE_URL DATA_DIR ID_FILE ADMIN_USER ADMIN_PASSWORD
(ID_FILE: sample personal IDs, one a line; the first of a living person is used)
"""

import html.parser
import re
import sys
import time
import urllib.parse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

base, data_dir, id_file, admin_user, admin_password = sys.argv[1:6]
REDIRECT = "http://127.0.0.1:9/callback"  # never contacted: the redirect is read, not followed
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


class Form(html.parser.HTMLParser):
    """The inputs of the login page's form."""

    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


def hidden_fields(page):
    f = Form()
    f.feed(page)
    return f.fields


def code_for(challenge):
    for _ in range(50):
        with open(f"{data_dir}/citizen-codes.log", encoding="utf-8") as fh:
            for line in reversed(fh.read().splitlines()):
                parts = line.split(" ")
                if len(parts) == 3 and parts[1] == challenge:
                    return parts[2]
        time.sleep(0.1)
    raise SystemExit("no code was delivered for the challenge")


# --- register a portal (partner administrator) ----------------------------------------------------
r = requests.post(f"{base}/api/v1/auth/login", json={"username": admin_user, "password": admin_password}, timeout=10)
r.raise_for_status()
admin = {"Authorization": "Bearer " + r.json()["token"]}
personal_id = None
for candidate in open(id_file, encoding="utf-8").read().split():
    p = requests.get(f"{base}/api/v1/persons/{candidate}", headers=admin, timeout=10)
    if p.status_code == 200 and p.json()["person"]["status"] == "active":
        personal_id = candidate
        break
if personal_id is None:
    raise SystemExit("no living person among the sample IDs")
pem = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
client_id = "portal-conformance"
r = requests.post(
    f"{base}/api/v1/partners",
    headers=admin,
    timeout=10,
    json={
        "id": client_id,
        "name": "Cổng dịch vụ công (kiểm thử)",
        "kind": "portal",
        "legal_basis": "Nghị định 42/2022/NĐ-CP",
        "services": [],
        "fields": ["full_name", "birth_date", "sex"],
        "consent_required": True,
        "rate_limit_per_second": 50,
        "valid_until": "2099-01-01T00:00:00Z",
        "public_key_pem": pem,
        "oidc": {
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
            "subject_type": "pairwise",
        },
    },
)
check(r.status_code == 201, f"portal registered ({r.status_code})")
client_secret = r.json()["client_secret"]

# --- discovery -----------------------------------------------------------------------------------
meta = requests.get(f"{base}/.well-known/openid-configuration", timeout=10).json()
check(meta["issuer"] == base, "discovery: issuer is the base URL")
check("S256" in meta["code_challenge_methods_supported"], "discovery: PKCE S256")
check("client_secret_basic" in meta["token_endpoint_auth_methods_supported"], "discovery: client_secret_basic")
jwks = JsonWebKey.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())


def login(session, verifier, nonce, consent=True):
    """Authorization request, login page, code; the redirect's URL."""
    uri, state = session.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce)
    q = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    check(q["code_challenge_method"] == ["S256"] and "code_challenge" in q, "authlib sends a PKCE S256 challenge")
    page = requests.get(uri, timeout=10)
    check(page.status_code == 200 and "Số định danh cá nhân" in page.text, "the login page is shown")
    form = hidden_fields(page.text)
    form.update({"personal_id": personal_id})
    page = requests.post(meta["authorization_endpoint"], data=form, timeout=10, allow_redirects=False)
    check(page.status_code == 200 and "Nhập mã xác thực" in page.text, "the code page is shown")
    form = hidden_fields(page.text)
    form["code"] = code_for(form["challenge"])
    if consent:
        form["consent"] = "yes"
    back = requests.post(meta["authorization_endpoint"], data=form, timeout=10, allow_redirects=False)
    check(back.status_code == 303, f"redirected back to the portal ({back.status_code})")
    location = back.headers["Location"]
    check(location.startswith(REDIRECT + "?"), "to the registered redirect URI")
    params = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)
    check(params.get("state") == [state], "state is returned")
    check(params.get("iss") == [base], "iss is returned (RFC 9207)")
    return location


def session():
    return OAuth2Session(
        client_id,
        client_secret,
        scope="openid profile",
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )


# --- the flow ----------------------------------------------------------------------------------------
s = session()
verifier, nonce = generate_token(64), generate_token(20)
location = login(s, verifier, nonce)
token = s.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
check("id_token" in token and token["token_type"].lower() == "bearer", "token response with an ID token")
claims = jwt.decode(
    token["id_token"],
    jwks,
    claims_cls=CodeIDToken,
    claims_options={"iss": {"essential": True, "value": base}},
    claims_params={"nonce": nonce, "client_id": client_id},
)
claims.validate()  # iss, aud, exp, iat, nonce, auth_time (raises on failure)
check(True, "ID token signature verifies against the JWKS and its claims validate")
check(claims.header["alg"] == "ES256", "ID token: ES256")
check(claims["sub"] != personal_id, "sub is a pairwise pseudonym, not the personal ID")
check(bool(claims.get("name")) and bool(claims.get("birthdate")), "profile claims in the ID token")
check("personal_id" not in claims and "address" not in claims, "no claims beyond the registration")
info = s.get(meta["userinfo_endpoint"], timeout=10)
check(info.status_code == 200 and info.json()["sub"] == claims["sub"], "userinfo: the same sub")
check(info.json().get("name") == claims["name"], "userinfo: the same name")

# --- abuse ---------------------------------------------------------------------------------------------
# Code replay: refused, and the access token issued for the code is revoked.
try:
    s2 = session()
    s2.fetch_token(meta["token_endpoint"], authorization_response=location, code_verifier=verifier)
    check(False, "a replayed code is refused")
except Exception as e:  # authlib raises OAuthError
    check("invalid_grant" in str(e), f"a replayed code is refused ({e})")
check(s.get(meta["userinfo_endpoint"], timeout=10).status_code == 401, "the replayed code's token is revoked")

# Wrong PKCE verifier.
s3 = session()
v3 = generate_token(64)
loc3 = login(s3, v3, generate_token(20), consent=False)  # the consent is in force from the first login
try:
    s3.fetch_token(meta["token_endpoint"], authorization_response=loc3, code_verifier=generate_token(64))
    check(False, "a wrong code_verifier is refused")
except Exception as e:
    check("invalid_grant" in str(e), f"a wrong code_verifier is refused ({e})")

# Redirect URI mismatch: an error page here, never a redirect.
s4 = OAuth2Session(client_id, client_secret, scope="openid", redirect_uri="http://127.0.0.1:9/other",
                   code_challenge_method="S256")
uri, _ = s4.create_authorization_url(meta["authorization_endpoint"], code_verifier=generate_token(64))
r = requests.get(uri, timeout=10, allow_redirects=False)
check(r.status_code == 400 and "Location" not in r.headers, "redirect URI mismatch: an error page, no redirect")

# --- refresh tokens (RFC 6749 section 6) and RP-initiated logout -------------------------------------
check("refresh_token" in meta["grant_types_supported"], "discovery: the refresh_token grant")
check(meta.get("end_session_endpoint") == f"{base}/oidc/logout", "discovery: end_session_endpoint")


def logged_in():
    """A new session of the portal: its token response."""
    sess = session()
    v, n = generate_token(64), generate_token(20)
    loc = login(sess, v, n, consent=False)
    return sess, sess.fetch_token(meta["token_endpoint"], authorization_response=loc, code_verifier=v)


def refused(call, what):
    try:
        call()
        check(False, what)
    except Exception as e:  # authlib raises OAuthError
        check("invalid_grant" in str(e), f"{what} ({e})")


s5, t5 = logged_in()
first_refresh = t5.get("refresh_token")
check(bool(first_refresh), "a refresh token comes with the tokens")
first_claims = jwt.decode(t5["id_token"], jwks)
t6 = s5.refresh_token(meta["token_endpoint"])
check(t6["refresh_token"] != first_refresh, "refresh: a new refresh token (rotated on use)")
c6 = jwt.decode(t6["id_token"], jwks, claims_options={"iss": {"essential": True, "value": base}})
c6.validate()
check(c6["sub"] == first_claims["sub"] and c6["sid"] == first_claims["sid"], "refresh: the same sub and sid")
check(c6["auth_time"] == first_claims["auth_time"], "refresh: auth_time of the original login")
check(s5.get(meta["userinfo_endpoint"], timeout=10).status_code == 200, "userinfo with the refreshed access token")
refused(lambda: s5.refresh_token(meta["token_endpoint"], refresh_token=first_refresh),
        "a spent refresh token is refused")
check(s5.get(meta["userinfo_endpoint"], timeout=10).status_code == 401, "its reuse revoked the session's access token")
refused(lambda: s5.refresh_token(meta["token_endpoint"], refresh_token=t6["refresh_token"]),
        "and the session's current refresh token")

s7, t7 = logged_in()
r = requests.get(meta["end_session_endpoint"], timeout=10, allow_redirects=False,
                 params={"id_token_hint": t7["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/other"})
check(r.status_code == 400 and "Location" not in r.headers, "logout: an unregistered redirect URI is refused")
r = requests.get(meta["end_session_endpoint"], timeout=10, allow_redirects=False,
                 params={"id_token_hint": t7["id_token"], "post_logout_redirect_uri": REDIRECT, "state": "bye"})
check(r.status_code == 303 and r.headers.get("Location") == REDIRECT + "?state=bye",
      "logout: back to the portal with its state")
check(s7.get(meta["userinfo_endpoint"], timeout=10).status_code == 401, "logout: the access token stops working")
refused(lambda: s7.refresh_token(meta["token_endpoint"]), "logout: the refresh token stops working")

if failures:
    print(f"oidc-conformance: FAILED ({len(failures)}): " + "; ".join(failures))
    sys.exit(1)
print("oidc-conformance: passed")
