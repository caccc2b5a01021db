"""`python -m flows.tls FOLDER`: a certificate authority and one certificate it signs, for the Dask scheduler,
workers and clients of docker-compose.yml (mutual TLS: each side shows the certificate, each checks the
other's against the authority). Kept in a volume only those services mount; made once, kept if present.

A local cluster needs none of this: `flows.runtime.started_cluster` makes temporary ones in memory.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FILES = ("ca.pem", "node.pem", "node-key.pem")
VALID_DAYS = 825


def certificate(subject: str, key, issuer: str, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
            .sign(issuer_key, hashes.SHA256()))


def make(folder: Path) -> bool:
    """Write the authority and the node certificate and key into `folder`; False if they are there already."""
    if all((folder / name).exists() for name in FILES):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, node_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate("curate-dask-ca", ca_key, "curate-dask-ca", ca_key, ca=True)
    node = certificate("curate-dask", node_key, "curate-dask-ca", ca_key, ca=False)
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "node.pem").write_bytes(node.public_bytes(serialization.Encoding.PEM))
    key = folder / "node-key.pem"
    key.write_bytes(node_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key, 0o600)
    return True


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "certs")
    print(f"{'made' if make(target) else 'kept'} Dask TLS certificates in {target}")
