"""Checks pipeline/spec/gene-fusion.yaml with the Kubeflow Pipelines SDK; exits non-zero if broken.

1. The SDK loads the IR as a component and compiles a pipeline that uses it.
2. Its shape is what kgf-up relies on: the five steps and their edges, every image the
   placeholder `kgf-step:dev`, one nvidia.com/gpu on the model steps only, caching on the
   dataset step only, artifacts passed between steps; and the `deploy` step alone inside a
   condition on test-fc's event-level F1 ≥ the `deploy_threshold` parameter.
3. With --kgf-step BIN: every flag in the executors' args is one the step's binary accepts.
4. It is what spec/generate.py writes (unless --no-fresh).

`--self-test` breaks copies of the spec in several ways and fails unless every copy is rejected.

    python -m venv .venv && .venv/bin/pip install -r pipeline/requirements.txt
    .venv/bin/python pipeline/check_spec.py [--kgf-step target/debug/kgf-step] [--self-test]
"""

import argparse
import copy
import re
import pathlib
import subprocess
import sys
import tempfile

import yaml
from kfp import compiler, components, dsl

HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "spec" / "gene-fusion.yaml"
IMAGE = "kgf-step:dev"
MODEL_STEPS = ["train-gc", "test-gc", "train-fc", "test-fc"]
EDGES = {
    "dataset": set(),
    "train-gc": {"dataset"},
    "test-gc": {"dataset", "train-gc"},
    "train-fc": {"dataset", "train-gc"},
    "test-fc": {"dataset", "train-gc", "train-fc"},
}
# The deploy step's condition task: after test-fc, comparing its output with the parameter.
CONDITION = "condition-1"
CONDITION_EXPR = ("inputs.parameter_values['pipelinechannel--test-fc-event_f1'] >= "
                  "inputs.parameter_values['pipelinechannel--deploy_threshold']")


class SpecError(Exception):
    pass


def check_sdk(path: pathlib.Path) -> None:
    """The SDK loads the IR and compiles a pipeline that runs it as a sub-pipeline."""
    try:
        gene_fusion = components.load_component_from_file(str(path))

        @dsl.pipeline(name="gene-fusion-check")
        def wrapper(seed: int = 7):
            gene_fusion(preset="tiny", seed=seed, read_length=20, k=3, words=8, lr=5e-3,
                        gc_batch_size=64, fc_batch_size=64, epochs=15)

        with tempfile.TemporaryDirectory() as tmp:
            compiler.Compiler().compile(wrapper, str(pathlib.Path(tmp) / "wrapper.yaml"))
    except Exception as e:  # the SDK raises many kinds; any of them means a broken spec
        raise SpecError(f"the kfp SDK rejects the spec: {type(e).__name__}: {e}") from e


def check_condition(ir: dict, tasks: dict) -> None:
    """`deploy` runs inside one condition: test-fc's event-level F1 >= deploy_threshold."""
    cond = tasks[CONDITION]
    if "test-fc" not in cond.get("dependentTasks", []):
        raise SpecError(f"{CONDITION} does not wait for test-fc: {cond.get('dependentTasks')}")
    expr = cond.get("triggerPolicy", {}).get("condition")
    if expr != CONDITION_EXPR:
        raise SpecError(f"{CONDITION}'s condition is {expr!r}, expected {CONDITION_EXPR!r}")
    comp = ir["components"].get(cond["componentRef"]["name"], {})
    inner = comp.get("dag", {}).get("tasks", {})
    if set(inner) != {"deploy"}:
        raise SpecError(f"{CONDITION} holds {sorted(inner)}, expected only deploy")
    dep = ir["components"].get(inner["deploy"]["componentRef"]["name"])
    if dep is None:
        raise SpecError("deploy names a missing component")
    container = ir["deploymentSpec"]["executors"][dep["executorLabel"]]["container"]
    if container.get("image") != IMAGE:
        raise SpecError(f"deploy's image is {container.get('image')!r}, not the placeholder {IMAGE!r}")
    if container.get("resources", {}).get("accelerator"):
        raise SpecError("deploy requests an accelerator; the GPUs are for the predictor it creates")
    if inner["deploy"].get("cachingOptions", {}).get("enableCache", False):
        raise SpecError("deploy has caching on; a rerun must deploy again")
    params = ir["root"]["inputDefinitions"]["parameters"]
    for p in ("deploy_threshold", "serving_gpus", "model_store"):
        if p not in params:
            raise SpecError(f"the pipeline has no parameter {p}")


def check_shape(ir: dict) -> None:
    executors = ir["deploymentSpec"]["executors"]
    tasks = ir["root"]["dag"]["tasks"]
    if set(tasks) != set(EDGES) | {CONDITION}:
        raise SpecError(f"steps are {sorted(tasks)}, expected {sorted(EDGES)} and {CONDITION}")
    check_condition(ir, tasks)
    for name, task in tasks.items():
        if name == CONDITION:
            continue
        deps = set(task.get("dependentTasks", []))
        if deps != EDGES[name]:
            raise SpecError(f"{name} depends on {sorted(deps)}, expected {sorted(EDGES[name])}")
        comp = ir["components"].get(task["componentRef"]["name"])
        if comp is None:
            raise SpecError(f"{name} names a missing component {task['componentRef']['name']}")
        container = executors[comp["executorLabel"]]["container"]
        if container.get("image") != IMAGE:
            raise SpecError(f"{name}'s image is {container.get('image')!r}, not the placeholder {IMAGE!r} kgf-up replaces")
        acc = container.get("resources", {}).get("accelerator")
        if name in MODEL_STEPS:
            if not acc or acc.get("resourceType") != "nvidia.com/gpu" or str(acc.get("resourceCount")) != "1":
                raise SpecError(f"{name} does not request one nvidia.com/gpu: {acc}")
        elif acc:
            raise SpecError(f"{name} requests an accelerator it does not use: {acc}")
        cache = task.get("cachingOptions", {}).get("enableCache", False)
        if cache != (name == "dataset"):
            raise SpecError(f"{name} has caching {'on' if cache else 'off'}; only the dataset step caches")
        for art in task.get("inputs", {}).get("artifacts", {}).values():
            producer = art.get("taskOutputArtifact", {}).get("producerTask")
            if producer not in EDGES[name]:
                raise SpecError(f"{name} takes an artifact from {producer!r}, not one of its upstream steps")


