"""The chaos run's security mode (`run.py --security plaintext|ssl|sasl_ssl`): the one place that
knows which flags the nodes get, which properties the Kafka clients use and which credentials every
`chronikctl` call passes.

- `plaintext`: nothing (the nodes, clients and `chronikctl` exactly as before security existed).
- `ssl` and `sasl_ssl`: a secured control plane (controllers serve gRPC and HTTP over TLS, with an
  admin and a cluster token; brokers dial them with the CA and the cluster token; `chronikctl` with
  the CA and the admin token) and every broker listener, the inter-broker one included, secured:
  - `sasl_ssl`: SCRAM-SHA-512 users `admin` (the workload, the final read, `chronikctl -C`) and
    `broker` (the followers), created through the controllers with the admin token before any broker
    starts (`cluster.ChaosCluster.create_users`);
  - `ssl`: mutual TLS (`--ssl-client-auth required`), principals from the certificates
    (`User:CN=admin`, `User:CN=broker`).
  Brokers run `--authorizer standard` with those two as the super users and no ACL.

Certificates come from the `openssl` CLI (`chronikctl local up --security` generates its own for
127.0.0.1 only): one CA, one certificate per node naming the node's namespace address (IP SAN, server
and client use: controllers are each other's clients), and the admin's client certificate. Keys,
tokens, passwords and the client properties are written readable by the owner only, into
`RUN_DIR/security/` (kept with the run dir; they are good for this run's addresses and two days).
"""

from __future__ import annotations

import os
import secrets
import ssl
import subprocess
from pathlib import Path

PROTOCOLS = ("plaintext", "ssl", "sasl_ssl")
ADMIN_USER = "admin"
BROKER_USER = "broker"
MECHANISM = "SCRAM-SHA-512"


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])}: {done.stderr.strip()[-400:]}")


def _secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


