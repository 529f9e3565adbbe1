"""Writes gene-fusion.yaml, the Kubeflow Pipelines v2 IR of the gene-fusion pipeline.

The IR is committed (kgf-up embeds it and `kgf-up pipeline spec` prints it); this script is how
it is made, with the kfp SDK pinned in ../requirements.txt, so that its shape is the SDK's own.
Run it after changing a step's flags: `python pipeline/spec/generate.py`; check_spec.py fails
when the committed file differs from what this writes.

Every executor's image is the placeholder `kgf-step:dev`; kgf-up replaces it structurally with
the image it built (registry/kgf-step:<version>-<hash>). The model steps ask for one
`nvidia.com/gpu`; a CPU run removes `container.resources.accelerator` from every executor (the
steps run `--device auto`, which falls back to the CPU) and uses the CPU image.

The last step, `deploy`, runs only when test-fc's event-level F1 (fusion events called with at
least 2 supporting reads and the right partner pair; an output parameter) is at least the
`deploy_threshold` parameter (a KFP condition): it copies the model to
`<model_store>/<run id>` and creates or updates the InferenceService `gene-fusion` and its
PodMonitor (kgf-step deploy), asking for `serving_gpus` GPUs for the predictor.
"""

import pathlib
import sys

from kfp import compiler, dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

IMAGE = "kgf-step:dev"
HERE = pathlib.Path(__file__).resolve().parent
SPEC = HERE / "gene-fusion.yaml"
EXEC = "{{$}}"  # the executor input: the steps write KFP metrics metadata from it


@dsl.container_component
def dataset(
    preset: str,
    seed: int,
    fusions_per_gene: int,
    read_length: int,
    k: int,
    words: int,
    coverage: float,
    error_rate: float,
    train: Output[Dataset],
    val: Output[Dataset],
    test: Output[Dataset],
    labels: Output[Dataset],
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=[
            "dataset", "--preset", preset, "--seed", seed,
            "--fusions-per-gene", fusions_per_gene, "--read-length", read_length,
            "--k", k, "--words", words, "--coverage", coverage, "--error-rate", error_rate,
            "--train-out", train.path, "--val-out", val.path, "--test-out", test.path,
            "--labels-out", labels.path, "--executor-input", EXEC,
        ],
    )


def _train_args(lr, batch_size, epochs, patience, clip):
    return ["--lr", lr, "--batch-size", batch_size, "--epochs", epochs,
            "--patience", patience, "--clip", clip]


@dsl.container_component
def train_gc(
    preset: str, seed: int, lr: float, batch_size: int, epochs: int, patience: int, clip: float,
    train: Input[Dataset], val: Input[Dataset], labels: Input[Dataset],
    model: Output[Model], metrics: Output[Metrics],
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=["train-gc", "--preset", preset, "--seed", seed, "--device", "auto",
              *_train_args(lr, batch_size, epochs, patience, clip),
              "--train", train.path, "--val", val.path, "--labels", labels.path,
              "--model-out", model.path, "--metrics-out", metrics.path,
              "--executor-input", EXEC],
    )


@dsl.container_component
def test_gc(
    preset: str, seed: int, batch_size: int,
    test: Input[Dataset], labels: Input[Dataset], model: Input[Model],
    metrics: Output[Metrics], classification: Output[ClassificationMetrics],
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=["test-gc", "--preset", preset, "--seed", seed, "--device", "auto",
              "--batch-size", batch_size, "--test", test.path, "--labels", labels.path,
              "--model", model.path, "--metrics-out", metrics.path,
              "--classification-out", classification.path, "--executor-input", EXEC],
    )


@dsl.container_component
def train_fc(
    preset: str, seed: int, lr: float, batch_size: int, epochs: int, patience: int, clip: float,
    train: Input[Dataset], val: Input[Dataset], labels: Input[Dataset], gc_model: Input[Model],
    model: Output[Model], metrics: Output[Metrics],
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=["train-fc", "--preset", preset, "--seed", seed, "--device", "auto",
              *_train_args(lr, batch_size, epochs, patience, clip),
              "--train", train.path, "--val", val.path, "--labels", labels.path,
              "--gc-model", gc_model.path, "--model-out", model.path,
              "--metrics-out", metrics.path, "--executor-input", EXEC],
    )


