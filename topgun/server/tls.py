"""TLS on a node's two ports: ``wss://``/HTTPS for clients, mutual TLS between nodes.

The client port takes a certificate and key (``--tls-cert``/``--tls-key``) and, with
``--tls-client-ca``, requires client certificates signed by that CA. The cluster port takes a
certificate, key and the cluster's CA (``--cluster-tls-*``): both ends of a peer link present
a certificate the cluster CA signed, and a node's id must be one of its certificate's names
(CN or a DNS SAN, checked in :mod:`peer_link`), so the cluster secret alone no longer lets a
stranger join. Peers are dialled by address, not by host name: a peer is identified by its
certificate's names, not by where it listens.

Without these options both ports speak plain text (for development; the node says so once
at start). A TLS handshake must finish within ``handshake_timeout_s``; a plain-text client on
a TLS port fails its handshake and is dropped, nobody else notices.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topgun.server.config import NodeConfig

CLIENT_TLS_OPTIONS = ("tls_cert", "tls_key")
CLUSTER_TLS_OPTIONS = ("cluster_tls_cert", "cluster_tls_key", "cluster_tls_ca")


def _load(context: ssl.SSLContext, what: str, action: Any, *files: str) -> None:
    """Run ``action(*files)``, naming the option and files when they cannot be used."""
    try:
        action(*files)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"{what} {', '.join(files)}: {exc}") from None


def server_context(cert: str, key: str, client_ca: str | None = None) -> ssl.SSLContext:
    """A listening side: our certificate; with ``client_ca`` a client certificate it
    signed is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, "certificate/key", context.load_cert_chain, cert, key)
    if client_ca is not None:
        _load(context, "CA", context.load_verify_locations, client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(
    ca_file: str | None = None,
    *,
    cert: str | None = None,
    key: str | None = None,
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """A dialling side: verifies the server against ``ca_file`` (else the system's CAs),
    host names included unless ``check_hostname`` is off; presents ``cert`` when given."""
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file is not None:
        _load(context, "CA", context.load_verify_locations, ca_file)
    context.check_hostname = check_hostname
    if cert is not None and key is not None:
        _load(context, "certificate/key", context.load_cert_chain, cert, key)
    return context


def certificate_names(peercert: Any) -> set[str]:
    """The names a verified peer certificate carries: its CN and DNS SANs."""
    names: set[str] = set()
    if not isinstance(peercert, dict):
        return names
    for rdn in peercert.get("subject", ()):
        names.update(value for key, value in rdn if key == "commonName")
    names.update(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
    return names


def _given(cfg: NodeConfig, options: tuple[str, ...]) -> bool:
    """Whether a group of options is used; a part of one is a mistake, named here."""
    given = [name for name in options if getattr(cfg, name) is not None]
    if given and len(given) != len(options):
        missing = ", ".join("--" + n.replace("_", "-") for n in options if n not in given)
        raise ValueError(f"TLS needs {missing} too")
    return bool(given)


@dataclass(frozen=True)
class NodeTls:
    """The TLS contexts of one node, loaded once at start (a bad file stops the node)."""

    client: ssl.SSLContext | None
    """The client port's; None: plain ``ws://`` and HTTP."""
    cluster_server: ssl.SSLContext | None
    """The cluster port's, requiring a certificate the cluster CA signed; None: plain."""
    cluster_dial: ssl.SSLContext | None
    """What we present and verify when we dial a peer; None: plain."""
    handshake_timeout_s: float

    @classmethod
    def load(cls, cfg: NodeConfig) -> NodeTls:
        client = cluster_server = cluster_dial = None
        if _given(cfg, CLIENT_TLS_OPTIONS):
            assert cfg.tls_cert is not None and cfg.tls_key is not None
            client = server_context(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca)
        elif cfg.tls_client_ca is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        if _given(cfg, CLUSTER_TLS_OPTIONS):
            cert, key, ca = cfg.cluster_tls_cert, cfg.cluster_tls_key, cfg.cluster_tls_ca
            assert cert is not None and key is not None and ca is not None
            cluster_server = server_context(cert, key, ca)
            cluster_dial = client_context(ca, cert=cert, key=key, check_hostname=False)
        return cls(client, cluster_server, cluster_dial, cfg.handshake_timeout_s)

    @property
    def client_scheme(self) -> str:
        return "ws" if self.client is None else "wss"

    def peer_url(self, address: str) -> str:
        return f"{'ws' if self.cluster_dial is None else 'wss'}://{address}"

    def _listen(self, context: ssl.SSLContext | None) -> dict[str, Any]:
        if context is None:
            return {}
        return {"ssl": context, "ssl_handshake_timeout": self.handshake_timeout_s}

    @property
    def client_listen(self) -> dict[str, Any]:
        """Keyword arguments of ``serve`` for the client port."""
        return self._listen(self.client)

    @property
    def cluster_listen(self) -> dict[str, Any]:
        """Keyword arguments of ``serve`` for the cluster port."""
        return self._listen(self.cluster_server)

    def plain_text_warning(self) -> str | None:
        """What a node says once at start about the ports that run without TLS."""
        plain = [
            what
            for what, context in (
                ("client port", self.client),
                ("cluster links", self.cluster_server),
            )
            if context is None
        ]
        if not plain:
            return None
        return f"{' and '.join(plain)} in plain text (no TLS): fit for development only"
