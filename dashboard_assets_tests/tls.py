"""A TLS endpoint in front of a local Redis, as stunnel or a cloud provider's
TLS listener puts one: the bundled redis-server is built without TLS, and
this lets `rediss://` URLs be tested against a real Redis behind a real
certificate (issued by a throwaway CA)."""

import contextlib
import socket
import ssl
import threading
from pathlib import Path

import trustme

from dashboard_assets.local_servers import free_port


class TlsTerminator:
    """Accepts TLS on a free loopback port and relays the plaintext to `backend_port`."""

    def __init__(self, backend_port: int, ca_file: Path):
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
        self.port = free_port()
        self._backend_port = backend_port
        self._listener = context.wrap_socket(socket.create_server(("127.0.0.1", self.port)), server_side=True)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except ssl.SSLError:
                continue  # a client that refused the certificate
            except OSError:
                return  # closed
            backend = socket.create_connection(("127.0.0.1", self._backend_port))
            for source, sink in ((client, backend), (backend, client)):
                threading.Thread(target=_relay, args=(source, sink), daemon=True).start()

    def close(self) -> None:
        self._listener.close()


def _relay(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    for end in (source, sink):
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
