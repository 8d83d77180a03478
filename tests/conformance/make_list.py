#!/usr/bin/python3
"""make_list.py — regenerate tests/conformance/must_pass.txt and excluded.txt.

For maintainers (needs python3 with the onnx package; the tests never run it). Run it after
adding ops to ops/ops.def:

    /usr/bin/python3 tests/conformance/make_list.py [--data DIR] [--ops FILE] [--out DIR]

It scans DIR/{node,pytorch-converted,pytorch-operator,simple}/* (DIR defaults to
/usr/share/libonnx-testdata/data) and keeps every case all of whose ops — recursively, through
subgraphs and after inlining model-local functions — are listed in ops/ops.def with the
imported opset inside the listed range. Of those, cases that use string, float16 or bfloat16
tensors anywhere (graph inputs/outputs/value_info, initializers, tensor attributes, Cast/CastLike
targets and other 'to'/'dtype' attributes, test data files) or sequence/optional/map/sparse
types go to excluded.txt with the reason; the rest go to must_pass.txt. Both files start with a
`root:` line, so `onyx test --list FILE` finds the cases.
"""
import argparse
import os
import re
import sys

import onnx
from onnx import TensorProto

SUITES = ["node", "pytorch-converted", "pytorch-operator", "simple"]
BAD_DTYPES = {
    TensorProto.STRING: "string",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
}
HERE = os.path.dirname(os.path.abspath(__file__))


def norm_domain(d):
    return "" if d in ("", "ai.onnx") else d


def parse_ops_def(path):
    """{(domain, op_type): [(since, until), ...]} from the OP*(...) lines of ops.def."""
    ops = {}
    pat = re.compile(r'^\s*OP\w*\(\s*"([^"]*)"\s*,\s*(\w+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,')
    with open(path) as f:
        for line in f:
            m = pat.match(line)
            if m:
                key = (norm_domain(m.group(1)), m.group(2))
                ops.setdefault(key, []).append((int(m.group(3)), int(m.group(4))))
    if not ops:
        sys.exit("make_list.py: no OP(...) lines in %s" % path)
    return ops


class Scan:
    """What one model needs: unsupported ops and type problems."""

    def __init__(self, ops, functions):
        self.ops = ops
        self.functions = functions
        self.unsupported = set()
        self.type_problems = set()

    def check_type(self, tp, where):
        kind = tp.WhichOneof("value")
        if kind == "tensor_type":
            self.check_dtype(tp.tensor_type.elem_type, where)
        elif kind in ("sequence_type", "optional_type", "map_type", "sparse_tensor_type"):
            self.type_problems.add("%s type (%s)" % (kind[: -len("_type")], where))

    def check_dtype(self, dt, where):
        if dt in BAD_DTYPES:
            self.type_problems.add("%s tensor (%s)" % (BAD_DTYPES[dt], where))

    def graph(self, g, opsets, depth=0):
        if depth > 32:
            return
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            self.check_type(vi.type, vi.name or "value")
        for t in g.initializer:
            self.check_dtype(t.data_type, "initializer %s" % t.name)
        if len(g.sparse_initializer):
            self.type_problems.add("sparse initializer")
        self.nodes(g.node, opsets, depth)

    def nodes(self, nodes, opsets, depth):
        for n in nodes:
            dom = norm_domain(n.domain)
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    self.check_dtype(a.t.data_type, "%s attribute %s" % (n.op_type, a.name))
                elif a.type == onnx.AttributeProto.TENSORS:
                    for t in a.tensors:
                        self.check_dtype(t.data_type, "%s attribute %s" % (n.op_type, a.name))
                elif a.type == onnx.AttributeProto.INT and a.name in ("to", "dtype"):
                    self.check_dtype(a.i, "%s to" % n.op_type)
                elif a.type == onnx.AttributeProto.SPARSE_TENSOR:
                    self.type_problems.add("sparse tensor attribute")
                elif a.type == onnx.AttributeProto.GRAPH:
                    self.graph(a.g, opsets, depth + 1)
                elif a.type == onnx.AttributeProto.GRAPHS:
                    for g in a.graphs:
                        self.graph(g, opsets, depth + 1)
            fn = self.functions.get((dom, n.op_type))
            if fn is not None:
                # inline: the function body runs with the function's own opset imports
                fops = dict(opsets)
                fops.update({norm_domain(o.domain): o.version for o in fn.opset_import})
                if depth < 32:
                    self.nodes(fn.node, fops, depth + 1)
                continue
            version = opsets.get(dom)
            ranges = self.ops.get((dom, n.op_type), [])
            if version is None or not any(lo <= version <= hi for lo, hi in ranges):
                self.unsupported.add("%s%s-%s" % (dom + "." if dom else "", n.op_type, version))