@dsl.container_component
def test_fc(
    preset: str, seed: int, batch_size: int,
    test: Input[Dataset], labels: Input[Dataset], gc_model: Input[Model], model: Input[Model],
    metrics: Output[Metrics], classification: Output[ClassificationMetrics],
    event_f1: dsl.OutputPath(float),
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=["test-fc", "--preset", preset, "--seed", seed, "--device", "auto",
              "--batch-size", batch_size, "--test", test.path, "--labels", labels.path,
              "--gc-model", gc_model.path, "--model", model.path,
              "--metrics-out", metrics.path, "--classification-out", classification.path,
              "--event-f1-out", event_f1,
              "--executor-input", EXEC],
    )


@dsl.container_component
def deploy(
    model_store: str, s3_endpoint: str, serving_gpus: int,
    test: Input[Dataset], labels: Input[Dataset], gc_model: Input[Model], model: Input[Model],
):
    return dsl.ContainerSpec(
        image=IMAGE,
        command=["kgf-step"],
        args=["deploy", "--gc-model", gc_model.path, "--fc-model", model.path,
              "--labels", labels.path, "--test", test.path, "--store", model_store, "--s3-endpoint", s3_endpoint,
              "--gpus", serving_gpus, "--run", dsl.PIPELINE_JOB_ID_PLACEHOLDER],
    )


def _gpu(task):
    task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    # Only the dataset step is a pure function of its parameters worth reusing; model steps
    # always run, so a rerun measures the model again.
    task.set_caching_options(False)
    return task


@dsl.pipeline(
    name="gene-fusion",
    description="Gene-fusion detection over k-mer sentences: dataset -> gene classifier -> fusion classifier (kgf-up)",
)
def gene_fusion(
    preset: str = "default",
    seed: int = 42,
    fusions_per_gene: int = 30,
    read_length: int = 150,
    k: int = 6,
    words: int = 20,
    coverage: float = 10.0,
    error_rate: float = 0.005,
    # The default preset's training settings (pipeline/src/config.rs): a parameter is always
    # passed as a flag, and a flag overrides the preset, so these must be the preset's or the
    # cluster trains another model than `kgf-step all --preset default`.
    lr: float = 1e-3,
    epochs: int = 30,
    clip: float = 0.5,
    gc_batch_size: int = 64,
    gc_patience: int = 3,
    fc_batch_size: int = 512,
    fc_patience: int = 5,
    # Event F1 at N = 2: about what minimap2 scores as a fusion caller on the default preset's
    # held-out events (0.954 [0.914, 0.991]; STAR 1.000); below that, a user is better served by
    # an aligner (docs/pipeline.md, the deploy gate).
    deploy_threshold: float = 0.9,
    serving_gpus: int = 1,
    model_store: str = "s3://models/gene-fusion",
    s3_endpoint: str = "http://minio.minio.svc:9000",
):
    data = dataset(
        preset=preset, seed=seed, fusions_per_gene=fusions_per_gene, read_length=read_length,
        k=k, words=words, coverage=coverage, error_rate=error_rate,
    ).set_display_name("dataset")
    data.set_caching_options(True)
    hp = dict(preset=preset, seed=seed, lr=lr, epochs=epochs, clip=clip)
    gc = _gpu(train_gc(train=data.outputs["train"], val=data.outputs["val"],
                       labels=data.outputs["labels"], batch_size=gc_batch_size,
                       patience=gc_patience, **hp).set_display_name("train-gc"))
    _gpu(test_gc(preset=preset, seed=seed, batch_size=gc_batch_size, test=data.outputs["test"],
                 labels=data.outputs["labels"], model=gc.outputs["model"]).set_display_name("test-gc"))
    fc = _gpu(train_fc(train=data.outputs["train"], val=data.outputs["val"],
                       labels=data.outputs["labels"], gc_model=gc.outputs["model"],
                       batch_size=fc_batch_size, patience=fc_patience,
                       **hp).set_display_name("train-fc"))
    fc_test = _gpu(test_fc(preset=preset, seed=seed, batch_size=gc_batch_size,
                           test=data.outputs["test"], labels=data.outputs["labels"],
                           gc_model=gc.outputs["model"],
                           model=fc.outputs["model"]).set_display_name("test-fc"))
    with dsl.If(fc_test.outputs["event_f1"] >= deploy_threshold,
                name="good-enough-to-serve"):
        served = deploy(model_store=model_store, s3_endpoint=s3_endpoint,
                        serving_gpus=serving_gpus, test=data.outputs["test"],
                        labels=data.outputs["labels"],
                        gc_model=gc.outputs["model"],
                        model=fc.outputs["model"]).set_display_name("deploy")
        served.set_caching_options(False)


def render(path: pathlib.Path) -> None:
    compiler.Compiler().compile(gene_fusion, str(path))


if __name__ == "__main__":
    render(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else SPEC)
