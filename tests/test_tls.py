"""A class server over https (`make class`): scripts/tls_cert.sh makes a self-signed certificate
for this machine's names and addresses, Streamlit serves the dashboard with it, and a client
that trusts that certificate gets the page; one that does not is refused (no silent http)."""
from __future__ import annotations

import ssl
import subprocess
import urllib.request

import pytest

from browser_util import streamlit_server
from conftest import ROOT


def test_the_dashboard_is_served_over_https_with_the_setup_certificate(tmp_path):
    tls = tmp_path / "tls"
    subprocess.run(["bash", str(ROOT / "scripts" / "tls_cert.sh"), str(tls)], check=True, capture_output=True)
    san = subprocess.run(["openssl", "x509", "-in", str(tls / "cert.pem"), "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in san and "DNS:localhost" in san
    assert oct((tls / "key.pem").stat().st_mode)[-3:] == "600"
    # idempotent: a second call keeps the certificate
    before = (tls / "cert.pem").read_bytes()
    subprocess.run(["bash", str(ROOT / "scripts" / "tls_cert.sh"), str(tls)], check=True)
    assert (tls / "cert.pem").read_bytes() == before
    with streamlit_server(tmp_path / "artifacts", tls=tls) as url:
        assert url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(tls / "cert.pem"))
        with urllib.request.urlopen(url + "/", context=ctx, timeout=30) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        with pytest.raises(urllib.error.URLError):  # an untrusted client is refused, not downgraded
            urllib.request.urlopen(url + "/", timeout=30, context=ssl.create_default_context())
