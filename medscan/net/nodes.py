"""Remote DICOM nodes: ``AE@host:port`` or a name from the nodes file.

The nodes file (TOML) is ``$MEDSCAN_NODES`` or ``~/.config/medscan/nodes.toml``::

    [nodes.pacs]
    ae = "ORTHANC"
    host = "10.0.0.5"
    port = 4242
    # optional TLS: the CA that signed the peer's certificate, and ours if the peer asks for one
    tls_ca = "/etc/medscan/ca.pem"
    tls_cert = "/etc/medscan/medscan.pem"
    tls_key = "/etc/medscan/medscan.key"
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from medscan.scan import MedscanError

NODES_ENV = "MEDSCAN_NODES"
_ADDRESS = re.compile(r"^(?P<ae>[^@]{1,64})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(?P<port>\d{1,5})$")
_AE_CHARS = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash, no control characters


@dataclass(frozen=True)
class Node:
    """A remote application entity; ``name`` is what error messages call it."""

    name: str
    ae_title: str
    host: str
    port: int
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def address(self) -> str:
        """The node as ``AE@host:port``."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    @property
    def uses_tls(self) -> bool:
        """True when the node is reached over TLS (a CA or a client certificate is configured)."""
        return bool(self.tls_ca or self.tls_cert)


def nodes_file() -> Path:
    """Where named nodes are read from and written to."""
    configured = os.environ.get(NODES_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "medscan" / "nodes.toml"


def check_ae_title(title: str, what: str = "AE title") -> str:
    """Check an application entity title: 1-16 printable characters, no backslash.

    Args:
        title: the title; surrounding spaces are removed.
        what: what the message calls it, e.g. ``"calling AE title"``.

    Returns:
        The stripped title.

    Raises:
        MedscanError: not a valid AE title.
    """
    title = title.strip()
    if not _AE_CHARS.match(title):
        raise MedscanError(title or "''", f"not a valid {what} (1-16 printable characters, no backslash)")
    return title


def load_nodes(path: Path | None = None) -> dict[str, Node]:
    """Every node in the nodes file (none when it does not exist); a malformed file is a one-line error."""
    path = path or nodes_file()
    if not path.exists():
        return {}
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MedscanError(path, f"cannot read the nodes file: {exc}") from None
    table = raw.get("nodes", {})
    if not isinstance(table, dict):
        raise MedscanError(path, "'nodes' must be a table of [nodes.NAME] entries")
    nodes = {}
    for name, entry in table.items():
        if not isinstance(entry, dict) or not {"ae", "host", "port"} <= set(entry):
            raise MedscanError(path, f"node '{name}' needs ae, host and port")
        port = entry["port"]
        if not isinstance(port, int) or not 0 < port < 65536:
            raise MedscanError(path, f"node '{name}': port must be an integer from 1 to 65535")
        nodes[name] = Node(name=name, ae_title=check_ae_title(str(entry["ae"])), host=str(entry["host"]), port=port,
                           tls_ca=entry.get("tls_ca"), tls_cert=entry.get("tls_cert"), tls_key=entry.get("tls_key"))
    return nodes


def save_nodes(nodes: dict[str, Node], path: Path | None = None) -> Path:
    """Write the nodes file (atomically: a reader never sees half of it)."""
    path = path or nodes_file()
    lines = []
    for name, node in nodes.items():
        lines.append(f"[nodes.{_toml_key(name)}]")
        lines += [f"ae = {_toml_str(node.ae_title)}", f"host = {_toml_str(node.host)}", f"port = {node.port}"]
        lines += [f"{key} = {_toml_str(value)}" for key, value in
                  (("tls_ca", node.tls_ca), ("tls_cert", node.tls_cert), ("tls_key", node.tls_key)) if value]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, path)
    return path


def parse_node(text: str, path: Path | None = None) -> Node:
    """``AE@host:port`` (IPv6 in brackets), else a node name from the nodes file."""
    text = text.strip()
    match = _ADDRESS.match(text)
    if match:
        port = int(match["port"])
        if not 0 < port < 65536:
            raise MedscanError(text, "port must be from 1 to 65535")
        host = match["host"].strip("[]")
        return Node(name=text, ae_title=check_ae_title(match["ae"]), host=host, port=port)
    nodes = load_nodes(path)
    if text in nodes:
        return nodes[text]
    where = path or nodes_file()
    known = f" (known: {', '.join(sorted(nodes))})" if nodes else ""
    raise MedscanError(text, f"not AE@host:port and not a node in {where}{known}")


def _toml_str(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml_str(name)
