"""The one place where raw structure data becomes a ``StructureRecord`` or a ``Rejection``.

Every loader turns its input into :class:`RawRecord` objects (or a :class:`Rejection` when it
cannot even read a record) and hands them to :func:`validate_records`, which checks each one,
never raises per record, and returns a :class:`LoadResult` with the reasons for every rejection.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlsearch.structures.records import LoadResult, Rejection, StructureRecord, finite_target

logger = logging.getLogger(__name__)

_ELEMENTS_TEXT = """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni
    Cu Zn Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr
    Nd Pm Sm Eu Gd Tb
    Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk
    Cf Es Fm Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"""

#: Element symbols by atomic number (index 0 is Z=1), H..Og.
ELEMENT_SYMBOLS: tuple[str, ...] = tuple(_ELEMENTS_TEXT.split())

#: Largest atomic number with atom features (the CGCNN table covers Z = 1..100).
MAX_Z = 100

ATOMIC_NUMBERS: dict[str, int] = {sym: z for z, sym in enumerate(ELEMENT_SYMBOLS, start=1)}
SUPPORTED_ELEMENTS: frozenset[str] = frozenset(ELEMENT_SYMBOLS[:MAX_Z])

MIN_ABS_DET = 1e-6
"""Lattices with ``|det| < MIN_ABS_DET`` (cubic Angstrom) are rejected as singular."""

_EXAMPLES_IN_MESSAGES = 5

#: Target cells that mean "unknown" (case-insensitive); a multi-target record masks them.
UNKNOWN_TARGET_MARKERS = frozenset({"", "nan", "na", "n/a", "none", "null"})


class InvalidRecordError(ValueError):
    """Raised inside validation with the human-readable rejection reason."""


@dataclass
class RawRecord:
    """A structure as a loader read it, before any checking.

    Attributes:
        id: identifier (converted to ``str``).
        lattice: anything ``np.asarray`` can turn into a (3, 3) array; rows are lattice vectors.
        coords: (N, 3) fractional coordinates, or Cartesian (Angstrom) when ``cartesian``.
        species: N element symbols (atomic numbers are accepted too).
        targets: target name -> raw value (only the targets present in the source).
        cartesian: whether ``coords`` are Cartesian.
    """

    id: Any
    lattice: Any
    coords: Any
    species: Any
    targets: Mapping[str, Any] = field(default_factory=dict)
    cartesian: bool = False


def element_symbol(value: object) -> str:
    """Return a supported element symbol for ``value`` (symbol or atomic number).

    Raises:
        InvalidRecordError: ``"unknown element 'Xx'"`` for anything that is not Z = 1..100.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        z = int(value)
        if 1 <= z <= MAX_Z:
            return ELEMENT_SYMBOLS[z - 1]
        raise InvalidRecordError(f"unknown element with atomic number {z} (supported: 1..{MAX_Z})")
    symbol = str(value).strip()
    if symbol in SUPPORTED_ELEMENTS:
        return symbol
    if symbol in ATOMIC_NUMBERS:
        raise InvalidRecordError(
            f"unknown element {symbol!r} (Z={ATOMIC_NUMBERS[symbol]} has no atom features; "
            f"supported: Z=1..{MAX_Z})"
        )
    raise InvalidRecordError(f"unknown element {symbol!r}")


