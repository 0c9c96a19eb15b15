"""Whether a search's trials and PT jobs can ever run on the Ray cluster it joins.

Ray does not refuse work larger than every node: a trial that no node can hold stays pending
for ever, and a DDP PT job whose workers cannot all be placed times out and retries for ever.
So the driver compares what the plan asks for with what the cluster has, or can get, before
the first trial starts (:func:`check_cluster_fits`):

- what the plan asks for (:func:`plan_demands`): each trial (``resources``), each PT job's
  trial (``pretrain.resources``), and a DDP PT job's trial together with its ``num_workers``
  workers (``cpus_per_worker``, ``gpus_per_worker``): a set of bundles placed at the same
  time, each bundle on one node;
- what the cluster has (:func:`cluster_capacity`): its alive nodes and, where Ray knows them,
  the node types its autoscaler may add (the cluster config reported to Ray's GCS, with each
  type's resources and maximum count).

A demand that cannot be placed fails the search at start (:class:`ClusterTooSmallError`: the
job, the resource it lacks and what the cluster has) when no autoscaler can add nodes, or when
even the node types the autoscaler may add cannot hold it. Where an autoscaler runs but Ray
does not report its node types (the v1 autoscaler of ``ray up`` and of KubeRay), nothing can
be known: a warning says what the job needs and it waits for the autoscaler.

Only CPU and GPU are compared (the only resources a spec asks for). No Ray import at module
level: :func:`cluster_capacity` imports it; the rest is plain arithmetic.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tlsearch.search.plan.compile import SearchPlan
from tlsearch.search.plan.spec import Resources

logger = logging.getLogger(__name__)

Bundle = dict[str, float]
RESOURCES = ("CPU", "GPU")
EPS = 1e-9
#: How long to wait for Ray's monitor to say whether an autoscaler runs (it reports every ~5 s;
#: only waited for when a demand does not fit the nodes there are).
AUTOSCALER_WAIT_S = 12.0
#: Copies of an autoscaler node type without a maximum that the placement check considers.
UNBOUNDED_NODES = 64
_PLACEMENT_BUDGET = 50_000
_STATUS_KEY = "__autoscaling_status"  # ray._private.ray_constants.DEBUG_AUTOSCALING_STATUS
_V2_KEY = "__autoscaler_v2_enabled"
#: How a read-only monitor (no autoscaler) names node types: after the node's id.
_READONLY_TYPE = re.compile(r"node_[0-9a-f]{16,}")


class _BudgetSpentError(Exception):
    """:func:`can_place` searched long enough."""


class ClusterTooSmallError(ValueError):
    """A trial or PT job asks for resources the cluster can never give (no autoscaler can)."""


@dataclass(frozen=True)
class Demand:
    """Bundles placed at the same time, each on one node (a trial; a DDP job's trial and
    workers), and who asks for them, in words."""

    what: str
    bundles: tuple[Bundle, ...]

    def total(self) -> Bundle:
        return {k: sum(b.get(k, 0.0) for b in self.bundles) for k in RESOURCES}


@dataclass(frozen=True)
class Capacity:
    """A Ray cluster's nodes and what its autoscaler may add.

    Attributes:
        nodes: the resources of each alive node.
        node_types: ``(resources, max_count)`` of each node type the autoscaler may add
            (``max_count`` -1: no maximum); empty when unknown.
        autoscaling: an autoscaler runs (nodes may be added).
    """

    nodes: tuple[Bundle, ...]
    node_types: tuple[tuple[Bundle, int], ...] = field(default_factory=tuple)
    autoscaling: bool = False

    @property
    def knowable(self) -> bool:
        """Whether every node the cluster can ever have is known (no autoscaler, or one whose
        node types Ray reports)."""
        return not self.autoscaling or bool(self.node_types)

    def possible_nodes(self, copies: int) -> list[Bundle]:
        """The alive nodes and up to ``copies`` of each node type the autoscaler may add."""
        out = [dict(n) for n in self.nodes]
        for resources, max_count in self.node_types:
            count = copies if max_count < 0 else min(max_count, copies)
            out += [dict(resources) for _ in range(count)]
        return out

    def describe(self) -> str:
        """``2 x {CPU: 8, GPU: 1}, 1 x {CPU: 0}`` and the autoscaler's node types."""
        text = _count_bundles(self.nodes) or "no nodes"
        if self.node_types:
            types = ", ".join(
                f"{fmt_bundle(r)} x {'any number' if n < 0 else f'up to {n}'}"
                for r, n in self.node_types
            )
            text += f"; its autoscaler may add {types}"
        elif self.autoscaling:
            text += "; an autoscaler whose node types Ray does not report"
        else:
            text += "; no autoscaler to add nodes"
        return text


# --- what a plan asks for -------------------------------------------------------------------


def bundle(cpu: float, gpu: float) -> Bundle:
    """A resource bundle (zero amounts left out)."""
    return {k: float(v) for k, v in (("CPU", cpu), ("GPU", gpu)) if v > 0}


