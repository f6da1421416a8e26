"""Throwaway certificates for tests and TLS runs: a CA and certificates it signs.

Made with the distribution's ``openssl`` (no Python dependency), P-256 keys, valid two days.
A node's certificate names its node id (CN and a DNS SAN), ``localhost`` and ``127.0.0.1``,
so one certificate serves its client port (host name checked) and its peer links (node id
checked). Everything lives in the directory given; the caller removes it.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30.0
DAYS = "2"
_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True)
class CertFiles:
    cert: str
    key: str


@dataclass(frozen=True)
class TestCA:
    """A CA whose certificate is :attr:`cert`; :meth:`issue` signs more."""

    __test__ = False  # not a pytest class
    directory: Path
    files: CertFiles
    name: str

    @property
    def cert(self) -> str:
        return self.files.cert

    @classmethod
    def create(cls, directory: Path, name: str = "topgun-test-ca") -> TestCA:
        directory.mkdir(parents=True, exist_ok=True)
        files = CertFiles(str(directory / f"{name}.pem"), str(directory / f"{name}.key"))
        _openssl(
            "req", "-x509", *_KEY, "-keyout", files.key, "-out", files.cert, "-days", DAYS,
            "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        return cls(directory, files, name)

    def issue(self, name: str, hosts: tuple[str, ...] = ("localhost",),
              ips: tuple[str, ...] = ("127.0.0.1",)) -> CertFiles:  # fmt: skip
        """A certificate for ``name`` (CN and DNS SAN) and ``hosts``/``ips``, usable by a
        server and a client alike."""
        base = self.directory / name
        files = CertFiles(f"{base}.pem", f"{base}.key")
        csr, ext = f"{base}.csr", f"{base}.ext"
        sans = [f"DNS:{n}" for n in (name, *hosts)] + [f"IP:{ip}" for ip in ips]
        Path(ext).write_text(
            f"subjectAltName={','.join(sans)}\nbasicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl("req", *_KEY, "-keyout", files.key, "-out", csr, "-subj", f"/CN={name}")
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.files.cert, "-CAkey", self.files.key,
            "-CAcreateserial", "-out", files.cert, "-days", DAYS, "-extfile", ext,
        )  # fmt: skip
        return files

    def node_flags(self, node_id: str) -> list[str]:
        """``topgun node`` flags for TLS on both ports with a new certificate for
        ``node_id`` (what a process cluster over TLS passes to each node)."""
        files = self.issue(node_id)
        return [
            "--tls-cert", files.cert, "--tls-key", files.key,
            "--cluster-tls-cert", files.cert, "--cluster-tls-key", files.key,
            "--cluster-tls-ca", self.cert,
        ]  # fmt: skip


def _openssl(*args: str) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise RuntimeError("TLS test certificates need the openssl command")
    done = subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