def check_flags(ir: dict, binary: str) -> None:
    for label, ex in ir["deploymentSpec"]["executors"].items():
        args = ex["container"]["args"]
        sub = args[0]
        help_text = subprocess.run([binary, sub, "--help"], capture_output=True, text=True, check=True).stdout
        for a in args:
            if isinstance(a, str) and a.startswith("--") and not re.search(re.escape(a) + r"(?![\w-])", help_text):
                raise SpecError(f"{label}: `kgf-step {sub}` has no flag {a}")


def check_fresh(path: pathlib.Path) -> None:
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, str(HERE / "spec"))
    import generate  # noqa: E402  (the generator lives beside the spec)

    with tempfile.TemporaryDirectory() as tmp:
        fresh = pathlib.Path(tmp) / "fresh.yaml"
        generate.render(fresh)
        if fresh.read_text() != path.read_text():
            raise SpecError(f"{path} differs from what spec/generate.py writes; run `python pipeline/spec/generate.py`")


def check(path: pathlib.Path, binary: str | None, fresh: bool) -> None:
    try:
        ir = yaml.safe_load(path.read_text())
        if not isinstance(ir, dict):
            raise SpecError("not a YAML mapping")
        check_sdk(path)
        check_shape(ir)
    except (KeyError, TypeError, yaml.YAMLError) as e:
        raise SpecError(f"malformed IR: {type(e).__name__}: {e}") from e
    if binary:
        check_flags(ir, binary)
    if fresh:
        check_fresh(path)


def breakages(ir: dict):
    """Broken copies of the spec, each with what was broken."""
    def mutate(desc, f):
        b = copy.deepcopy(ir)
        f(b)
        return desc, b

    ex = lambda b, s: b["deploymentSpec"]["executors"][f"exec-{s}"]["container"]  # noqa: E731
    tasks = lambda b: b["root"]["dag"]["tasks"]  # noqa: E731
    yield mutate("an image that is not the placeholder", lambda b: ex(b, "train-gc").update(image="kgf-step:latest"))
    yield mutate("no GPU on train-fc", lambda b: ex(b, "train-fc").pop("resources"))
    yield mutate("caching on a model step", lambda b: tasks(b)["test-gc"].update(cachingOptions={"enableCache": True}))
    yield mutate("a missing step", lambda b: tasks(b).pop("test-fc"))
    yield mutate("a dangling component reference", lambda b: tasks(b)["train-gc"]["componentRef"].update(name="comp-nope"))
    yield mutate("an artifact from a step that does not exist",
                 lambda b: tasks(b)["train-fc"]["inputs"]["artifacts"]["gc_model"]["taskOutputArtifact"].update(producerTask="nope"))
    yield mutate("an unknown flag", lambda b: ex(b, "dataset")["args"].append("--no-such-flag"))
    cond = lambda b: tasks(b)["condition-1"]  # noqa: E731
    yield mutate("deploy without its condition", lambda b: cond(b).pop("triggerPolicy"))
    yield mutate("a condition on another value",
                 lambda b: cond(b)["triggerPolicy"].update(condition="inputs.parameter_values['pipelinechannel--deploy_threshold'] >= 0.0"))
    yield mutate("a GPU on the deploy step",
                 lambda b: ex(b, "deploy").update(resources={"accelerator": {"resourceType": "nvidia.com/gpu", "resourceCount": "1"}}))
    yield mutate("a parameter of the wrong type", lambda b: b["root"]["inputDefinitions"]["parameters"]["seed"].update(parameterType="NOT_A_TYPE"))


def self_test(path: pathlib.Path, binary: str | None) -> None:
    ir = yaml.safe_load(path.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for desc, broken in breakages(ir):
            if desc == "an unknown flag" and not binary:
                continue
            p = pathlib.Path(tmp) / "broken.yaml"
            p.write_text(yaml.safe_dump(broken))
            try:
                check(p, binary, fresh=False)
            except SpecError as e:
                print(f"self-test: rejected {desc}: {e}")
                continue
            raise SpecError(f"self-test: a spec with {desc} passed the check")
        p = pathlib.Path(tmp) / "truncated.yaml"
        p.write_text(path.read_text()[: len(path.read_text()) // 2])
        try:
            check(p, binary, fresh=False)
        except SpecError as e:
            print(f"self-test: rejected a truncated file: {e}")
        else:
            raise SpecError("self-test: a truncated spec passed the check")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("spec", nargs="?", default=str(SPEC))
    ap.add_argument("--kgf-step", help="a built kgf-step binary, to check the executors' flags")
    ap.add_argument("--no-fresh", action="store_true", help="skip the comparison with spec/generate.py")
    ap.add_argument("--self-test", action="store_true", help="also check that broken specs are rejected")
    a = ap.parse_args()
    path = pathlib.Path(a.spec)
    try:
        check(path, a.kgf_step, fresh=not a.no_fresh)
        print(f"{path}: ok (kfp SDK loads and compiles it; steps, edges, images, GPUs and caching as expected)")
        if a.self_test:
            self_test(path, a.kgf_step)
            print("self-test: every broken spec was rejected")
    except SpecError as e:
        print(f"check_spec: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
