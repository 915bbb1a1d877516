"""An application: the saga programs a worker runs, under one topic namespace."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sagas.dsl.program import Program
from sagas.errors import ConfigurationError, DefinitionError, UnknownVersionError
from sagas.protocol import TopicNames
from sagas.serde.records import Serde

__all__ = ["App"]

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


def _register(serde: Serde, program: Program) -> dict[str, str]:
    """Register a program's payload and reply schemas; its payload record name per command.

    The versions of one saga type may evolve one record (registered oldest first, the newest
    writes and the older stay readable); two saga types may not give one name two schemas.

    Raises:
        DefinitionError: a schema is invalid or clashes with another of the same name.
    """
    owner = program.name
    try:
        for spec in program.reply_schemas:
            serde.register(spec, owner=owner)
        return {
            cmd: serde.register(spec, owner=owner) for cmd, spec in program.payload_schemas.items()
        }
    except DefinitionError as exc:
        raise DefinitionError(str(exc), saga=program.name) from exc


@dataclass(frozen=True)
class App:
    """The sagas one worker deployment runs.

    Args:
        namespace: prefix of every topic and group, e.g. ``"shop"``.
        programs: compiled sagas; several versions of one saga type may be given, so that sagas
            started on an old version finish on it. New sagas start on the newest version.
        partitions: partition count for the topics the worker creates.
        serde: the encodings of its records (default: a new one with fingerprint framing; a
            worker writes for the schema registry its settings name, through a copy).

    Raises:
        ConfigurationError: a bad namespace, or the same saga type and version given twice.
    """

    namespace: str
    programs: tuple[Program, ...]
    partitions: int = 6
    serde: Serde = field(init=False, repr=False, compare=False)
    _index: Mapping[str, Mapping[int, Program]] = field(init=False, repr=False, compare=False)
    _schemas: Mapping[tuple[str, int], Mapping[str, str]] = field(
        init=False, repr=False, compare=False
    )

    def __init__(
        self,
        namespace: str,
        programs: Iterable[Program],
        *,
        partitions: int = 6,
        serde: Serde | None = None,
    ) -> None:
        if not _NAME.match(namespace):
            raise ConfigurationError(
                f"namespace {namespace!r} may hold only letters, digits, '.', '_' and '-' "
                "(it prefixes topic names)"
            )
        if partitions < 1:
            raise ConfigurationError(f"partitions must be at least 1, got {partitions}")
        progs = tuple(programs)
        if not progs:
            raise ConfigurationError("an App needs at least one compiled saga (saga.compile())")
        index: dict[str, dict[int, Program]] = {}
        for program in progs:
            if not isinstance(program, Program):
                raise ConfigurationError(
                    f"App takes compiled sagas; got {type(program).__name__}: pass "
                    "saga.compile() instead"
                )
            versions = index.setdefault(program.name, {})
            if program.version in versions:
                raise ConfigurationError(
                    f"saga {program.name!r} version {program.version} is given twice"
                )
            versions[program.version] = program
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "programs", progs)
        object.__setattr__(self, "partitions", partitions)
        object.__setattr__(self, "_index", index)
        serde = serde or Serde()
        object.__setattr__(self, "serde", serde)
        ordered = sorted(progs, key=lambda p: (p.name, p.version))
        object.__setattr__(
            self, "_schemas", {(p.name, p.version): _register(serde, p) for p in ordered}
        )

    def payload_schema(self, program: Program, command_type: str) -> str | None:
        """The Avro record a command type's payload is written as (None: ``sagas.Payload``)."""
        return self._schemas[(program.name, program.version)].get(command_type)

    @property
    def saga_types(self) -> list[str]:
        """The saga type names, sorted."""
        return sorted(self._index)

    def topics(self, saga_type: str) -> TopicNames:
        """The topic names of a saga type."""
        return TopicNames(self.namespace, saga_type)

    def versions(self, saga_type: str) -> list[int]:
        """The definition versions known for a saga type."""
        return sorted(self._index.get(saga_type, {}))

    def latest(self, saga_type: str) -> Program:
        """The newest version of a saga type: new sagas start on it."""
        versions = self._index.get(saga_type)
        if not versions:
            raise ConfigurationError(
                f"no saga type {saga_type!r} in this app; it has {self.saga_types}"
            )
        return versions[max(versions)]

    def program(self, saga_type: str, version: int) -> Program:
        """A given version of a saga type.

        Raises:
            UnknownVersionError: this app lacks that version.
        """
        program = self._index.get(saga_type, {}).get(version)
        if program is None:
            raise UnknownVersionError(saga_type, version, self.versions(saga_type))
        return program
