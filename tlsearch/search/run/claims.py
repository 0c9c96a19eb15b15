"""Cluster-wide claims for the search: :func:`tlsearch.storage.claims.exclusive`, with a Ray
actor holding the markers where the object store cannot (no S3 conditional writes).

A search holds a PT job's row (:meth:`tlsearch.search.run.trainable.TrialEnv.pt_lock`) and the
model cache's entry (:mod:`tlsearch.search.run.pretrain_cache`) this way, so a PT job trains once
cluster-wide and fine-tuning trials on other nodes wait for its checkpoint.
"""

from __future__ import annotations

import contextlib

from tlsearch.storage import claims

#: Name and namespace of the Ray actor holding claims where storage cannot.
ACTOR_NAME = "tlsearch-claims"
ACTOR_NAMESPACE = "tlsearch"


class _Registry:
    """The Ray actor's state (:class:`ActorClaimStore`): name -> (body, version)."""

    def __init__(self) -> None:
        self._markers: dict[str, tuple[str, str]] = {}
        self._writes = 0

    def _write(self, name: str, body: str) -> str:
        self._writes += 1
        self._markers[name] = (body, str(self._writes))
        return str(self._writes)

    def create(self, name: str, body: str) -> str | None:
        return None if name in self._markers else self._write(name, body)

    def read(self, name: str) -> tuple[str, str] | None:
        return self._markers.get(name)

    def replace(self, name: str, body: str, version: str) -> str | None:
        current = self._markers.get(name)
        if current is None or current[1] != version:
            return None
        return self._write(name, body)

    def delete(self, name: str, version: str) -> None:
        current = self._markers.get(name)
        if current is not None and current[1] == version:
            del self._markers[name]


class ActorClaimStore:
    """Markers held by one named detached Ray actor on the head node (created on first use;
    its methods run one at a time, which makes each operation atomic)."""

    def __init__(self) -> None:
        import ray

        self._ray = ray
        self._actor = (
            ray.remote(_Registry)
            .options(
                name=ACTOR_NAME,
                namespace=ACTOR_NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                num_cpus=0,
                resources={"node:__internal_head__": 0.001},  # lives as long as the cluster
            )
            .remote()
        )

    def _call(self, method: str, *args: str) -> object:
        return self._ray.get(getattr(self._actor, method).remote(*args))

    def create(self, name: str, body: str) -> str | None:
        return self._call("create", name, body)  # type: ignore[return-value]

    def read(self, name: str) -> tuple[str, str] | None:
        found = self._call("read", name)
        return None if found is None else (found[0], found[1])  # type: ignore[index]

    def replace(self, name: str, body: str, version: str) -> str | None:
        return self._call("replace", name, body, version)  # type: ignore[return-value]

    def delete(self, name: str, version: str) -> None:
        self._call("delete", name, version)


def exclusive(uri: str) -> contextlib.AbstractContextManager[object]:
    """Hold ``uri`` exclusively, cluster-wide (:func:`tlsearch.storage.claims.exclusive`; on an
    object store without conditional writes, the claim lives in the Ray actor when Ray runs)."""
    return claims.exclusive(uri, ray_claim_store)


def ray_claim_store() -> ActorClaimStore | None:
    """The cluster's :class:`ActorClaimStore`, or None when this process has no Ray."""
    import ray  # only where an object store lacks conditional writes

    return ActorClaimStore() if ray.is_initialized() else None
