#!/usr/bin/python3
"""Writes the broken models of tests/bad/ (one per error class) and expect.txt.

For maintainers: needs python3-onnx; the tests only read the committed files.
Each line of expect.txt: FILE<TAB>STATUS<TAB>text the error message must contain.
"""
import os
import onnx
from onnx import helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
expect = []


def save(name, model_or_bytes, status, text):
    path = os.path.join(HERE, name)
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    with open(path, "wb") as f:
        f.write(data)
    expect.append(f"{name}\t{status}\t{text}")


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def model(nodes, inputs, outputs, inits=(), opset=17, ir=8):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir
    return m


relu = model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("y", [2])])
good = relu.SerializeToString()

save("truncated.onnx", good[: len(good) // 2], "ONYX_ERR_INVALID_MODEL", "corrupt protobuf")
save("garbage.onnx", b"\xff\xfe this is not a model \x00\x01\x02", "ONYX_ERR_INVALID_MODEL",
     "not a valid ONNX model")
save("empty.onnx", b"", "ONYX_ERR_INVALID_MODEL", "empty file")

t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
t.data_type = 99
save("unknown_dtype.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
     "ONYX_ERR_INVALID_MODEL", "tensor \"w\" has unknown data_type 99")

save("empty_input_name.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("", [2])], [vi("y", [2])]),
     "ONYX_ERR_INVALID_MODEL", "graph input has an empty name")

save("duplicate_name.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="a"), helper.make_node("Neg", ["x"], ["y"], name="b")],
           [vi("x", [2])], [vi("y", [2])]),
     "ONYX_ERR_INVALID_MODEL", "output \"y\" is already produced by another node")

save("duplicate_initializer.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])],
           [helper.make_tensor("w", TensorProto.FLOAT, [2], [1, 2]), helper.make_tensor("w", TensorProto.FLOAT, [2], [3, 4])]),
     "ONYX_ERR_INVALID_MODEL", "value name \"w\" is defined twice")

save("wrong_attr_type.onnx",
     model([helper.make_node("LeakyRelu", ["x"], ["y"], name="lrelu", alpha=2)], [vi("x", [2])], [vi("y", [2])]),
     "ONYX_ERR_INVALID_MODEL", "node \"lrelu\" (LeakyRelu, opset 17): attribute alpha has type int, expected float")

t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
t.raw_data = b"\x00" * 7
del t.float_data[:]
save("data_length.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
     "ONYX_ERR_INVALID_MODEL", "tensor \"w\" has 7 bytes of raw_data, expected 8")

t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
t.dims[0] = 3
save("typed_count.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [3])], [vi("y", [3])], [t]),
     "ONYX_ERR_INVALID_MODEL", "tensor \"w\" has 2 values in float_data, expected 3")

t = helper.make_tensor("w", TensorProto.FLOAT, [1], [1.0])
t.dims[0] = 1 << 40
t.dims.append(1 << 40)
save("dims_overflow.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
     "ONYX_ERR_INVALID_MODEL", "tensor \"w\" has shape [1099511627776,1099511627776], whose size overflows")

t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
t.dims[0] = -2
save("negative_dim.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
     "ONYX_ERR_INVALID_MODEL", "tensor \"w\" has negative dimension -2")

save("negative_input_dim.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [-3])], [vi("y", [2])]),
     "ONYX_ERR_INVALID_MODEL", "graph input \"x\" has negative dimension -3")

for name, loc in (("external_escape.onnx", "../secret.bin"), ("external_absolute.onnx", "/etc/passwd")):
    t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    del t.float_data[:]
    t.data_location = TensorProto.EXTERNAL
    e = t.external_data.add(); e.key = "location"; e.value = loc
    save(name, model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
         "ONYX_ERR_INVALID_MODEL", f"external data path \"{loc}\" leaves the model's folder")

t = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
del t.float_data[:]
t.data_location = TensorProto.EXTERNAL
e = t.external_data.add(); e.key = "location"; e.value = "missing.bin"
save("external_missing.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])], [t]),
     "ONYX_ERR_IO", "tensor \"w\": cannot open external data")

