"""A client assertion (RFC 7523) of the benchmark partner: header.claims signed by openssl with
the partner's key, the DER signature made r||s (ES256). Used by bench/verify.sh and bench/ab.sh.

    python3 bench/partner_assertion.py PARTNER_ID BASE_URL KEY.pem
"""
import base64
import json
import subprocess
import sys
import time
import uuid


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ints(d: bytes) -> list[int]:
    """r and s of a DER ECDSA signature: SEQUENCE { INTEGER r, INTEGER s }."""
    i = 2 if d[1] < 0x80 else 3
    out = []
    for _ in range(2):
        n = d[i + 1]
        out.append(int.from_bytes(d[i + 2 : i + 2 + n], "big"))
        i += 2 + n
    return out


def main() -> None:
    partner, base, key = sys.argv[1:4]
    now = int(time.time())
    header = b64(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
    claims = b64(
        json.dumps(
            {"iss": partner, "sub": partner, "aud": base + "/api/v1/oauth/token",
             "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
        ).encode()
    )
    der = subprocess.run(
        ["openssl", "dgst", "-sha256", "-sign", key], input=f"{header}.{claims}".encode(),
        capture_output=True, check=True,
    ).stdout
    r, s = ints(der)
    print(f"{header}.{claims}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}")


if __name__ == "__main__":
    main()
