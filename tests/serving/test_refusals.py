"""Why a version is refused: every load-time reason, raised by the runtime without HTTP."""

from __future__ import annotations

import re
import shutil

import onnx
import pytest
from serving_fixtures import publish_copy

from ensembles.errors import IntegrityError
from ensembles.manifest import InputSpec, OutputSpec
from ensembles.store import ModelStore, StoredVersion
from serving.errors import response_for
from serving.runtime import EnsembleRuntime


@pytest.fixture(scope="module")
def manifest(synthetic_store: ModelStore):
    return synthetic_store.load_manifest("toy", 1)


def _with_combiner(manifest, name: str, **update):
    info = manifest.combiners[name].model_copy(update=update)
    return manifest.model_copy(update={"combiners": {**manifest.combiners, name: info}})


def _refusal(manifest, folder) -> str:
    files = {relative: (folder / relative).read_bytes() for relative in manifest.files}
    with pytest.raises(IntegrityError) as caught:
        EnsembleRuntime(StoredVersion(manifest, folder, files))
    return str(caught.value)


def test_weight_average_file_absent_from_the_manifest(manifest, synthetic_store):
    broken = _with_combiner(
        manifest, "weight_average", state={"file": "nope.onnx", "members": ["m000"]}
    )
    message = _refusal(broken, synthetic_store.path("toy", 1))
    assert message == "combiner 'weight_average' names file 'nope.onnx', absent from the manifest"


def test_weight_average_of_unknown_members(manifest, synthetic_store):
    broken = _with_combiner(
        manifest, "weight_average", state={"file": "averaged.onnx", "members": ["m000", "m9"]}
    )
    message = _refusal(broken, synthetic_store.path("toy", 1))
    assert message == "combiner 'weight_average' averages unknown members ['m9']"


def test_unreadable_onnx_is_named_relative_to_the_store(manifest, synthetic_store, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(synthetic_store.path("toy", 1), folder)
    (folder / manifest.members[1].file).write_bytes(b"not a protobuf at all")
    message = _refusal(manifest, folder)
    assert message.startswith("toy/1/members/m001.onnx is not a readable ONNX model")
    assert str(tmp_path) not in message


def test_combiner_failing_on_the_warm_up(manifest, synthetic_store):
    state = dict(manifest.combiners["mean"].state)
    state["fitted"] = {**state["fitted"], "n_members": 5}
    message = _refusal(
        _with_combiner(manifest, "mean", state=state), synthetic_store.path("toy", 1)
    )
    assert message == (
        "combiner 'mean' fails on a warm-up batch: combiner 'mean' failed: MeanCombiner was "
        "fitted on 5 members but got 3. Pass the outputs of the members it was fitted on, in "
        "the same order."
    )


def test_manifest_without_members(manifest, synthetic_store):
    broken = manifest.model_copy(update={"members": []})
    assert _refusal(broken, synthetic_store.path("toy", 1)) == (
        "toy/1/manifest.json lists no members"
    )


def test_default_combiner_must_be_fitted(manifest, synthetic_store):
    broken = manifest.model_copy(update={"default_combiner": "median"})
    assert re.match(
        r"toy/1/manifest\.json: default combiner 'median' is not among the fitted combiners",
        _refusal(broken, synthetic_store.path("toy", 1)),
    )


def test_combiner_state_that_cannot_be_rebuilt(manifest, synthetic_store):
    broken = _with_combiner(manifest, "vote", state={"params": {}})
    message = _refusal(broken, synthetic_store.path("toy", 1))
    assert message.startswith("combiner 'vote' cannot be rebuilt: A combiner state must be")


def test_signature_input_name_and_missing_outputs(manifest, synthetic_store):
    folder = synthetic_store.path("toy", 1)
    renamed = manifest.model_copy(
        update={"input": InputSpec(name="features", feature_names=manifest.input.feature_names)}
    )
    assert _refusal(renamed, folder) == (
        "toy/1/members/m000.onnx: expected one input 'features', found ['input']"
    )
    output = manifest.output.model_dump()
    with_variance = manifest.model_copy(
        update={"output": OutputSpec(**{**output, "variance_name": "variance"})}
    )
    assert _refusal(with_variance, folder) == (
        "toy/1/members/m000.onnx: outputs ['variance'] promised by the manifest are missing"
    )


def test_unexpected_exceptions_become_a_500_naming_their_type():
    response = response_for(ValueError("boom"))
    assert response.status_code == 500
    assert response.body == b'{"error":"internal error: ValueError: boom"}'


def test_load_wraps_other_failures_naming_the_version(synthetic_store, tmp_path):
    # A resealed manifest (its checksum matches) whose averaged model lists its members as
    # a number: building the runtime fails with a TypeError no check anticipated.
    store = ModelStore(tmp_path / "store")
    shutil.copytree(synthetic_store.path("toy", 1).parent, store.root / "toy")

    def members_as_a_number(folder, manifest):
        manifest["combiners"]["weight_average"]["state"]["members"] = 3

    version = publish_copy(store, "toy", members_as_a_number)
    with pytest.raises(
        IntegrityError,
        match=rf"^toy version {version} cannot be loaded: TypeError: 'int' object is not "
        "iterable$",
    ) as caught:
        EnsembleRuntime.load(store, "toy", version)
    assert type(caught.value.__cause__) is TypeError


def test_members_that_cannot_be_fused(manifest, synthetic_store, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(synthetic_store.path("toy", 1), folder)
    member = folder / manifest.members[0].file
    model = onnx.load(member)
    del model.opset_import[:]
    onnx.save(model, member)
    assert _refusal(manifest, folder) == (
        "toy/1: members cannot run together: member has no opset import for the default ONNX domain"
    )
