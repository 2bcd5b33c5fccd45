"""ctdenoise.storage.files and storage.publish on a real S3 store (moto): the object-store pitfalls
the module exists to hide. This process loads tensorflow-io here; conftest.py ends the
session without the exit-time abort that causes."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctdenoise.storage import files
from ctdenoise.storage.publish import staged


@pytest.fixture()
def s3(object_store, request):
    """A fresh folder in the bucket for one test."""
    return object_store.url(f"storage/{request.node.name}")


def test_copy_tree_writes_empty_files_and_needs_no_folder_markers(object_store, s3, tmp_path):
    source = tmp_path / "model"
    (source / "variables").mkdir(parents=True)
    (source / "saved_model.pb").write_bytes(b"pb")
    (source / "variables" / "empty.index").write_bytes(b"")
    (source / "done.json").write_text("{}")
    files.copy_tree(str(source), files.join(s3, "a"), last="done.json")  # local -> bucket
    files.copy_tree(files.join(s3, "a"), files.join(s3, "b"))  # bucket -> bucket: S3 cannot copy an empty object
    assert object_store.keys(files.join(s3, "b")) == ["done.json", "saved_model.pb", "variables/empty.index"]
    assert object_store.read(files.join(s3, "b/variables/empty.index")) == b""
    files.copy_tree(files.join(s3, "b"), str(tmp_path / "back"))  # bucket -> local
    assert (tmp_path / "back" / "variables" / "empty.index").read_bytes() == b""
    assert files.size(files.join(s3, "b/saved_model.pb")) == 2


def test_empty_remote_folders_do_not_exist_and_list_as_empty(s3):
    files.makedirs(files.join(s3, "made"))
    assert not files.exists(files.join(s3, "made")) and not files.isdir(files.join(s3, "made"))
    assert files.listdir(files.join(s3, "made")) == [] and list(files.walk(files.join(s3, "made"))) == []
    files.write_text(files.join(s3, "made/x.txt"), "x")
    assert files.isdir(files.join(s3, "made")) and files.listdir(files.join(s3, "made")) == ["x.txt"]
    with pytest.raises(NotADirectoryError):
        files.listdir(files.join(s3, "made/x.txt"))


def test_move_and_remove_leave_siblings_with_the_same_prefix_alone(object_store, s3):
    for name in ("d1", "d10", "d1.txt"):
        files.write_text(files.join(s3, f"{name}/f.txt" if "." not in name else name), name)
    files.write_bytes(files.join(s3, "d1/sub/empty"), b"")
    files.move_tree(files.join(s3, "d1"), files.join(s3, "d2"))
    assert object_store.keys(s3) == ["d1.txt", "d10/f.txt", "d2/f.txt", "d2/sub/empty"]
    files.remove_tree(files.join(s3, "d2"))
    files.remove_tree(files.join(s3, "missing"))
    assert object_store.keys(s3) == ["d1.txt", "d10/f.txt"]


def test_publish_into_a_bucket_commits_last_and_cleans_up(object_store, s3):
    target = files.join(s3, "serving/7")
    with staged(target, commit_last="ctdenoise_model.json") as staging:
        assert files.split(staging)[0] == files.join(s3, "serving")
        files.write_text(files.join(staging, "saved_model.pb"), "pb")
        files.write_text(files.join(staging, "ctdenoise_model.json"), "{}")
    assert object_store.keys(files.join(s3, "serving")) == ["7/ctdenoise_model.json", "7/saved_model.pb"]
    with pytest.raises(RuntimeError), staged(files.join(s3, "serving/8")) as staging:
        files.write_text(files.join(staging, "saved_model.pb"), "half")
        raise RuntimeError("killed half-way")
    assert object_store.keys(files.join(s3, "serving")) == ["7/ctdenoise_model.json", "7/saved_model.pb"]


def test_listing_and_fingerprint_of_a_bucket_data_root(object_store, s3, tmp_path):
    folder = tmp_path / "dicom"
    for rel in ("P1/LDCT/1", "P1/NDCT/1", ".hidden"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(rel.encode())
    root = object_store.upload_tree(folder, "storage/data-root")
    assert files.list_tree(root).files == [".hidden", "P1/LDCT/1", "P1/NDCT/1"]
    first = files.fingerprint(root)
    assert files.fingerprint(root) == first
    files.write_text(files.join(root, "P1/LDCT/1"), "changed")
    assert files.fingerprint(root) != first
    assert files.absolute(root) == root and files.absolute("rel") == str(Path("rel").resolve())


def test_a_missing_object_reads_as_file_not_found_and_its_staging_counts_as_abandoned(object_store, s3):
    with pytest.raises(FileNotFoundError, match="no such file"):
        files.read_text(files.join(s3, "missing.json"))
    abandoned = files.join(s3, "serving/.9.partial-dead0000")  # a killed push's copy, its .owner never written
    files.write_text(files.join(abandoned, "saved_model.pb"), "half")
    with staged(files.join(s3, "serving/9")) as staging:
        files.write_text(files.join(staging, "saved_model.pb"), "pb")
    assert object_store.keys(files.join(s3, "serving")) == ["9/saved_model.pb"]


def test_copying_a_missing_folder_or_moving_onto_an_existing_one_is_refused(s3, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        files.copy_tree(files.join(s3, "missing"), str(tmp_path / "copy"))
    for name in ("a", "b"):
        files.write_text(files.join(s3, f"{name}/f.txt"), name)
    with pytest.raises(FileExistsError, match="already exists"):
        files.move_tree(files.join(s3, "a"), files.join(s3, "b"))
    assert files.read_text(files.join(s3, "b/f.txt")) == "b" and files.read_text(files.join(s3, "a/f.txt")) == "a"


def test_a_publish_copying_into_a_bucket_is_not_taken_for_abandoned(object_store, s3, monkeypatch):
    target, copy_file, started = files.join(s3, "serving/3"), files.copy_file, list[str]()

    def copy_while_another_publish_of_the_name_starts(source: str, dest: str) -> None:
        if not started:  # the other publish clears abandoned staging folders of the name, then gives up
            started.append(dest)
            with pytest.raises(RuntimeError), staged(target):
                raise RuntimeError("the other publish fails")
        copy_file(source, dest)

    monkeypatch.setattr(files, "copy_file", copy_while_another_publish_of_the_name_starts)
    with staged(target, commit_last="saved_model.pb") as staging:
        files.write_text(files.join(staging, "variables/variables.index"), "index")
        files.write_text(files.join(staging, "saved_model.pb"), "pb")
    assert started and object_store.keys(files.join(s3, "serving")) == [
        "3/saved_model.pb",
        "3/variables/variables.index",
    ]
