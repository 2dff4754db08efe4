#!/usr/bin/env python3
"""The truth side by side: the simulator's tasks (Marathon REST) and the discovery KV `dcos_instances`.

Used by scripts/discovery-transcript.sh. Reads, with nothing of the driver's own code:
  - the simulator: `GET /v2/apps` (which apps have health checks) and `GET /v2/tasks` (state, health);
  - NATS: every document of KV `dcos_instances` and `dcos_overlays` for the account (nats-py).

For each live task it derives the discovery state a correct feed must show:
  TASK_STAGING / TASK_STARTING                               → STARTING
  TASK_RUNNING, health checks, no result yet                 → STARTING
  TASK_RUNNING, every result alive (or no health checks)     → UP (OUT_OF_SERVICE under a disable overlay)
  TASK_RUNNING, a result not alive / TASK_KILLING            → DOWN
  TASK_UNREACHABLE / TASK_UNKNOWN / TASK_LOST                → UNKNOWN
and compares it with the KV document of the same instance (same task id). A KV document whose instance
has no live task any more must be DOWN (ended instances stay in KV for 10 minutes, then are deleted).

    python3 scripts/discovery-truth.py --nats-url nats://127.0.0.1:4222 --sim-url http://127.0.0.1:8080 \
        --account demo [--wait 30] [--quiet]

Exit code 0 when they agree, 1 when not (after --wait seconds of retrying, if given).
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.request

import nats

INSTANCES = "dcos_instances"
OVERLAYS = "dcos_overlays"


def get(url):
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def instance_of(task_id):
    """Marathon's instance id of a task id (`<instance id>._app.<n>`; legacy ids are their own)."""
    return task_id.split("._app.")[0] if "._app." in task_id else task_id


def marathon_app_path(account_root):
    return account_root.rstrip("/")


async def kv_documents(nc, bucket, account):
    js = nc.jetstream()
    try:
        kv = await js.key_value(bucket)
    except Exception:
        return {}
    try:
        keys = await kv.keys()
    except Exception:  # nats-py raises NoKeysError on an empty bucket
        return {}
    out = {}
    for key in keys:
        try:
            entry = await kv.get(key)
        except Exception:
            continue
        if not entry.value:
            continue
        doc = json.loads(entry.value)
        if doc.get("account") == account:
            out[key] = doc
    return out


def expected_state(task, health_checked, disabled):
    state = task.get("state", "")
    results = task.get("healthCheckResults") or []
    if state in ("TASK_STAGING", "TASK_STARTING"):
        return "STARTING"
    if state == "TASK_RUNNING":
        if health_checked and not results:
            return "STARTING"
        if any(not r.get("alive", False) for r in results):
            return "DOWN"
        return "OUT_OF_SERVICE" if disabled else "UP"
    if state in ("TASK_UNREACHABLE", "TASK_UNKNOWN", "TASK_LOST"):
        return "UNKNOWN"
    return "DOWN"


def health_text(task, health_checked):
    results = task.get("healthCheckResults") or []
    if not health_checked:
        return "-"
    if not results:
        return "pending"
    return "healthy" if all(r.get("alive") for r in results) else "UNHEALTHY"


async def compare(args):
    nc = await nats.connect(args.nats_url, connect_timeout=5, allow_reconnect=False)
    try:
        docs = await kv_documents(nc, INSTANCES, args.account)
        overlays = await kv_documents(nc, OVERLAYS, args.account)
    finally:
        await nc.close()
    apps = get(f"{args.sim_url}/v2/apps")["apps"]
    root = args.root.rstrip("/") + "/"
    checked = {a["id"]: bool(a.get("healthChecks")) for a in apps if a["id"].startswith(root)}
    tasks = [t for t in get(f"{args.sim_url}/v2/tasks")["tasks"] if t.get("appId") in checked]

    disabled_apps = {o["appId"] for o in overlays.values() if o.get("disabled") and not o.get("instanceId")}
    disabled_instances = {instance_of(o["instanceId"]) for o in overlays.values()
                          if o.get("disabled") and o.get("instanceId")}
    by_instance = {d["instanceId"]: d for d in docs.values()}

    rows = []
    agree = True
    seen = set()
    for task in sorted(tasks, key=lambda t: (t["appId"], t["id"])):
        inst = instance_of(task["id"])
        seen.add(inst)
        disabled = inst in disabled_instances or task["appId"] in disabled_apps
        want = expected_state(task, checked[task["appId"]], disabled)
        doc = by_instance.get(inst)
        if doc is None:
            got, verdict = "(no document)", "MISSING"
        else:
            got = f'{doc["state"]} ({doc["reason"]})'
            if doc["state"] != want:
                verdict = f"WANT {want}"
            elif doc.get("taskId") and doc["taskId"] != task["id"]:
                verdict = f'STALE TASK {doc["taskId"]}'
            else:
                verdict = "ok"
        agree &= verdict == "ok"
        rows.append((inst, task["state"], health_text(task, checked[task["appId"]]), got, verdict))
    for inst, doc in sorted(by_instance.items()):
        if inst in seen:
            continue
        got = f'{doc["state"]} ({doc["reason"]})'
        verdict = "ok (ended)" if doc["state"] == "DOWN" else "WANT DOWN (no live task)"
        agree &= verdict.startswith("ok")
        rows.append((inst, "(gone)", "-", got, verdict))
    return rows, agree, len(tasks), len(docs), overlays


def print_table(rows, n_tasks, n_docs, overlays, agree):
    width = max([len("instance")] + [len(r[0]) for r in rows])
    head = f'  {"instance":<{width}}  {"simulator task":<16} {"health":<9} | {"discovery KV (reason)":<26} verdict'
    print(head)
    print("  " + "-" * (len(head) - 2))
    for inst, state, health, got, verdict in rows:
        print(f"  {inst:<{width}}  {state:<16} {health:<9} | {got:<26} {verdict}")
    print(f"  simulator: {n_tasks} live task(s); dcos_instances: {n_docs} document(s); "
          f"dcos_overlays: {sum(1 for o in overlays.values() if o.get('disabled'))} disabled")
    print("  VERDICT: the simulator and the discovery KV AGREE" if agree
          else "  VERDICT: the simulator and the discovery KV DISAGREE")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--sim-url", default="http://127.0.0.1:8080")
    parser.add_argument("--account", default="demo")
    parser.add_argument("--root", default="/demo", help="the account's root group")
    parser.add_argument("--wait", type=float, default=0, help="retry this long until they agree")
    parser.add_argument("--quiet", action="store_true", help="print only the final verdict line")
    args = parser.parse_args()

    deadline = time.monotonic() + args.wait
    started = time.monotonic()
    while True:
        rows, agree, n_tasks, n_docs, overlays = asyncio.run(compare(args))
        if agree or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if args.quiet:
        waited = time.monotonic() - started
        print(f"  {'AGREE' if agree else 'DISAGREE'} after {waited:.1f} s "
              f"({n_tasks} live task(s), {n_docs} KV document(s))")
        sys.stdout.flush()
    else:
        print_table(rows, n_tasks, n_docs, overlays, agree)
    sys.exit(0 if agree else 1)


if __name__ == "__main__":
    main()
