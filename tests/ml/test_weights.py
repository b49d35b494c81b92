"""Weights as safetensors bytes: round trips, foreign files and models that do not fit."""

from __future__ import annotations

import io
import pickle
import struct

import pytest
import torch

from adaptive.ml.architectures import TabularModel, build_model
from adaptive.ml.preprocessing import InputSpec
from adaptive.ml.weights import (
    WeightsError,
    check_state_dict,
    load_into,
    load_state_dict_bytes,
    state_dict_to_bytes,
)
from tests.ml.samples import SPEC, random_batch


def make_model(name: str = "mlp", seed: int = 0, spec: InputSpec = SPEC, n_outputs: int = 1) -> TabularModel:
    torch.manual_seed(seed)
    return build_model(name, {"hidden": [16, 8]}, spec, n_outputs).eval()


@pytest.mark.parametrize("name", ["mlp", "deepfm"])
def test_round_trip_gives_identical_outputs(name: str) -> None:
    trained, fresh = make_model(name, seed=0, n_outputs=3), make_model(name, seed=1, n_outputs=3)
    batch = random_batch(SPEC, n=16)
    assert not torch.equal(trained(batch), fresh(batch))

    load_into(fresh, load_state_dict_bytes(state_dict_to_bytes(trained)))

    assert torch.equal(trained(batch), fresh(batch))
    assert torch.equal(trained.embed(batch), fresh.embed(batch))


def test_loaded_tensors_are_cpu_copies() -> None:
    data = state_dict_to_bytes(make_model())

    tensors = load_state_dict_bytes(bytearray(data))

    assert set(tensors) == set(make_model().state_dict())
    assert all(tensor.device.type == "cpu" for tensor in tensors.values())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a safetensors file: 0 bytes is too short"),
        (b"hello", "not a safetensors file: 5 bytes is too short"),
        (b"\xff" * 64, "not a safetensors file: header length"),
        (struct.pack("<Q", 1000) + b"{}", "does not fit a 10-byte file"),
        (struct.pack("<Q", 4) + b"abcd", "the header is not a JSON object"),
        (struct.pack("<Q", 4) + b'{"a"', "not a safetensors file: "),
        (
            struct.pack("<Q", 58) + b'{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}    ' + b"\0" * 8,
            "not a safetensors file: ",
        ),
    ],
)
def test_non_safetensors_bytes_are_rejected(data: bytes, message: str) -> None:
    with pytest.raises(WeightsError) as excinfo:
        load_state_dict_bytes(data)

    assert message in str(excinfo.value)


def test_truncated_file_is_rejected() -> None:
    data = state_dict_to_bytes(make_model())

    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_state_dict_bytes(data[:-4])


def test_weights_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="weights must be bytes"):
        load_state_dict_bytes("not bytes")  # type: ignore[arg-type]


# --- pickles are never unpickled ----------------------------------------------------------------

UNPICKLED: list[str] = []


def _record_unpickling() -> str:
    UNPICKLED.append("ran")
    return "payload"


class _Trap:
    """Pickles to a call of _record_unpickling: unpickling it runs code, which the test can see."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_record_unpickling, ())


@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_save_pickles_are_rejected_without_being_unpickled(zip_format: bool) -> None:
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(2), "trap": _Trap()}, buffer, _use_new_zipfile_serialization=zip_format)
    data = buffer.getvalue()
    UNPICKLED.clear()

    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_state_dict_bytes(data)

    assert UNPICKLED == []
    # The file really is a live trap: a pickle-based loader would have run the code.
    torch.load(io.BytesIO(data), weights_only=False)
    assert UNPICKLED == ["ran"]


def test_plain_pickle_is_rejected_without_being_unpickled() -> None:
    data = pickle.dumps(_Trap())
    UNPICKLED.clear()

    with pytest.raises(WeightsError, match="not a safetensors file"):
        load_state_dict_bytes(data)

    assert UNPICKLED == []


# --- weights that do not fit the model ----------------------------------------------------------


def test_shape_mismatch_is_reported_with_names() -> None:
    bigger_vocab = InputSpec(n_numeric=3, cardinalities=(5, 6))
    tensors = load_state_dict_bytes(state_dict_to_bytes(make_model(spec=bigger_vocab)))

    problems = check_state_dict(make_model(), tensors)

    assert problems == ["embeddings.1.weight: expected (4, 8), got (6, 8)"]


def test_head_shape_mismatch_is_reported() -> None:
    tensors = load_state_dict_bytes(state_dict_to_bytes(make_model(n_outputs=3)))

    problems = check_state_dict(make_model(n_outputs=1), tensors)

    assert problems == ["output.weight: expected (1, 8), got (3, 8)", "output.bias: expected (1,), got (3,)"]


def test_missing_and_unexpected_keys_are_reported() -> None:
    tensors = make_model().state_dict()
    del tensors["output.bias"]
    tensors["extra.weight"] = torch.zeros(3)

    problems = check_state_dict(make_model(), tensors)

    assert problems == ["output.bias: missing", "extra.weight: unexpected (the model has no such parameter)"]


def test_integer_and_non_finite_float_parameters_are_reported() -> None:
    tensors = make_model().state_dict()
    tensors["output.bias"] = torch.zeros(1, dtype=torch.int64)
    tensors["output.weight"] = torch.full((1, 8), float("nan"))

    problems = check_state_dict(make_model(), tensors)

    assert problems == [
        "output.weight: contains NaN or infinite values",
        "output.bias: expected a floating-point dtype, got torch.int64",
    ]


def test_architecture_mismatch_fails_loading_and_leaves_the_model_untouched() -> None:
    model = make_model("mlp")
    before = {key: value.clone() for key, value in model.state_dict().items()}
    tensors = load_state_dict_bytes(state_dict_to_bytes(make_model("deepfm")))

    with pytest.raises(WeightsError) as excinfo:
        load_into(model, tensors)

    message = str(excinfo.value)
    assert message.startswith("weights do not fit the model: ")
    assert "layers.0.weight: expected (16, 19), got (16, 40)" in message
    assert message.endswith("more")  # only the first few problems are quoted
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())


def test_float16_weights_load_into_a_float32_model() -> None:
    source = make_model(seed=3)
    tensors = {key: value.half() for key, value in source.state_dict().items()}
    model = make_model(seed=4)

    load_into(model, tensors)

    loaded, original = model.state_dict()["output.weight"], source.state_dict()["output.weight"]
    assert torch.equal(loaded, original.half().float())