def _float_array(value: object, name: str) -> np.ndarray:
    """Convert to a float64 array; ragged/non-numeric input raises :class:`InvalidRecordError`."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(f"{name}: unparseable array ({exc})") from exc
    if not np.all(np.isfinite(arr)):
        raise InvalidRecordError(f"{name}: contains NaN or infinite values")
    return arr


def _check_lattice(value: object) -> np.ndarray:
    lattice = _float_array(value, "lattice")
    if lattice.shape != (3, 3):
        raise InvalidRecordError(f"lattice: expected shape (3, 3), got {lattice.shape}")
    det = float(np.linalg.det(lattice))
    if abs(det) < MIN_ABS_DET:
        raise InvalidRecordError(f"lattice is singular (|det| = {abs(det):.3g} < {MIN_ABS_DET:g})")
    return lattice


def _check_species(value: object) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise InvalidRecordError(f"species: expected a list of element symbols, got {value!r:.60}")
    return tuple(element_symbol(v) for v in value)


def _check_coords(value: object, n_species: int) -> np.ndarray:
    coords = _float_array(value, "coords")
    if coords.size == 0 and n_species == 0:
        raise InvalidRecordError("structure has no atoms")
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise InvalidRecordError(f"coords: expected shape (N, 3), got {coords.shape}")
    if coords.shape[0] != n_species:
        raise InvalidRecordError(f"{coords.shape[0]} coordinates but {n_species} species")
    return coords


def is_unknown_target(value: object) -> bool:
    """Whether a target value means "not known": None, NaN, or an empty/``nan``/``na`` cell."""
    if value is None:
        return True
    if isinstance(value, (str, bytes)):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        return text.strip().lower() in UNKNOWN_TARGET_MARKERS
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _check_targets(targets: Mapping[str, Any]) -> tuple[dict[str, float], list[str]]:
    """The record's finite targets and the names masked as unknown.

    In a record with several targets an unknown value (see :func:`is_unknown_target`) masks
    that property only; a record with one target, or with none known, is rejected.
    """
    out: dict[str, float] = {}
    masked: list[str] = []
    several = len(targets) > 1
    for name, value in targets.items():
        if several and is_unknown_target(value):
            masked.append(str(name))
            continue
        try:
            out[str(name)] = finite_target(value)
        except ValueError as exc:
            raise InvalidRecordError(f"target {name!r}: {exc}") from exc
    if several and not out:
        raise InvalidRecordError(f"no known target (all of {', '.join(masked)} are NaN/missing)")
    return out, masked


def to_record(raw: RawRecord, required_targets: Sequence[str] = ()) -> StructureRecord:
    """Check one raw record and build the :class:`StructureRecord`.

    A record with several targets keeps the known ones when some are unknown (NaN, None, an
    empty or ``nan``/``na`` cell): those are left out of ``targets`` (masked in training) and
    count as present for ``required_targets``. A lone unknown target rejects the record.

    Raises:
        InvalidRecordError: with the rejection reason.
    """
    rid = "" if raw.id is None else str(raw.id).strip()
    if not rid:
        raise InvalidRecordError("empty id")
    lattice = _check_lattice(raw.lattice)
    species = _check_species(raw.species)
    coords = _check_coords(raw.coords, len(species))
    if raw.cartesian:
        coords = coords @ np.linalg.inv(lattice)
    targets, masked = _check_targets(raw.targets)
    missing = [t for t in required_targets if t not in targets and t not in masked]
    if missing:
        raise InvalidRecordError(f"missing target {missing[0]!r}")
    return StructureRecord(
        id=rid,
        lattice=np.ascontiguousarray(lattice),
        frac_coords=np.ascontiguousarray(coords),
        species=species,
        targets=targets,
    )


def raw_from_structure(rid: object, structure: Any, targets: Mapping[str, Any]) -> RawRecord:
    """Turn a pymatgen ``Structure`` (duck-typed, no import) into a :class:`RawRecord`.

    Raises:
        InvalidRecordError: for disordered structures (partial occupancies).
    """
    if not structure.is_ordered:
        raise InvalidRecordError("disordered structure (partial site occupancies) is not supported")
    return RawRecord(
        id=rid,
        lattice=structure.lattice.matrix,
        coords=structure.frac_coords,
        species=[site.specie.symbol for site in structure],
        targets=targets,
        cartesian=False,
    )


def _describe(rejected: Sequence[Rejection]) -> str:
    shown = "; ".join(f"{r.id}: {r.reason}" for r in rejected[:_EXAMPLES_IN_MESSAGES])
    more = len(rejected) - _EXAMPLES_IN_MESSAGES
    return shown + (f"; ... and {more} more" if more > 0 else "")


def validate_records(
    raw_iter: Iterable[RawRecord | Rejection],
    source: str,
    required_targets: Sequence[str] = (),
) -> LoadResult:
    """Validate every raw record; collect accepted records and rejections.

    Args:
        raw_iter: raw records, or rejections a loader already made (e.g. unreadable files).
        source: where the data came from (used in logs and errors).
        required_targets: target names every accepted record must have.

    Returns:
        A :class:`LoadResult`. Duplicate ids: only an accepted record claims its id, so a later
        record with the id of an accepted one is rejected as ``"duplicate id"``, and a valid
        record whose id an invalid one used before is kept (the invalid one is rejected with
        its own reason). ``target_order`` lists every target name the raw records carry.

    Raises:
        ValueError: when no record is accepted (names the source and the first reasons).
    """
    records: list[StructureRecord] = []
    rejected: list[Rejection] = []
    accepted_ids: set[str] = set()
    order: dict[str, None] = {}
    masked = 0
    for item in raw_iter:
        if isinstance(item, Rejection):
            rejected.append(item)
            continue
        rid = "" if item.id is None else str(item.id).strip()
        order.update(dict.fromkeys(str(name) for name in item.targets))
        if rid in accepted_ids:
            rejected.append(Rejection(rid, "duplicate id"))
            continue
        try:
            record = to_record(item, required_targets)
        except InvalidRecordError as exc:
            rejected.append(Rejection(rid or "<no id>", str(exc)))
            continue
        accepted_ids.add(rid)
        records.append(record)
        masked += len(item.targets) - len(record.targets)
    result = LoadResult(
        records=records,
        rejected=rejected,
        source=source,
        masked_targets=masked,
        target_order=list(order),
    )
    _log_summary(result)
    if not records:
        if not rejected:
            raise ValueError(f"{source}: contains no structures")
        raise ValueError(
            f"{source}: no usable structures ({len(rejected)} rejected: {_describe(rejected)})"
        )
    return result


def _log_summary(result: LoadResult) -> None:
    n_ok, n_bad = len(result.records), len(result.rejected)
    if result.masked_targets:
        logger.warning(
            "%s: %d unknown (NaN/missing) target values masked in multi-target records",
            result.source,
            result.masked_targets,
        )
    if n_bad:
        logger.warning(
            "%s: accepted %d, rejected %d (%s)",
            result.source,
            n_ok,
            n_bad,
            _describe(result.rejected),
        )
    else:
        logger.info("%s: accepted %d structures", result.source, n_ok)