save("unsupported_ops.onnx",
     model([helper.make_node("Relu", ["x"], ["a"], name="ok"),
            helper.make_node("FancyOp", ["a"], ["b"], name="f1"),
            helper.make_node("Conv", ["b", "b"], ["y"], name="c1")],
           [vi("x", [2])], [vi("y", [2])]),
     "ONYX_ERR_UNSUPPORTED", "2 unsupported nodes: node \"f1\" (FancyOp, domain \"\", opset 17); node \"c1\" (Conv")

save("unknown_input.onnx",
     model([helper.make_node("Add", ["x", "nowhere"], ["y"], name="add")], [vi("x", [2])], [vi("y", [2])]),
     "ONYX_ERR_INVALID_MODEL", "node \"add\" (Add) input \"nowhere\" is not a graph input")

save("cycle.onnx",
     model([helper.make_node("Add", ["x", "b"], ["a"], name="n1"), helper.make_node("Relu", ["a"], ["b"], name="n2")],
           [vi("x", [2])], [vi("a", [2])]),
     "ONYX_ERR_INVALID_MODEL", "the graph has a cycle through node")

save("no_output_producer.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("z", [2])]),
     "ONYX_ERR_INVALID_MODEL", "graph output \"z\" is not produced")

save("ir_version.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("y", [2])], ir=99),
     "ONYX_ERR_UNSUPPORTED", "IR version 99 is not supported")

save("opset_too_new.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("y", [2])], opset=40),
     "ONYX_ERR_UNSUPPORTED", "imports opset 40 of the default domain")

seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [2])
save("sequence_input.onnx",
     model([helper.make_node("Identity", ["s"], ["y"], name="i")], [seq], [vi("y", [2])]),
     "ONYX_ERR_UNSUPPORTED", "graph input \"s\" is a sequence")

save("shape_mismatch.onnx",
     model([helper.make_node("Add", ["x", "w"], ["y"], name="add")], [vi("x", [2, 3])], [vi("y", [2, 3])],
           [helper.make_tensor("w", TensorProto.FLOAT, [4], [1, 2, 3, 4])]),
     "ONYX_ERR_SHAPE", "node \"add\" (Add, opset 17)")

save("output_dtype_mismatch.onnx",
     model([helper.make_node("Relu", ["x"], ["y"], name="r")], [vi("x", [2])], [vi("y", [2], TensorProto.INT64)]),
     "ONYX_ERR_INVALID_MODEL", "graph output \"y\" is declared int64 but node \"r\" (Relu) produces float32")

def gradient_model(y, xs=("x",)):
    node = helper.make_node("Gradient", list(xs), ["dx"], name="grad", domain="ai.onnx.preview.training",
                            xs=list(xs), y=y)
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="r"), node], "g",
                          [vi("x", [2])], [vi("dx", [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17),
                                            helper.make_opsetid("ai.onnx.preview.training", 1)])
    m.ir_version = 8
    return m


save("gradient_unknown_y.onnx", gradient_model("nowhere"), "ONYX_ERR_INVALID_MODEL",
     "node \"grad\" (ai.onnx.preview.training.Gradient, opset 1): attribute y names \"nowhere\"")

with open(os.path.join(HERE, "expect.txt"), "w") as f:
    f.write("# file\tstatus\tsubstring of the message (written by make_bad.py)\n")
    f.write("\n".join(expect) + "\n")
print(len(expect), "bad models")

# A valid model with a bit of everything, for the truncation and byte-flip sweeps of
# tests/runtime/test_bad_models.c (not listed in expect.txt).
w1 = helper.make_tensor("w1", TensorProto.FLOAT, [3, 4], [0.1 * i for i in range(12)])
b1 = helper.make_tensor("b1", TensorProto.FLOAT, [3], [0.5, -0.5, 0.25])
shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])
valid = model([helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], name="fc", transB=1),
               helper.make_node("Relu", ["h"], ["r"], name="act"),
               helper.make_node("Constant", [], ["c"], name="const", value=helper.make_tensor("cv", TensorProto.FLOAT, [1], [2.0])),
               helper.make_node("Mul", ["r", "c"], ["m"], name="mul"),
               helper.make_node("Reshape", ["m", "shape"], ["rs"], name="reshape"),
               helper.make_node("Softmax", ["rs"], ["y"], name="sm", axis=-1)],
              [vi("x", ["batch", 4])], [vi("y", ["batch", 3])], [w1, b1, shape])
with open(os.path.join(HERE, "valid_small.onnx"), "wb") as f:
    f.write(valid.SerializeToString())
