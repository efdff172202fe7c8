"""Generate ``example_repo/models/mlp/1/model.onnx``: a 64 -> 128 -> 10 MLP with fixed weights.

The graph is Gemm + Relu + Gemm + Softmax over a dynamic batch dimension. Weights come from a
seeded numpy generator and every field that could vary between runs (producer, versions) is
pinned, so the output is byte-for-byte reproducible: ``--check`` verifies the committed file.

    python example_repo/scripts/make_onnx_model.py            # (re)write the model
    python example_repo/scripts/make_onnx_model.py --check    # exit 1 if the file differs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "models" / "mlp" / "1" / "model.onnx"
SEED = 20240601
IN_FEATURES, HIDDEN, OUT_FEATURES = 64, 128, 10
# Pinned so that a newer onnx package does not change the bytes; opset 17 / IR 8 load in any
# onnxruntime >= 1.13.
OPSET, IR_VERSION = 17, 8


def build_model() -> onnx.ModelProto:
    """Build the MLP graph with seeded He-initialised weights."""
    rng = np.random.default_rng(SEED)
    w1 = rng.standard_normal((HIDDEN, IN_FEATURES)) * np.sqrt(2.0 / IN_FEATURES)
    w1 = w1.astype(np.float32)
    b1 = np.zeros(HIDDEN, dtype=np.float32)
    w2 = rng.standard_normal((OUT_FEATURES, HIDDEN)) * np.sqrt(2.0 / HIDDEN)
    w2 = w2.astype(np.float32)
    b2 = np.zeros(OUT_FEATURES, dtype=np.float32)

    nodes = [
        helper.make_node("Gemm", ["INPUT0", "w1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["h_relu"], name="relu"),
        helper.make_node("Gemm", ["h_relu", "w2", "b2"], ["logits"], name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["OUTPUT0"], name="softmax", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        inputs=[helper.make_tensor_value_info("INPUT0", TensorProto.FLOAT, ["batch", IN_FEATURES])],
        outputs=[
            helper.make_tensor_value_info("OUTPUT0", TensorProto.FLOAT, ["batch", OUT_FEATURES])
        ],
        initializer=[
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(b1, "b1"),
            numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(b2, "b2"),
        ],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="pytest-triton-perf example_repo/scripts/make_onnx_model.py",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def main(argv: list[str] | None = None) -> int:
    """Write the model, or with ``--check`` compare it with the file on disk."""
    parser = argparse.ArgumentParser(description="Generate (or --check) the mlp example model.")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="PATH",
        help=f"where to write the model (default: {DEFAULT_OUTPUT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if PATH differs from a fresh build",
    )
    args = parser.parse_args(argv)

    data = build_model().SerializeToString(deterministic=True)
    if args.check:
        current = args.output.read_bytes() if args.output.exists() else b""
        if current != data:
            print(f"{args.output} differs from a fresh build: rerun {sys.argv[0]}", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date ({len(data)} bytes)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"wrote {args.output} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