class ChaosSecurity:
    def __init__(self, protocol: str, run_dir: Path):
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown security mode {protocol!r}; known: {PROTOCOLS}")
        self.protocol = protocol
        self.dir = run_dir / "security"
        self.users: dict[str, str] = {}  # SCRAM user -> password (sasl_ssl)

    @property
    def enabled(self) -> bool:
        return self.protocol != "plaintext"

    @property
    def sasl(self) -> bool:
        return self.protocol == "sasl_ssl"

    @property
    def kafka_protocol(self) -> str:
        return self.protocol.upper()

    def path(self, name: str) -> str:
        return str(self.dir / name)

    # ----- material -----

    def generate(self, nodes: dict[str, str]) -> None:
        """The CA, a certificate per node ({name: address}, e.g. {"controller-1": "198.18.7.11"}), the
        admin's client certificate, the two control-plane tokens and the SCRAM users' passwords."""
        if not self.enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        ca_key, ca = self.path("ca.key"), self.path("ca.pem")
        _openssl("req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Chronik chaos CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for name, addr in nodes.items():
            # Every broker's certificate says CN=broker: under `ssl` that is the followers' principal.
            common = BROKER_USER if name.startswith("broker") else f"chronik-{name}"
            self._issue(name, common, [f"IP:{addr}"])
        self._issue(ADMIN_USER, ADMIN_USER, [])
        for token in ("admin.token", "cluster.token"):
            _secret(self.dir / token, secrets.token_hex(32) + "\n")
        if self.sasl:
            for user in (ADMIN_USER, BROKER_USER):
                self.users[user] = secrets.token_urlsafe(24)
                _secret(self.dir / f"{user}.password", self.users[user])

    def _issue(self, name: str, common_name: str, sans: list[str]) -> None:
        key, csr, pem = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.pem")
        ext = self.dir / f"{name}.ext"
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth,clientAuth\n"
                       + (f"subjectAltName={','.join(sans)}\n" if sans else ""))
        _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", key, "-out", csr, "-subj", f"/CN={common_name}")
        os.chmod(key, 0o600)
        _openssl("x509", "-req", "-in", csr, "-CA", self.path("ca.pem"), "-CAkey", self.path("ca.key"),
                 "-CAcreateserial", "-days", "2", "-out", pem, "-extfile", str(ext))
        os.unlink(csr)
        ext.unlink()

    # ----- what the nodes get -----

    def controller_args(self, node_id: int) -> list[str]:
        if not self.enabled:
            return []
        name = f"controller-{node_id}"
        return ["--tls-certificate", self.path(f"{name}.pem"), "--tls-key", self.path(f"{name}.key"),
                "--tls-ca", self.path("ca.pem"),
                "--admin-token-file", self.path("admin.token"),
                "--cluster-token-file", self.path("cluster.token")]

    def broker_args(self, broker_id: int, addr: str, port: int) -> list[str]:
        """The listener flags (one listener, also the inter-broker one) and everything securing it."""
        if not self.enabled:
            return ["--listen", f"{addr}:{port}", "--advertised-listener", f"{addr}:{port}"]
        name, listener = f"broker-{broker_id}", self.kafka_protocol
        args = ["--listeners", f"{listener}://{addr}:{port}",
                "--advertised-listeners", f"{listener}://{addr}:{port}",
                "--inter-broker-listener-name", listener,
                "--ssl-certificate", self.path(f"{name}.pem"), "--ssl-key", self.path(f"{name}.key"),
                "--ssl-ca", self.path("ca.pem"),
                "--controller-tls-ca", self.path("ca.pem"),
                "--controller-token-file", self.path("cluster.token"),
                "--authorizer", "standard"]
        if self.sasl:
            args += ["--sasl-enabled-mechanisms", MECHANISM,
                     "--inter-broker-sasl-mechanism", MECHANISM,
                     "--inter-broker-sasl-username", BROKER_USER,
                     "--inter-broker-sasl-password-file", self.path(f"{BROKER_USER}.password"),
                     "--super-users", f"User:{ADMIN_USER};User:{BROKER_USER}"]
        else:
            args += ["--ssl-client-auth", "required",
                     "--super-users", f"User:CN={ADMIN_USER};User:CN={BROKER_USER}"]
        return args

    # ----- what the clients get -----

    def client_config(self) -> dict[str, str]:
        """librdkafka properties of the admin (the workload's producers and consumers, the final read)."""
        if not self.enabled:
            return {}
        config = {"security.protocol": self.kafka_protocol, "ssl.ca.location": self.path("ca.pem")}
        if self.sasl:
            config.update({"sasl.mechanism": MECHANISM, "sasl.username": ADMIN_USER,
                           "sasl.password": self.users[ADMIN_USER]})
        else:
            config.update({"ssl.certificate.location": self.path(f"{ADMIN_USER}.pem"),
                           "ssl.key.location": self.path(f"{ADMIN_USER}.key")})
        return config

    @property
    def client_properties(self) -> Path | None:
        """`client_config` as a properties file (`write_client_properties`), or None when plaintext."""
        return self.dir / "client.properties" if self.enabled else None

    def write_client_properties(self, bootstrap: str) -> None:
        """Writes `client_properties` (it holds a password: 0600), for `chronikctl -C` and the workload
        process, so no secret is on a command line."""
        if self.enabled:
            _secret(self.client_properties, "".join(
                f"{k}={v}\n" for k, v in {"bootstrap.servers": bootstrap, **self.client_config()}.items()))

    def ctl_args(self) -> list[str]:
        """Global `chronikctl` flags: the controllers' CA and the admin token, and `-C` for the commands
        that speak Kafka."""
        if not self.enabled:
            return []
        return ["--controller-tls-ca", self.path("ca.pem"), "--admin-token-file", self.path("admin.token"),
                "-C", str(self.client_properties)]

    def http_scheme(self, kind: str) -> str:
        """Controllers serve HTTPS when secured; brokers' HTTP is plain either way."""
        return "https" if self.enabled and kind == "controller" else "http"

    def http_context(self) -> ssl.SSLContext | None:
        if not self.enabled:
            return None
        return ssl.create_default_context(cafile=self.path("ca.pem"))


def read_properties(path: str) -> dict[str, str]:
    """A librdkafka properties file (`key=value` lines, `#` comments) as a dict."""
    out = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out
