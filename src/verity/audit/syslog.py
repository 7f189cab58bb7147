"""Syslog forwarding: RFC 5424 messages over UDP (RFC 5426) or TCP with octet-counting
framing (RFC 6587 section 3.4.1, as RFC 5425 uses over TLS).

``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [verity@PEN seq=".." ...] BOM{event}``:
PRI is facility * 8 + severity (facility 13, "log audit", by default; the OCSF
``severity_id`` sets the syslog severity), TIMESTAMP is the event's time in UTC with
milliseconds, MSGID the event kind, the structured data carries the chain position and
the query fields, and MSG is the canonical OCSF JSON in UTF-8 after a BOM. The SD-ID uses
enterprise number 32473, which RFC 5612 reserves for documentation: set yours.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from .errors import AuditExportError
from .store import StoredRecord

BOM = b"\xef\xbb\xbf"
FACILITY_LOG_AUDIT = 13
EXAMPLE_ENTERPRISE = 32473
MAX_UDP_PAYLOAD = 65_507
# OCSF severity_id -> syslog severity (0 emergency ... 7 debug)
_SEVERITY = {0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1, 99: 5}
Protocol = Literal["udp", "tcp"]


def _header_field(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most ``limit``, else ``-``."""
    clean = "".join(c if 33 <= ord(c) <= 126 else "_" for c in (value or ""))[:limit]
    return clean or "-"


def _sd_value(value: object) -> str:
    text = str(value)
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _timestamp(time_ms: int) -> str:
    moment = datetime.fromtimestamp(time_ms / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_rfc5424(
    record: StoredRecord,
    *,
    hostname: str | None = None,
    app_name: str = "verity",
    procid: str | None = None,
    facility: int = FACILITY_LOG_AUDIT,
    enterprise_id: int = EXAMPLE_ENTERPRISE,
) -> bytes:
    """One RFC 5424 message for ``record``."""
    if not 0 <= facility <= 23:
        raise ValueError("syslog facility is 0..23")
    event: dict[str, Any] = record.event()
    verity = event.get("unmapped", {}).get("verity", {})
    severity = _SEVERITY.get(int(event.get("severity_id", 0)), 5)
    who = event.get("user") or event.get("actor", {}).get("user") or {}
    params: dict[str, object] = {
        "seq": record.seq,
        "hash": record.hash.hex(),
        "class_uid": event.get("class_uid"),
        "kind": verity.get("kind"),
        "status": event.get("status"),
        "user": who.get("uid"),
    }
    decision = verity.get("decision") or {}
    params.update(decision_id=decision.get("decision_id"), effect=decision.get("effect"))
    sd = " ".join(f'{k}="{_sd_value(v)}"' for k, v in params.items() if v is not None)
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",
            _timestamp(int(event.get("time", 0))),
            _header_field(hostname or socket.gethostname(), 255),
            _header_field(app_name, 48),
            _header_field(procid or str(os.getpid()), 128),
            _header_field(verity.get("kind"), 32),
            f"[verity@{enterprise_id} {sd}]",
        )
    )
    return header.encode("utf-8") + b" " + BOM + record.body


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 octet-counting frame: ``MSG-LEN SP SYSLOG-MSG``."""
    return str(len(message)).encode("ascii") + b" " + message


class SyslogForwarder:
    """Sends records to a syslog receiver over UDP or TCP (octet-counted)."""

    def __init__(
        self,
        host: str,
        port: int = 514,
        *,
        protocol: Protocol = "udp",
        timeout: float = 5.0,
        **format_options: Any,
    ) -> None:
        """``format_options`` go to ``format_rfc5424`` (hostname, app_name, facility...)."""
        if protocol not in ("udp", "tcp"):
            raise AuditExportError(f"syslog protocol must be udp or tcp, not {protocol!r}")
        self.address = (host, port)
        self.protocol = protocol
        self._timeout = timeout
        self._options = format_options
        self._sock: socket.socket | None = None

    def _socket(self) -> socket.socket:
        if self._sock is None:
            try:
                if self.protocol == "tcp":
                    self._sock = socket.create_connection(self.address, timeout=self._timeout)
                else:
                    family = socket.getaddrinfo(*self.address, type=socket.SOCK_DGRAM)[0][0]
                    self._sock = socket.socket(family, socket.SOCK_DGRAM)
                    self._sock.connect(self.address)
            except OSError as exc:
                raise AuditExportError(f"syslog {self.protocol} {self.address}: {exc}") from exc
        return self._sock

    def send(self, record: StoredRecord) -> None:
        """Format and send one record."""
        message = format_rfc5424(record, **self._options)
        if self.protocol == "udp" and len(message) > MAX_UDP_PAYLOAD:
            raise AuditExportError(f"seq {record.seq}: {len(message)} bytes is too large for UDP")
        payload = octet_counted(message) if self.protocol == "tcp" else message
        try:
            self._socket().sendall(payload)
        except OSError as exc:
            self.close()
            raise AuditExportError(f"syslog {self.protocol} {self.address}: {exc}") from exc

    def send_all(self, records: Iterable[StoredRecord]) -> int:
        """Send every record in order; returns how many were sent."""
        count = 0
        for record in records:
            self.send(record)
            count += 1
        return count

    def close(self) -> None:
        """Close the socket (a later ``send`` reconnects)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SyslogForwarder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
