"""A real Apache Kafka broker for development and tests, from Maven Central, without Docker.

How it works:

1. :class:`KafkaDistribution` asks Maven to resolve ``org.apache.kafka:kafka_2.13`` and its runtime
   dependencies (log4j2 included) into a cache folder. Once the jars are there, nothing touches the
   network again: the folder alone starts the broker.
2. :class:`LocalKafka` formats a single-node KRaft store (``kafka.tools.StorageTool format
   --standalone``) the first time a data folder is used, starts ``kafka.Kafka`` on 127.0.0.1, waits
   until a metadata request succeeds, and stops it with SIGTERM (SIGKILL after a grace period).
3. :class:`~sagas.dev.cluster.LocalKafkaCluster` runs several such nodes (broker and controller in
   one process each) with a static controller quorum of all of them, replication factor 3 and
   ``min.insync.replicas=2`` as the defaults when there are three or more, so that tests can stop,
   kill and restart single nodes and see what users see on a real cluster.

Rejected alternatives: downloading the release tarball (not reachable from our machines;
Maven Central is), librdkafka's mock cluster (it neither fences zombie producers nor compacts,
so it proves nothing about the guarantees we sell), and a Docker image (no engine on the CI
machines; the compose file covers people who have one).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sagas.errors import BrokerUnavailableError, EnvironmentSetupError

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "KafkaDistribution",
    "LocalKafka",
    "default_cache_dir",
    "free_port",
]

DEFAULT_KAFKA_VERSION = "4.1.1"
_LOG4J_VERSION = "2.24.3"
_MIN_JAVA = 17
_COORDINATOR_PARTITIONS = 10  # of __consumer_offsets and __transaction_state

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>kafka-sagas.dev</groupId><artifactId>local-kafka</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def default_cache_dir() -> Path:
    """Where the broker's jars are kept: ``$KAFKA_SAGAS_CACHE``, else the user's cache folder."""
    if env := os.environ.get("KAFKA_SAGAS_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-sagas"


def _require_tool(name: str, why: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise EnvironmentSetupError(
            f"{name!r} was not found on PATH; it is needed {why}. Install it ({install}), "
            "or set KAFKA_BOOTSTRAP_SERVERS to a broker you already run."
        )
    return path


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if match is None:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


@dataclass
class KafkaDistribution:
    """The broker's jars, resolved once by Maven into ``cache_dir/kafka-<version>/libs``.

    Args:
        version: an Apache Kafka 4.x release.
        cache_dir: the cache root; :func:`default_cache_dir` when omitted.
    """

    version: str = DEFAULT_KAFKA_VERSION
    cache_dir: Path = field(default_factory=default_cache_dir)

    @property
    def home(self) -> Path:
        """The folder of this version (pom, jars, completion marker)."""
        return self.cache_dir / f"kafka-{self.version}"

    @property
    def libs(self) -> Path:
        """The folder of jars that make the broker's classpath."""
        return self.home / "libs"

    def is_resolved(self) -> bool:
        """True when the jars were resolved completely (a half-finished run does not count)."""
        return (self.home / ".complete").exists()

    def resolve(self, *, quiet: bool = True) -> Path:
        """Resolve the jars with Maven unless they are cached; return the libs folder.

        Raises:
            EnvironmentSetupError: Maven is missing, or it could not resolve the artifacts.
        """
        if self.is_resolved():
            return self.libs
        mvn = _require_tool(
            "mvn", "once, to fetch the Kafka broker's jars", "Debian: apt-get install maven"
        )
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.libs, ignore_errors=True)
        pom = self.home / "pom.xml"
        pom.write_text(_POM.format(kafka=self.version, log4j=_LOG4J_VERSION))
        cmd = [
            mvn,
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={self.libs}",
            "-DincludeScope=runtime",
        ]
        if quiet:
            cmd.insert(1, "-q")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise EnvironmentSetupError(
                f"Maven could not resolve org.apache.kafka:kafka_2.13:{self.version} "
                f"(exit {proc.returncode}). Check that Maven Central is reachable (or a mirror is "
                f"configured in ~/.m2/settings.xml) and that the version exists.\n{tail}"
            )
        (self.home / ".complete").write_text(self.version)
        return self.libs

    def classpath(self) -> str:
        """The Java classpath of the resolved jars."""
        return str(self.libs / "*")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM the broker when the process that started it dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    os.setpgrp()


