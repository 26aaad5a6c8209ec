"""Training step throughput: images/s of the pretrain and adversarial SRGAN steps, as JSON.

Settings (batch 16, generator 16 blocks x 64 filters, discriminator 64/1024, VGG54 content
with random weights = the same FLOPs as ImageNet weights):
    patch           HR 96x96,   x4 iso   (LR 24x24)
    paper-x4        HR 224x224, x4 iso   (LR 56x56, Exp. 1)
    paper-x8-aniso  HR 224x224, x8 aniso (LR 28x224, Exp. 2)
    selfsup         HR 96x96,   x4 aniso, the `srgan-tf self-supervised` networks (quick preset:
                    6 blocks x 32 filters, bicubic residual), pixel-MSE content loss

Each (setting, precision, jit) runs in its own process (clean dtype policy and peak RSS):
warm-up steps (tracing included), then --steps timed calls of the model's compiled train
function on one fixed in-memory batch (no input pipeline). Next to each step: this CPU's
measured 3x3 convolution throughput (16x96x96x64 -> 64, float32 and bfloat16) and the
fraction of it the step reaches, counting the step's FLOPs per image as
    pretrain:     3 G                      (generator forward + backward)
    adversarial:  3 G + 7 D + 3 V          (D: real fwd+bwd, fake fwd+bwd for its own loss,
                                            fake input gradient for the generator;
                                            V: VGG on HR and SR, backward through SR only)

    python benchmarks/bench_train.py                       # float32 and mixed_bfloat16, no XLA (~9 min)
    python benchmarks/bench_train.py --setting patch --jit both --steps 5
    python benchmarks/bench_train.py --setting patch --profile 12   # where a step's time goes
"""
import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "patch": dict(hr_size=96, mode="iso", scale=4),
    "paper-x4": dict(hr_size=224, mode="iso", scale=4),
    "paper-x8-aniso": dict(hr_size=224, mode="aniso", scale=8),
    "selfsup": dict(hr_size=96, mode="aniso", scale=4),
}
# Settings that time a preset's networks instead of the paper's.
PRESET_OF = {"selfsup": "quick"}
# Timed steps when --steps is not given: a 224x224 adversarial step takes tens of seconds here.
DEFAULT_STEPS = {"patch": 3, "paper-x4": 1, "paper-x8-aniso": 1}
BATCH = 16
# ANCHORS.md: images/s this project must reach on the 2-core AVX512-BF16 machine.
TARGETS = {("patch", "adversarial"): 6.6, ("paper-x4", "adversarial"): 1.2, ("patch", "pretrain"): 31.0}


def conv_gflops(dtype_name: str, repeats: int = 5):
    """Measured GFLOP/s of a 3x3 conv 64->64 on 16x96x96x64 (SAME) in the given dtype.

    Returns:
        (wall-clock GFLOP/s, GFLOP/s per CPU-second x cores, i.e. on idle cores).
    """
    import tensorflow as tf

    dtype = tf.as_dtype(dtype_name)
    images = tf.cast(tf.random.normal((16, 96, 96, 64)), dtype)
    kernel = tf.cast(tf.random.normal((3, 3, 64, 64)) * 0.05, dtype)
    conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
    for _ in range(2):
        conv(images, kernel).numpy()
    times = []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        conv(images, kernel).numpy()
        times.append((time.perf_counter() - start, time.process_time() - cpu_start))
    flops = 2 * 9 * 64 * 64 * 96 * 96 * 16
    wall, cpu = min(times)
    return flops / wall / 1e9, flops / (cpu / os.cpu_count()) / 1e9


def bench_config(setting: str, precision: str, jit: bool):
    from srgan_tf.config import ExperimentConfig
    from srgan_tf.presets import preset

    config = preset(PRESET_OF[setting]) if setting in PRESET_OF else ExperimentConfig()
    content = "mse" if setting in PRESET_OF else "vgg54"
    return config.updated(
        data={**SETTINGS[setting], "batch_size": BATCH, "patch_size": None},
        loss={"content_loss": content, "vgg_weights": "none"},
        train={"precision": precision, "jit_compile": jit, "strategy": "default"})


