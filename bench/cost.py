"""Cost model: $ per 1,000 images on EMR Serverless from the measured vCPU-seconds per image.

EMR Serverless bills the vCPU-hours and memory GB-hours of the workers from start to end of a job run
(per second, one-minute minimum per worker; AWS EMR Serverless User Guide, "Other considerations";
``billedResourceUtilization`` of ``GetJobRun``). For a worker of ``v`` vCPU and ``m`` GB featurizing at the
measured rate, the cost per image is ``s * (p_vcpu + (m / v) * p_gb) / 3600`` with ``s`` the billed
vCPU-seconds per image (allocated cores x wall seconds / images).

Prices (USD, on-demand):
* x86_64, eu-west-3 (Paris): 0.06318 per vCPU-hour, 0.00689 per GB-hour, 0.000129 per storage GB-hour — from the
  price list generated from https://aws.amazon.com/emr/pricing in GoogleCloudPlatform/PerfKitBenchmarker,
  ``perfkitbenchmarker/providers/aws/aws_dpb_emr_serverless_prices.py`` (commit 441d2f9), read 2026-11-22.
  (Same list: us-east-1 / eu-west-1 0.052624 and 0.0057785.)
* ARM64 (Graviton), eu-west-3: not found in the reachable sources; derived as x86 x 0.80, AWS's stated
  "20% lower cost than the x86 architecture option" (AWS Big Data Blog, "Achieve up to 27% better
  price-performance for Spark workloads with AWS Graviton2 on Amazon EMR Serverless", 2023), i.e.
  0.050544 per vCPU-hour and 0.005512 per GB-hour. Check the pricing page before quoting.

The per-vCPU throughput measured on this machine (x86) is applied to both architectures: Graviton throughput
for ResNet50 was not measured here.
"""

from __future__ import annotations

from typing import Any

PRICE_SOURCE = ("x86: aws.amazon.com/emr/pricing via GoogleCloudPlatform/PerfKitBenchmarker "
                "aws_dpb_emr_serverless_prices.py (commit 441d2f9), read 2026-11-22; "
                "ARM64: x86 x 0.80 per AWS Big Data Blog (Graviton2 on EMR Serverless, 2023)")
ARM_DISCOUNT = 0.80
PRICES_USD: dict[str, dict[str, float]] = {
    "x86_64": {"vcpu_hour": 0.06318, "gb_hour": 0.00689},
    "arm64": {"vcpu_hour": round(0.06318 * ARM_DISCOUNT, 6), "gb_hour": round(0.00689 * ARM_DISCOUNT, 6)},
}
REGION = "eu-west-3"
# Worker shape assumed: 4 vCPU / 16 GB (EMR Serverless Spark defaults: 4 cores and 14 GB + overhead per
# executor, EMR Serverless User Guide "Spark job properties"), i.e. 4 GB billed per vCPU.
WORKER_VCPU = 4
WORKER_MEMORY_GB = 16


def cost_per_1000_images(vcpu_seconds_per_image: float, vcpu_hour: float, gb_hour: float,
                         gb_per_vcpu: float = WORKER_MEMORY_GB / WORKER_VCPU) -> float:
    """USD for 1,000 images: ``1000 * s * (vcpu_hour + gb_per_vcpu * gb_hour) / 3600`` (module doc).

    Raises:
        ValueError: negative inputs.
    """
    if min(vcpu_seconds_per_image, vcpu_hour, gb_hour, gb_per_vcpu) < 0:
        raise ValueError("cost inputs must be non-negative")
    return 1000.0 * vcpu_seconds_per_image * (vcpu_hour + gb_per_vcpu * gb_hour) / 3600.0


