"""Row paths found from the folder a search is read from (a moved or copied results folder)."""

from __future__ import annotations

from tlsearch.results.paths import locate, storage_root, stored


def test_paths_of_a_moved_folder_are_found_under_the_folder_read(tmp_path):
    search = tmp_path / "laptop" / "demo"
    model = search / "work" / "abc-s0" / "model.pt"
    pt = tmp_path / "laptop" / "pretrained" / "k1" / "model.pt"
    for path in (model, pt):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"m")
    old = "/cluster/results/demo/work/abc-s0/model.pt"
    assert locate(old, str(search)) == str(model)
    assert locate("/cluster/results/pretrained/k1/model.pt", str(search)) == str(pt)
    assert locate("demo/work/abc-s0/model.pt", str(search)) == str(model)  # storage-relative
    assert locate(str(model), str(search)) == str(model)  # where it was written
    assert locate("/elsewhere/x/model.pt", str(search)) == "/elsewhere/x/model.pt"  # not found
    assert locate(None, str(search)) is None
    assert (
        storage_root("s3://b/r/demo?endpoint_override=h:9000")
        == "s3://b/r?endpoint_override=h:9000"
    )


def test_rows_store_paths_inside_the_storage_relative_to_it():
    assert stored("/r/store/demo/work/a-s0/model.pt", "/r/store") == "demo/work/a-s0/model.pt"
    assert stored("/r/store/pretrained/k/model.pt", "/r/store/") == "pretrained/k/model.pt"
    assert stored("s3://b/st/demo/work/x/model.pt", "s3://b/st?region=x") == "demo/work/x/model.pt"
    assert stored("/r/storex/m.pt", "/r/store") == "/r/storex/m.pt"  # outside: as it is
