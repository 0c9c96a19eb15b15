"""Where tlsearch keeps files, and how writers stay out of each other's way.

:mod:`~tlsearch.storage.uri` names locations (local paths, NFS, ``s3://``, ``gs://``) as pyarrow
filesystems; :mod:`~tlsearch.storage.atomic` writes a file so that readers see all of it or
nothing; :mod:`~tlsearch.storage.locks` holds a file lock across processes;
:mod:`~tlsearch.storage.claims` holds a location exclusively cluster-wide (file locks on shared
disks, leased claims on object stores). It sits lowest in the layer order and imports no other
tlsearch package, so the graph cache, training, jobs, the search and the results all build on it.
"""
