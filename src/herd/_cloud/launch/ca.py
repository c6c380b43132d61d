"""The app's certificate authority: `herd up` makes one, in memory, and issues every process it
starts a certificate naming its identity (a SPIFFE-style URI SAN).

The authority's key never leaves the control plane's memory, so a new `herd up` is a new
authority and every certificate of the previous one stops working. Each identity's files go in
a directory of its own (mode 700, files mode 600): its certificate, its key, and the
authority's certificate to check peers with.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from herd._model.identity import Identity
from herd._wire.tls import CA_FILE, CERT_FILE, KEY_FILE

#: How long certificates are valid: longer than any local cloud runs; the authority dies first.
VALIDITY = datetime.timedelta(days=30)
#: Certificates are valid from a little before they are made, so clocks a little apart agree.
_BACKDATE = datetime.timedelta(minutes=5)


def _key() -> ec.EllipticCurvePrivateKey:
    # P-256: the cheapest handshake signatures that every TLS stack accepts.
    return ec.generate_private_key(ec.SECP256R1())


class CertificateAuthority:
    """Issues certificates for one app's identities."""

    def __init__(self, app: str) -> None:
        self.app = app
        self._key = _key()
        now = datetime.datetime.now(datetime.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"herd {app} authority")])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    def issue(self, identity: Identity) -> tuple[bytes, bytes]:
        """A certificate naming `identity` and its key, both PEM."""
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.instance)])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(identity.uri),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return certificate.public_bytes(serialization.Encoding.PEM), key_pem

    def write(self, identity: Identity, directory: Path) -> Path:
        """Issue `identity`'s certificate into `directory` (made mode 700, files mode 600,
        replacing what was there); returns the directory."""
        certificate, key = self.issue(identity)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        authority = self.certificate.public_bytes(serialization.Encoding.PEM)
        for name, data in ((CA_FILE, authority), (CERT_FILE, certificate), (KEY_FILE, key)):
            path = directory / name
            path.unlink(missing_ok=True)
            # Made with its mode, never widened and narrowed: nobody else can read it at any moment.
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
                f.write(data)
        return directory