def cost_model(arms: dict[str, float], cores: int) -> dict[str, Any]:
    """Price each measured arm (name -> images/s on ``cores`` allocated vCPUs) on both architectures.

    Returns a JSON-ready dict: inputs (prices, source, worker shape) and, per arm, vCPU-seconds per image and
    USD per 1,000 images for ``x86_64`` and ``arm64``.
    """
    rows = {}
    for name, images_per_s in arms.items():
        if not images_per_s:
            continue
        vcpu_s = cores / images_per_s
        rows[name] = {
            "images_per_s": images_per_s,
            "vcpu_seconds_per_image": round(vcpu_s, 4),
            "usd_per_1000_images": {arch: round(cost_per_1000_images(vcpu_s, p["vcpu_hour"], p["gb_hour"]), 4)
                                    for arch, p in PRICES_USD.items()},
        }
    return {
        "region": REGION,
        "prices_usd": PRICES_USD,
        "price_source": PRICE_SOURCE,
        "worker": {"vcpu": WORKER_VCPU, "memory_gb": WORKER_MEMORY_GB},
        "allocated_vcpus_measured": cores,
        "assumption": "per-vCPU throughput of this x86 machine applied to both architectures; steady state, "
                      "excludes job start-up and the one-minute minimum per worker",
        "arms": rows,
    }


def run(cfg: Any, throughput: dict[str, Any], faster: dict[str, Any] | None = None) -> dict[str, Any]:
    """Price the measured arms (job at 224, job at the native size, the two TF arms); write ``cost.json``."""
    from bench.common import machine_info, write_result
    from bench.report import summary_row

    arms = throughput["arms"]
    measured = {
        "Spark job, 224 (c)": arms["c_spark_job"]["images_per_s"],
        "TF ceiling, 224 (a)": arms["a_ceiling"]["images_per_s"],
        "seed per-image predict, 224 (b)": arms["b_seed"]["images_per_s"],
    }
    if faster:
        measured[f"Spark job, {faster['native_size']['image_size']} (opt-in)"] = (
            faster["native_size"]["spark_job"]["images_per_s"])
        if "spark_job" in faster.get("bf16", {}):  # results written before the bf16 job arm existed lack it
            measured["Spark job, 224 bf16 (opt-in)"] = faster["bf16"]["spark_job"]["images_per_s"]
    cores = int(machine_info()["cores"])
    model = cost_model(measured, cores)
    rows = []
    for name, row in model["arms"].items():
        usd = row["usd_per_1000_images"]
        rows.append(summary_row(f"{name}: $ / 1,000 images x86_64 | arm64", f"{usd['x86_64']:.4f} | {usd['arm64']:.4f}",
                                "USD", note=f"{row['vcpu_seconds_per_image']} vCPU-s/image"))
    # fixed cost of one job run, whatever its size: the warm-up job (a near-empty batch on cold workers) holds
    # start-up (JVM, Python workers, TF import, model build) and the per-batch stages of a tiny batch. The job's
    # other stages grow with the images (PCA statistics O(n d^2), writes O(n)) and are already in the per-image
    # rate of (c): adding them here again would count them twice.
    startup_s = float(arms["c_warmup_job"]["seconds"])
    fixed_vcpu_s = startup_s * cores
    fixed_usd = {arch: round(cost_per_1000_images(fixed_vcpu_s, p["vcpu_hour"], p["gb_hour"]) / 1000, 5)
                 for arch, p in PRICES_USD.items()}
    rows.append(summary_row("fixed cost per job run, x86_64 | arm64", f"{fixed_usd['x86_64']:.5f} | "
                            f"{fixed_usd['arm64']:.5f}", "USD",
                            note=f"{startup_s:.1f} s warm-up job ({arms['c_warmup_job']['images']} images, cold "
                                 f"workers) x {cores} vCPU measured locally; EMR Serverless also bills >= 1 minute "
                                 "per worker"))
    model["fixed_per_job_run"] = {"warmup_job_seconds": startup_s, "vcpu_seconds": round(fixed_vcpu_s, 2),
                                  "usd": fixed_usd}
    x86, arm = PRICES_USD["x86_64"], PRICES_USD["arm64"]
    doc = {
        "description": f"{REGION} on-demand prices: x86_64 ${x86['vcpu_hour']}/vCPU-h + ${x86['gb_hour']}/GB-h, "
                       f"arm64 ${arm['vcpu_hour']}/vCPU-h + ${arm['gb_hour']}/GB-h; "
                       f"{WORKER_MEMORY_GB // WORKER_VCPU} GB billed per vCPU; "
                       "vCPU-s/image = allocated cores / measured images/s.",
        "summary": rows,
        **model,
        "notes": [f"Price source: {PRICE_SOURCE}.", model["assumption"] + "."],
    }
    write_result("cost", doc, cfg.results_dir)
    return doc
