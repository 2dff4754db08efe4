#!/usr/bin/env python3
"""A plain NATS client (nats-py, none of the driver's own code) driving dcos-driver.

For each request (create, resize, disable an instance in discovery, destroy) it:
  1. subscribes to a fresh inbox;
  2. sends the description on dcos.op.<account>.<operation> as a plain NATS request with the headers
     Nats-Msg-Id (idempotency key = task id) and Dcos-Reply-To (the inbox); JetStream captures the
     subject, so the reply is its publish ack, printed as it came;
  3. prints every task document that arrives on the inbox (one compact JSON line each) until the
     terminal one (SUCCEEDED, FAILED, REJECTED or UNSUPPORTED).

    pip install nats-py
    python3 scripts/nats-py-transcript.py --nats-url nats://127.0.0.1:4222 --account demo \
        --sim-url http://127.0.0.1:8080

The simulator URL is only read once, over its Marathon API, to pick an instance id to disable.
Exit code: 0 when every request ended SUCCEEDED, else 1.
"""

import argparse
import asyncio
import json
import sys
import urllib.request
import uuid

import nats

TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "UNSUPPORTED"}


def line(text):
    print(text, flush=True)


def compact(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def run_operation(nc, account, operation, description, task_id, timeout):
    """Publishes one request and prints its ack and its task documents; returns the terminal one."""
    subject = f"dcos.op.{account}.{operation}"
    inbox = nc.new_inbox()
    updates = await nc.subscribe(inbox)
    await nc.flush()
    headers = {"Nats-Msg-Id": task_id, "Dcos-Reply-To": inbox}
    payload = compact(description).encode()
    line(f">>> {subject}  Nats-Msg-Id: {task_id}  Dcos-Reply-To: {inbox}")
    line(f">>> {payload.decode()}")
    ack = await nc.request(subject, payload, timeout=5, headers=headers)
    line(f"<<< JetStream publish ack: {ack.data.decode()}")
    if "error" in json.loads(ack.data):
        raise SystemExit(f"JetStream did not store the request on {subject}")
    try:
        while True:
            message = await updates.next_msg(timeout=timeout)
            doc = json.loads(message.data)
            line(f"<<< {compact(doc)}")
            if doc.get("status") in TERMINAL:
                return doc
    finally:
        await updates.unsubscribe()


def first_instance(sim_url, app_id):
    with urllib.request.urlopen(f"{sim_url.rstrip('/')}/v2/apps{app_id}/tasks", timeout=10) as answer:
        return json.load(answer)["tasks"][0]["id"]


async def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--account", default="demo")
    parser.add_argument("--sim-url", required=True, help="Marathon (the simulator) base URL")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for each next document")
    args = parser.parse_args()

    nc = await nats.connect(args.nats_url, name="nats-py-transcript")
    run = uuid.uuid4().hex[:8]
    ok = True
    try:
        create = await run_operation(
            nc,
            args.account,
            "create_server_group",
            {
                "application": "pyclient",
                "stack": "web",
                "region": "",
                "desiredCapacity": 2,
                "cmd": "python3 -m http.server $PORT0",
                "cpus": 0.1,
                "mem": 64,
                "healthChecks": [
                    {"protocol": "MESOS_HTTP", "path": "/", "portIndex": 0, "gracePeriodSeconds": 3, "intervalSeconds": 5}
                ],
            },
            f"py-{run}-create",
            args.timeout,
        )
        ok &= create.get("status") == "SUCCEEDED"
        if not ok:
            return 1
        name = create["result"]["serverGroupName"]
        app_id = create["result"]["appId"]
        line("")

        resize = await run_operation(
            nc,
            args.account,
            "resize_server_group",
            {"serverGroupName": name, "region": "", "capacity": {"desired": 3}},
            f"py-{run}-resize",
            args.timeout,
        )
        ok &= resize.get("status") == "SUCCEEDED"
        line("")

        instance = first_instance(args.sim_url, app_id)
        disable = await run_operation(
            nc,
            args.account,
            "disable_instances_in_discovery",
            {"serverGroupName": name, "region": "", "instanceIds": [instance]},
            f"py-{run}-disable",
            args.timeout,
        )
        ok &= disable.get("status") == "SUCCEEDED"
        line("")

        destroy = await run_operation(
            nc,
            args.account,
            "destroy_server_group",
            {"serverGroupName": name, "region": ""},
            f"py-{run}-destroy",
            args.timeout,
        )
        ok &= destroy.get("status") == "SUCCEEDED"
    finally:
        await nc.drain()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