def scan_case(case_dir, ops):
    m = onnx.load(os.path.join(case_dir, "model.onnx"), load_external_data=False)
    opsets = {norm_domain(o.domain): o.version for o in m.opset_import}
    functions = {(norm_domain(f.domain), f.name): f for f in m.functions}
    s = Scan(ops, functions)
    s.graph(m.graph, opsets)
    for entry in sorted(os.listdir(case_dir)):
        sub = os.path.join(case_dir, entry)
        if not entry.startswith("test_data_set_") or not os.path.isdir(sub):
            continue
        for f in sorted(os.listdir(sub)):
            if not f.endswith(".pb"):
                continue
            t = TensorProto()
            try:
                with open(os.path.join(sub, f), "rb") as fh:
                    t.ParseFromString(fh.read())
            except Exception:  # a SequenceProto/OptionalProto/MapProto, not a tensor
                s.type_problems.add("non-tensor test data (%s)" % f)
                continue
            s.check_dtype(t.data_type, "test data %s" % f)
    return s


# Cases whose reference outputs do not follow from their own model.onnx (checked by hand against
# the case's generator in onnx/backend/test/case/node/).
DATA_BUGS = {
    "node/test_adam_multiple":
        "data bug: adam.py computes the outputs with epsilon=1e-2 but does not pass epsilon to the "
        "node, so the model uses the spec default 1e-6",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/libonnx-testdata/data")
    ap.add_argument("--ops", default=os.path.join(HERE, "..", "..", "ops", "ops.def"))
    ap.add_argument("--out", default=HERE)
    args = ap.parse_args()
    ops = parse_ops_def(args.ops)

    must, excluded, n_total, n_unsupported = [], [], 0, 0
    for suite in SUITES:
        sdir = os.path.join(args.data, suite)
        if not os.path.isdir(sdir):
            sys.exit("make_list.py: %s is missing: install libonnx-testdata" % sdir)
        for case in sorted(os.listdir(sdir)):
            cdir = os.path.join(sdir, case)
            if not os.path.isfile(os.path.join(cdir, "model.onnx")):
                continue
            n_total += 1
            rel = suite + "/" + case
            s = scan_case(cdir, ops)
            if s.unsupported:
                n_unsupported += 1
            elif rel in DATA_BUGS:
                excluded.append((rel, DATA_BUGS[rel]))
            elif s.type_problems:
                excluded.append((rel, "; ".join(sorted(s.type_problems))))
            else:
                must.append(rel)

    header = (
        "# Generated by tests/conformance/make_list.py from ops/ops.def; do not edit by hand.\n"
        "# Paths are relative to the root: line (onyx test --list reads it; --root DIR\n"
        "# overrides it). Of %d cases in %s:\n"
        "# %d must pass, %d excluded, %d need ops or opsets onyx does not implement.\n"
        % (n_total, ", ".join(SUITES), len(must), len(excluded), n_unsupported)
    )
    with open(os.path.join(args.out, "must_pass.txt"), "w") as f:
        f.write("# ONNX backend test cases that `onyx test --mode graph` must pass: every case\n")
        f.write("# whose ops (through subgraphs and model-local functions) are all in\n")
        f.write("# ops/ops.def for the imported opset, except those in excluded.txt.\n")
        f.write(header)
        f.write("root: %s\n" % args.data)
        for rel in must:
            f.write(rel + "\n")
    with open(os.path.join(args.out, "excluded.txt"), "w") as f:
        f.write("# ONNX backend test cases whose ops onyx implements but which use string,\n")
        f.write("# float16 or bfloat16 tensors, or sequence/optional/map/sparse types, or whose\n")
        f.write("# reference data is wrong; each line gives the reason after '#'.\n")
        f.write(header)
        f.write("root: %s\n" % args.data)
        for rel, why in excluded:
            f.write("%s  # %s\n" % (rel, why))
    print("must_pass.txt: %d cases, excluded.txt: %d cases (of %d; %d need other ops)"
          % (len(must), len(excluded), n_total, n_unsupported))


if __name__ == "__main__":
    main()