@dataclass
class LocalKafka:
    """A single-node KRaft broker on 127.0.0.1.

    Args:
        data_dir: holds the log segments, the config, ``broker.log`` and a pid file. Reusing it
            keeps the data across restarts.
        port: the client port; the controller listens on ``controller_port``.
        distribution: where the jars come from.
        die_with_parent: stop the broker when this Python process dies (tests); off for
            ``sagas dev kafka start --detach``. Linux ties this to the thread that started the
            broker: start it from a thread that outlives it (e.g. the main one).
        heap: the JVM's maximum heap.
        node_id: this node's id in its cluster.
        voters: the static controller quorum (``1@127.0.0.1:port,...``) of a cluster's node; None
            for a single node, formatted as a standalone quorum of itself.
        cluster_id: the cluster's id, shared by its nodes (None: a new random one).
        overrides: broker settings laid over the single node's.
    """

    data_dir: Path
    port: int = 9092
    controller_port: int | None = None
    distribution: KafkaDistribution = field(default_factory=KafkaDistribution)
    die_with_parent: bool = True
    heap: str = "768m"
    node_id: int = 1
    voters: str | None = None
    cluster_id: str | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        """The address clients connect to."""
        return f"127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        """The broker's own log (log4j)."""
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        """Holds the broker's process id while it runs."""
        return self.data_dir / "broker.pid"

    def _properties(self) -> str:
        cport = self.controller_port
        quorum = (
            {"controller.quorum.voters": self.voters}
            if self.voters
            else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{cport}"}
        )
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": str(_COORDINATOR_PARTITIONS),
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": str(_COORDINATOR_PARTITIONS),
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "1000",
            **self.overrides,
        }
        return "".join(f"{k}={v}\n" for k, v in settings.items())

    def _java(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        java = _require_tool(
            "java", "to run the Kafka broker", "Debian: apt-get install openjdk-17-jre-headless"
        )
        cmd = [java, "-cp", self.distribution.classpath(), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if check and proc.returncode != 0:
            raise EnvironmentSetupError(
                f"{' '.join(args[:2])} failed (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr)[-2000:]
            )
        return proc

    def prepare(self) -> None:
        """Resolve the jars, write the config and format the store if it is new."""
        self.check_environment()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        if self.controller_port is None:
            self.controller_port = self._stored_controller_port() or free_port()
        config.write_text(self._properties())
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_file))
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = self.cluster_id or self.random_cluster_id()
            quorum = [] if self.voters else ["--standalone"]
            self._java(
                "kafka.tools.StorageTool", "format", *quorum, "-t", cluster_id, "-c", str(config)
            )

    def check_environment(self) -> None:
        """Check Java and resolve the jars.

        Raises:
            EnvironmentSetupError: Java is missing or too old, or Maven could not get the jars.
        """
        java = _require_tool(
            "java", "to run the Kafka broker", "Debian: apt-get install openjdk-17-jre-headless"
        )
        if (major := _java_major(java)) < _MIN_JAVA:
            raise EnvironmentSetupError(
                f"Kafka 4 needs Java {_MIN_JAVA} or newer, but {java} is Java {major}; install "
                "Java 17 (Debian: apt-get install openjdk-17-jre-headless), put it first on PATH."
            )
        self.distribution.resolve()

    def random_cluster_id(self) -> str:
        """A new cluster id, as the storage tool makes them."""
        return self._java("kafka.tools.StorageTool", "random-uuid").stdout.strip()

    def _stored_controller_port(self) -> int | None:
        """The controller port of an existing store: a KRaft voter's address must not change."""
        config = self.data_dir / "server.properties"
        if not config.exists():
            return None
        match = re.search(
            r"controller\.quorum\.bootstrap\.servers=127\.0\.0\.1:(\d+)", config.read_text()
        )
        return int(match.group(1)) if match else None

    def start(self, *, timeout: float = 90.0) -> str:
        """Start the broker and wait until it answers; return its bootstrap address.

        Raises:
            EnvironmentSetupError: Java or Maven is missing.
            BrokerUnavailableError: the broker exited or did not answer within ``timeout``.
        """
        self.prepare()
        self.launch()
        try:
            self.wait_ready(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap_servers

    def launch(self) -> None:
        """Start the prepared broker's process without waiting for it to answer."""
        out = (self.data_dir / "broker.out").open("ab")
        java = _require_tool(
            "java", "to run the Kafka broker", "Debian: apt-get install openjdk-17-jre-headless"
        )
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-Xss1m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            "-cp",
            self.distribution.classpath(),
            "kafka.Kafka",
            str(self.data_dir / "server.properties"),
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if self.die_with_parent else os.setpgrp,  # noqa: PLW1509
        )
        out.close()
        self.pid_file.write_text(str(self._proc.pid))

    def wait_ready(self, *, timeout: float = 90.0) -> None:
        """Block until a metadata request succeeds."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerUnavailableError(
                    f"the Kafka broker exited with code {self._proc.returncode} while starting; "
                    f"see {self.log_file} and {self.data_dir / 'broker.out'}:\n{self._tail()}"
                )
            try:
                metadata = admin.list_topics(timeout=2)
                if self.node_id in metadata.brokers:
                    return
            except Exception:  # noqa: S110 - not up yet; retried until the deadline
                pass
            if time.monotonic() > deadline:
                raise BrokerUnavailableError(
                    f"the Kafka broker at {self.bootstrap_servers} did not answer within "
                    f"{timeout:.0f}s; see {self.log_file}:\n{self._tail()}"
                )
            time.sleep(0.3)

    def _tail(self, lines: int = 20) -> str:
        for path in (self.data_dir / "broker.out", self.log_file):
            if path.exists() and path.stat().st_size:
                return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no output)"

    def stop(self, *, grace: float = 30.0) -> None:
        """Stop the broker with SIGTERM (a clean shutdown), then SIGKILL after ``grace`` seconds."""
        pid = self._proc.pid if self._proc is not None else self._pid_from_file()
        if pid is not None:
            _terminate(pid, grace)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill the broker with SIGKILL, as a crash would (its data stays)."""
        pid = self._proc.pid if self._proc is not None else self._pid_from_file()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _terminate(pid, 10.0)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            self._proc = None
        self.pid_file.unlink(missing_ok=True)

    def _pid_from_file(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def is_running(self) -> bool:
        """True while the broker process lives."""
        if self._proc is not None:
            return self._proc.poll() is None
        pid = self._pid_from_file()
        return pid is not None and _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); its state says whether it really runs.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1][:1] != "Z"
    return True


def _terminate(pid: int, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        print(f"kafka broker {pid} did not stop in {grace:.0f}s; killed", file=sys.stderr)