def step_gflops(config) -> dict:
    """GFLOPs per image of each phase's training step (see the module docstring)."""
    from srgan_tf.models.discriminator import discriminator_flops
    from srgan_tf.models.generator import generator_flops
    from srgan_tf.models.vgg import vgg_flops

    size, (sh, sw) = config.data.train_size, config.data.scale_hw
    generator = generator_flops(config.generator_spec(), (size // sh, size // sw))
    discriminator = discriminator_flops({"input_size": (size, size), "filters": config.model.discriminator_filters,
                                         "dense_units": config.model.discriminator_dense})
    vgg = 0 if config.loss.content_loss == "mse" else vgg_flops(config.loss.content_loss, (size, size))
    return {"pretrain": 3 * generator / 1e9,
            "adversarial": (3 * generator + 7 * discriminator + 3 * vgg) / 1e9,
            "generator_forward": generator / 1e9, "discriminator_forward": discriminator / 1e9,
            "vgg_forward": vgg / 1e9}


def op_times(step, top: int) -> list:
    """TensorFlow's profiler on one call of `step`: the `top` op types by time, as
    [op type, milliseconds, fraction] (durations of the ops on TensorFlow's compute threads,
    summed: two threads can run ops at once, so the total can exceed the wall time)."""
    import collections
    import glob
    import tempfile

    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        step()
        tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as handle:
            space.ParseFromString(handle.read())
    by_type = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if ":" in name and "::" not in name:  # "scope/op:OpType", not executor events
                    by_type[name.rsplit(":", 1)[1]] += event.duration_ps / 1e9
    total = sum(by_type.values()) or 1.0
    return [[kind, round(ms, 1), round(ms / total, 3)] for kind, ms in by_type.most_common(top)]


def measure(setting: str, precision: str, jit: bool, phases, steps: int, warmup: int,
            profile: int = 0) -> list:
    """Runs in a worker process: one model, both phases, timed train-function calls."""
    import numpy as np
    import tensorflow as tf

    from srgan_tf.data.degradation.degrade import degrade
    from srgan_tf.training.trainer import build_srgan, make_optimizers

    config = bench_config(setting, precision, jit)
    model = build_srgan(config)
    model.compile(*make_optimizers(config), jit_compile=jit)
    size = config.data.train_size
    coarse = np.random.default_rng(0).normal(size=(BATCH, size // 8, size // 8, 1)).astype(np.float32)
    hr = tf.tanh(tf.image.resize(coarse, (size, size), method="bicubic"))
    lr = degrade(hr, config.data.scale_hw)
    flops = step_gflops(config)
    references = {name: conv_gflops(name) for name in ("float32", "bfloat16")}
    rows = []
    for phase in phases:
        model.phase = phase
        model.make_train_function()
        start = time.perf_counter()
        for _ in range(warmup):
            float(model.train_function([(lr, hr)])["g_loss"])  # float(): wait for the step
        first = time.perf_counter() - start
        times, cpu_times = [], []
        for _ in range(steps):
            start, cpu_start = time.perf_counter(), time.process_time()
            float(model.train_function([(lr, hr)])["g_loss"])
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
        seconds, cpu_seconds = statistics.median(times), statistics.median(cpu_times)
        achieved = flops[phase] * BATCH / seconds
        achieved_idle = flops[phase] * BATCH / (cpu_seconds / os.cpu_count())
        same = "bfloat16" if "bfloat16" in precision else "float32"
        rows.append({
            "setting": setting, "phase": phase, "precision": precision, "jit_compile": jit,
            "batch": BATCH, "hr_size": size, "scale_hw": list(config.data.scale_hw),
            "images_per_s": round(BATCH / seconds, 3), "step_seconds": round(seconds, 3),
            "step_seconds_all": [round(t, 3) for t in times], "warmup_seconds": round(first, 1),
            # CPU time / cores: what the step would take on idle cores (other jobs share them).
            "step_cpu_seconds": round(cpu_seconds, 3),
            "images_per_s_idle_cores": round(BATCH / (cpu_seconds / os.cpu_count()), 3),
            "gflop_per_image": round(flops[phase], 2), "achieved_gflops": round(achieved, 1),
            "conv_gflops_float32": round(references["float32"][0], 1),
            "conv_gflops_bfloat16": round(references["bfloat16"][0], 1),
            "fraction_of_conv_float32": round(achieved / references["float32"][0], 3),
            "fraction_of_conv_same_precision": round(achieved / references[same][0], 3),
            "achieved_gflops_idle_cores": round(achieved_idle, 1),
            "conv_gflops_float32_idle_cores": round(references["float32"][1], 1),
            "conv_gflops_bfloat16_idle_cores": round(references["bfloat16"][1], 1),
            "fraction_of_conv_float32_idle_cores": round(achieved_idle / references["float32"][1], 3),
            "target_images_per_s": TARGETS.get((setting, phase)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        })
        if profile:
            rows[-1]["op_types_ms"] = op_times(
                lambda: float(model.train_function([(lr, hr)])["g_loss"]), profile)
    return rows


def _worker_main(args):
    rows = measure(args.setting, args.precision, args.jit == "on", args.phases.split(","),
                   args.steps, args.warmup, args.profile)
    print("ROWS" + json.dumps(rows))


def _ratios(rows) -> dict:
    """bfloat16 / float32 and jit / no-jit images/s, per setting and phase."""
    index = {(r["setting"], r["phase"], r["precision"], r["jit_compile"]): r["images_per_s"] for r in rows}
    ratios = {}
    for (setting, phase, precision, jit), speed in index.items():
        base = index.get((setting, phase, "float32", jit))
        if precision != "float32" and base:
            ratios[f"{setting}/{phase}/{precision}_vs_float32{'/jit' if jit else ''}"] = round(speed / base, 2)
        if jit and index.get((setting, phase, precision, False)):
            ratios[f"{setting}/{phase}/{precision}/jit_vs_nojit"] = round(speed / index[(setting, phase, precision, False)], 2)
    return ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", default="all", help=f"all or comma list of {', '.join(SETTINGS)}")
    parser.add_argument("--precision", default="float32,mixed_bfloat16",
                        help="comma list of float32, mixed_bfloat16")
    parser.add_argument("--jit", default="off", choices=("off", "on", "both"), help="XLA jit_compile")
    parser.add_argument("--steps", type=int, help="timed steps per phase, median reported "
                        f"(default {DEFAULT_STEPS})")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (tracing included)")
    parser.add_argument("--phases", default="pretrain,adversarial")
    parser.add_argument("--output", help="also write the JSON here")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="also trace one step with TensorFlow's profiler and print its N "
                             "most expensive op types")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker_main(args)

    settings = list(SETTINGS) if args.setting == "all" else args.setting.split(",")
    jits = {"off": ["off"], "on": ["on"], "both": ["off", "on"]}[args.jit]
    rows = []
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), environment.get("PYTHONPATH")]))
    for setting in settings:
        for precision in args.precision.split(","):
            for jit in jits:
                command = [sys.executable, os.path.abspath(__file__), "--worker", "--setting", setting,
                           "--precision", precision, "--jit", jit,
                           "--steps", str(args.steps or DEFAULT_STEPS.get(setting, 2)),
                           "--warmup", str(args.warmup), "--phases", args.phases,
                           "--profile", str(args.profile)]
                print(f"[bench_train] {setting} {precision} jit={jit} ...", file=sys.stderr, flush=True)
                result = subprocess.run(command, capture_output=True, text=True, env=environment)
                if result.returncode != 0 or "ROWS" not in result.stdout:
                    print(result.stderr[-3000:], file=sys.stderr)
                    rows.append({"setting": setting, "precision": precision, "jit_compile": jit == "on",
                                 "error": (result.stderr.strip().splitlines() or ["?"])[-1]})
                    continue
                for row in json.loads(result.stdout.split("ROWS", 1)[1]):
                    rows.append(row)
                    print(f"[bench_train]   {row['phase']:<11} {row['images_per_s']:7.2f} img/s "
                          f"({row['achieved_gflops']:.0f} GFLOP/s, {row['fraction_of_conv_same_precision']:.0%} "
                          f"of the conv at its precision, peak RSS {row['peak_rss_mb']:.0f} MB)", file=sys.stderr, flush=True)
                    for kind, ms, share in row.get("op_types_ms", []):
                        print(f"[bench_train]     {kind:<45} {ms:8.1f} ms  {share:5.1%}",
                              file=sys.stderr, flush=True)
    report = {"benchmark": "bench_train", "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "results": rows, "ratios": _ratios([r for r in rows if "error" not in r])}
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