def fmt_bundle(b: Bundle) -> str:
    """``{CPU: 4, GPU: 1}``."""
    return "{" + ", ".join(f"{k}: {b.get(k, 0.0):g}" for k in RESOURCES) + "}"


def _trial_bundle(resources: Resources) -> Bundle:
    return bundle(resources.cpu, resources.gpu)


def plan_demands(plan: SearchPlan) -> list[Demand]:
    """What ``plan`` asks of the cluster: each trial, each PT job (its trial, and a DDP job's
    workers with it)."""
    spec = plan.spec
    demands = []
    if plan.planned_seed_runs:
        trial = _trial_bundle(spec.resources)
        demands.append(Demand(f"each trial (resources {fmt_bundle(trial)})", (trial,)))
    if not plan.pretrain_jobs:
        return demands
    key = "pretrain.resources" if spec.pretrain.resources is not None else "resources"
    trial = _trial_bundle(spec.pretrain.resources or spec.resources)
    ddp = [job for job in plan.pretrain_jobs if job.num_workers > 1]
    if not ddp:
        demands.append(Demand(f"each PT job ({key} {fmt_bundle(trial)})", (trial,)))
        return demands
    job = ddp[0]
    worker = bundle(job.cpus_per_worker, job.gpus_per_worker)
    what = (
        f"each DDP PT job ({len(ddp)}, e.g. {job.label} at size {job.pt_size}: "
        f"{job.num_workers} workers x {fmt_bundle(worker)} (pretrain.num_workers, "
        f"cpus_per_worker, gpus_per_worker) and its trial {fmt_bundle(trial)} ({key}), "
        "all at once)"
    )
    demands.append(Demand(what, (trial,) + (worker,) * job.num_workers))
    return demands


# --- does it fit --------------------------------------------------------------------------


def _fits(b: Bundle, node: Bundle) -> bool:
    return all(node.get(k, 0.0) + EPS >= v for k, v in b.items())


def can_place(bundles: Sequence[Bundle], nodes: Sequence[Bundle]) -> bool | None:
    """Whether every bundle can be placed at once, each on one node (None: undecided after
    the search budget; treated as fitting).

    An exact search (largest bundles first; identical bundles and nodes with identical free
    resources are tried once), so a refusal is never a heuristic's miss.
    """
    order = sorted(bundles, key=lambda b: tuple(-b.get(k, 0.0) for k in reversed(RESOURCES)))
    free = [dict(n) for n in nodes]
    steps = 0

    def place(i: int, lowest: int) -> bool:
        nonlocal steps
        if i == len(order):
            return True
        steps += 1
        if steps > _PLACEMENT_BUDGET:
            raise _BudgetSpentError
        need = order[i]
        start = lowest if i and order[i] == order[i - 1] else 0
        seen: set[tuple[tuple[str, float], ...]] = set()
        for j in range(start, len(free)):
            state = tuple(sorted((k, round(v, 6)) for k, v in free[j].items() if k in RESOURCES))
            if state in seen or not _fits(need, free[j]):
                continue
            seen.add(state)
            for k, v in need.items():
                free[j][k] = free[j].get(k, 0.0) - v
            ok = place(i + 1, j)
            for k, v in need.items():
                free[j][k] += v
            if ok:
                return True
        return False

    try:
        return place(0, 0)
    except _BudgetSpentError:
        return None


def shortfall(demand: Demand, nodes: Sequence[Bundle]) -> str:
    """Which resource ``demand`` lacks on ``nodes``, in words."""
    parts = []
    for k in RESOURCES:
        largest = max((b.get(k, 0.0) for b in demand.bundles), default=0.0)
        biggest_node = max((n.get(k, 0.0) for n in nodes), default=0.0)
        if largest > biggest_node + EPS:
            parts.append(f"{largest:g} {k} on one node, and the largest node has {biggest_node:g}")
    if not parts:
        total = demand.total()
        for k in RESOURCES:
            have = sum(n.get(k, 0.0) for n in nodes)
            if total[k] > have + EPS:
                parts.append(f"{total[k]:g} {k} in all, and the cluster has {have:g}")
    if not parts:
        parts.append(
            f"{fmt_bundle(demand.total())} in all, in bundles that do not fit together on its nodes"
        )
    return "; ".join(parts)


def unmet_demands(demands: Iterable[Demand], capacity: Capacity) -> list[tuple[Demand, str]]:
    """The demands that cannot be placed on the nodes the cluster has or may add, each with
    what it lacks."""
    out = []
    for demand in demands:
        nodes = capacity.possible_nodes(len(demand.bundles) or 1)
        if can_place(demand.bundles, nodes) is False:
            out.append((demand, shortfall(demand, nodes)))
    return out


