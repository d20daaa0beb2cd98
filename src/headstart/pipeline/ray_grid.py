"""The unit grid on a Ray cluster (--executor ray).

    done = run_ray(ctx, todo, worker, unit_line)      # UnitResults, one per task, as they finish

Where: the cluster at RAY_ADDRESS (`ray start --head` on one machine, `ray start --address=<head>:6379` on the
others), else a local Ray instance on this machine. Storage: every node must see the run folder, the data and the
feature cache at the same paths (a shared file system: NFS, a cloud bucket mounted with FUSE, Lustre); units
write their own folders there and nothing travels through Ray but the config and the small UnitResult. A node that
does not see the run folder fails its unit with a message that says so.
Resources: a unit that trains a network asks for a GPU when the cluster has any (units queue for them), and for
the cluster's CPUs shared out over the units that run at once (at most one node's worth; its torch threads match);
probe and scikit-learn units ask for one CPU.
Failures: a unit whose worker process dies (killed, out of memory, node lost) is retried up to RETRIES times by
Ray; result.json is still the commit point, so a retried unit is never half-written and a finished one never runs
twice. An error inside an arm is recorded in its result as on one machine.
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from headstart.core.errors import UserError
from headstart.pipeline.state import RunContext
from headstart.pipeline.units import RUNNING
from headstart.training.strategies import STRATEGIES

RETRIES = 3


def unit_resources(strategy: str, cpus: int, node_cpus: int, gpus: int, parallel: int) -> tuple[int, int]:
    """(num_cpus, num_gpus) one unit asks Ray for."""
    if not STRATEGIES[strategy].trains_network:
        return 1, 0
    return max(1, min(node_cpus, cpus // max(1, parallel))), (1 if gpus else 0)


def _ray_unit(cfg_dict: dict, task, threads: int, run_dir: str, folder: str, worker):
    """One unit inside a Ray worker: (UnitResult, whether an earlier attempt died in it). folder: the unit's."""
    import torch
    if not Path(run_dir).is_dir():
        raise UserError(f"node {socket.gethostname()} does not see the run folder {run_dir}: --executor ray needs "
                        "the run folder, the data and the cache on storage every node mounts at the same path")
    torch.set_num_threads(threads)
    retried = (Path(folder) / RUNNING).exists()
    return worker(cfg_dict, task), retried


def run_ray(ctx: RunContext, todo: list, worker, line, folder_of) -> tuple[list, int]:
    """Run the tasks on the cluster; (UnitResults in the order they finished, units retried after a dead worker).
    worker(cfg_dict, task) runs one unit; line(task, result, k, n) says it finished; folder_of(task): its folder."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'headstart[ray]' (or pip install ray), then "
                        "start or connect to a cluster (ray start --head, or RAY_ADDRESS=...)") from None
    where = os.environ.get("RAY_ADDRESS") or "a local Ray instance on this machine"
    try:
        ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                 runtime_env={"env_vars": {"HEADSTART_CACHE": str(ctx.cache_dir)}})
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise UserError(f"could not connect to the Ray cluster at {where} ({str(e).splitlines()[0][:160]}); start "
                        "one with `ray start --head` and set RAY_ADDRESS, or unset RAY_ADDRESS for a local one") from None
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus = int(ray.cluster_resources().get("CPU", 1))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    node_cpus = max(int(n.get("Resources", {}).get("CPU", 1)) for n in nodes) if nodes else cpus
    heavy = sum(1 for _, s, _ in todo if STRATEGIES[s].trains_network)
    ctx.log(f"ray: {len(todo)} unit(s) on {where}: {len(nodes)} node(s), {cpus} CPU(s), {gpus} GPU(s); a "
            f"network unit asks for {unit_resources('scratch', cpus, node_cpus, gpus, heavy)[0]} CPU(s)"
            + (" and 1 GPU" if gpus else "") + f", a dead worker's unit is retried up to {RETRIES} times")
    remote = ray.remote(_ray_unit)
    refs = {}
    cfg_dict = ctx.cfg.to_dict()
    for t in todo:
        c, g = unit_resources(t[1], cpus, node_cpus, gpus, heavy)
        ref = remote.options(num_cpus=c, num_gpus=g, max_retries=RETRIES, retry_exceptions=False).remote(
            cfg_dict, t, c, str(ctx.run_dir), str(folder_of(t)), worker)
        refs[ref] = t
    done, retried, lost = [], 0, []
    pending = list(refs)
    t0 = time.perf_counter()
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for ref in ready:
            try:
                res, again = ray.get(ref)
            except ray.exceptions.RayTaskError as e:      # an exception inside the task: a UserError, say
                cause = getattr(e, "cause", None)
                if isinstance(cause, UserError):
                    raise UserError(str(cause)) from None
                raise
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RayError) as e:
                lost.append(refs[ref])
                ctx.log(f"unit {refs[ref][1]} seed {refs[ref][2]}: its worker died {RETRIES + 1} times "
                        f"({type(e).__name__}); not finished")
                continue
            done.append(res)
            retried += int(again)
            ctx.log(line(refs[ref], res, len(done), len(todo)) + (" after a dead worker" if again else "")
                    + f" [{time.perf_counter() - t0:.0f} s]")
    if lost:
        raise UserError(f"{len(lost)} unit(s) did not finish on the cluster (their workers kept dying: out of memory "
                        "on a node?); the others are saved: run the same command again to resume them")
    return done, retried
