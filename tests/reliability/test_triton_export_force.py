"""`dnx triton export --force` replaces only the model folders dnx wrote (issue 22, #15).

Every folder dnx writes carries a ``.dnx-model`` marker; an entry of the repository without it (the
user's own model, a file, a link) under a name the export would take is refused, in one line,
before anything is written.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (dnx[triton])")

from dnx.core.errors import DnxError  # noqa: E402
from dnx.runtime.serve.repository import MARKER, RepositoryOptions, export_repository  # noqa: E402

DNX_FOLDERS = ["fmnist", "fmnist_image", "fmnist_preprocess"]


def _snapshot(repo):
    return {str(p.relative_to(repo)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(repo.rglob("*"))}


def test_every_folder_dnx_writes_is_marked(tmp_path, fmnist_onnx):
    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu"))
    for name in DNX_FOLDERS:
        assert json.loads((repo / name / MARKER).read_text()) == {"written_by": "dnx triton export", "model": name}


def test_force_replaces_dnx_folders(tmp_path, fmnist_onnx):
    repo = tmp_path / "repo"
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu", max_batch=4))
    (repo / "someone_elses").mkdir()
    export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu", max_batch=2, force=True))
    assert "max_batch_size: 2" in (repo / "fmnist" / "config.pbtxt").read_text()
    assert sorted(p.name for p in repo.iterdir()) == [*DNX_FOLDERS, "someone_elses"]


def _users_model(repo):
    (repo / "fmnist" / "2").mkdir(parents=True)
    (repo / "fmnist" / "config.pbtxt").write_text('name: "fmnist"\nbackend: "python"\n')
    (repo / "fmnist" / "2" / "model.py").write_text("# the user's own model\n")


def _users_file(repo):
    repo.mkdir()
    (repo / "fmnist_image").write_text("the user's notes\n")


def _users_link(repo):
    (repo / "elsewhere" / "1").mkdir(parents=True)
    (repo / "fmnist_preprocess").symlink_to(repo / "elsewhere", target_is_directory=True)


def _old_unmarked(repo):  # looks like dnx's layout but carries no marker (written by hand, or copied)
    (repo / "fmnist" / "1").mkdir(parents=True)
    (repo / "fmnist" / "config.pbtxt").write_text('name: "fmnist"\n')


@pytest.mark.parametrize("setup", [_users_model, _users_file, _users_link, _old_unmarked],
                         ids=["users-model-with-version-2", "users-file", "users-link", "unmarked-folder"])
def test_force_refuses_what_dnx_did_not_write_and_writes_nothing(tmp_path, fmnist_onnx, setup):
    repo = tmp_path / "repo"
    setup(repo)
    before = _snapshot(repo)
    with pytest.raises(DnxError, match=r"--force replaces only model folders dnx wrote") as caught:
        export_repository([fmnist_onnx], repo, RepositoryOptions(kind="cpu", force=True))
    assert "\n" not in str(caught.value) and MARKER in str(caught.value)
    assert _snapshot(repo) == before  # nothing replaced, added, or left half-written


def test_cli_refusal_is_one_line_exit_1(tmp_path, fmnist_onnx, harness):
    repo = tmp_path / "repo"
    _users_model(repo)
    result = harness.run_dnx(["triton", "export", fmnist_onnx, "--repo", repo, "--kind", "cpu", "--force"], tmp_path)
    assert result.escaped is None and result.code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnx: --force replaces only model folders dnx wrote"), lines
    assert (repo / "fmnist" / "2" / "model.py").read_text() == "# the user's own model\n"