def check_cluster_fits(
    plan: SearchPlan, capacity: Capacity | None = None, wait_s: float = AUTOSCALER_WAIT_S
) -> None:
    """Refuse ``plan`` when one of its trials or PT jobs can never run on this cluster.

    Args:
        plan: the search's plan.
        capacity: the cluster (default: :func:`cluster_capacity` of the connected Ray).
        wait_s: how long to wait for Ray's monitor to say whether an autoscaler runs (only
            where something does not fit the nodes there are).

    Raises:
        ClusterTooSmallError: a demand no node (or set of nodes) the cluster has or can get
            holds; the message names the job, the resource and the cluster.
    """
    demands = plan_demands(plan)
    capacity = capacity or cluster_capacity()
    unmet = unmet_demands(demands, capacity)
    if unmet and not capacity.autoscaling and wait_s > 0:
        capacity = cluster_capacity(wait_s)  # an autoscaler's first report may be pending
        unmet = unmet_demands(demands, capacity)
    if not unmet:
        return
    lines = [f"{d.what} needs {lack}" for d, lack in unmet]
    if not capacity.knowable:
        logger.warning(
            "search %s: with the nodes it has now, %s (cluster: %s). Ray does not report the "
            "autoscaler's node types, so whether it can add such nodes is not checked: the "
            "search waits for them", plan.spec.name, "; ".join(lines), capacity.describe(),
        )  # fmt: skip
        return
    raise ClusterTooSmallError(
        f"search {plan.spec.name!r} can never run on this Ray cluster: "
        + "; ".join(lines)
        + f" (cluster: {capacity.describe()}). Nothing was started: give the cluster such "
        "nodes (or an autoscaler with such a node type) or ask for less in the spec "
        "(resources, pretrain.resources, pretrain.num_workers/cpus_per_worker/gpus_per_worker)"
    )


def trial_slots(resources: Resources, capacity: Capacity) -> int | None:
    """How many trials of ``resources`` the cluster holds at once at its largest (None: an
    autoscaling cluster whose node types are unknown)."""
    if not capacity.knowable:
        return None
    need = _trial_bundle(resources)
    slots = 0
    for node in capacity.possible_nodes(UNBOUNDED_NODES):
        slots += min((int(node.get(k, 0.0) / v + EPS) for k, v in need.items()), default=0)
    return slots


def _count_bundles(nodes: Iterable[Bundle]) -> str:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[fmt_bundle(n)] = counts.get(fmt_bundle(n), 0) + 1
    return ", ".join(f"{c} x {b}" for b, c in counts.items())


# --- the connected cluster ----------------------------------------------------------------


def cluster_capacity(wait_s: float = 0.0) -> Capacity:
    """The connected Ray cluster's nodes and autoscaler (waiting up to ``wait_s`` for Ray's
    monitor to report whether an autoscaler runs)."""
    import ray

    nodes = tuple(
        {k: float(v) for k, v in node["Resources"].items() if k in RESOURCES}
        for node in ray.nodes()
        if node.get("Alive")
    )
    node_types = _reported_node_types()
    autoscaling = bool(node_types) or _autoscaler_runs(wait_s)
    return Capacity(nodes, node_types, autoscaling)


def _reported_node_types() -> tuple[tuple[Bundle, int], ...]:
    """Node types and maximum counts from the cluster config reported to the GCS (if any)."""
    try:
        import ray._private.state as ray_state

        config = ray_state.state.get_cluster_config()
    except Exception:  # not reported, or not readable from this client
        logger.debug("no cluster config", exc_info=True)
        return ()
    if config is None:
        return ()
    return tuple(
        ({k: float(v) for k, v in group.resources.items() if k in RESOURCES}, group.max_count)
        for group in config.node_group_configs
        if group.max_count != 0
    )


def _autoscaler_runs(wait_s: float) -> bool:
    """Whether Ray's monitor runs an autoscaler that may add nodes.

    The monitor of every cluster reports an autoscaler status; without an autoscaling config
    it is read-only and names each node type after its node (``node_<node id>``), so a node
    type with any other name (``head``, ``gpu_worker``, a KubeRay group) says an autoscaler
    runs. Waits up to ``wait_s`` for the monitor's first report.
    """
    from ray.experimental import internal_kv

    deadline = time.monotonic() + wait_s
    while True:
        try:
            if internal_kv._internal_kv_get(_V2_KEY) == b"1":
                return True
            raw = internal_kv._internal_kv_get(_STATUS_KEY)
        except Exception:  # e.g. a client that cannot read the KV store: assume it may grow
            logger.debug("autoscaler status unreadable", exc_info=True)
            return True
        report = json.loads(raw).get("autoscaler_report") if raw else None
        if report is not None:
            return any(not _READONLY_TYPE.fullmatch(t) for t in _node_type_names(report))
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def _node_type_names(report: dict) -> set[str]:
    """The node types an autoscaler report names (active, idle, pending, launching, failed)."""
    names = set(report.get("active_nodes") or {}) | set(report.get("idle_nodes") or {})
    names |= set(report.get("pending_launches") or {})
    names |= set((report.get("node_type_mapping") or {}).values())
    names |= {entry[1] for entry in report.get("pending_nodes") or [] if len(entry) > 1}
    names |= {entry[1] for entry in report.get("failed_nodes") or [] if len(entry) > 1}
    return {str(n) for n in names}
