#!/usr/bin/env python3
"""The API server's own time for one status write of a MultiValueRecordSet, by CRD shape
and write verb, with an EndpointSlice write for comparison. A measurement, not a test.

    hack/testenv.sh up && hack/measure-status-write.py [WRITES] [ROUNDS]   # 200 5

Each variant writes a 10-value status (four conditions, one value flipping) WRITES times
in a row over one keep-alive connection, and reads the API server's
apiserver_request_duration_seconds for those writes before and after; the rounds
interleave the variants and the median round is printed. Variants:

- apply:           the CRD as generated, server-side apply (what the operator does);
- apply, map:      the same with conditions as a list map keyed by type (the schema
                   before 2026-12-01);
- apply, no schema: status as x-kubernetes-preserve-unknown-fields (for scale only);
- json patch:      the CRD as generated, a JSON patch replacing /status;
- EndpointSlice:   a PUT of an EndpointSlice with 10 endpoints, one flipping readiness
                   (what the EndpointSlice controller does; a built-in, protobuf type).

The variants with another CRD shape are installed as copies of the CRD under other API
groups (mvdns-measure-*.io), deleted at the end with their namespace.
"""

import http.client
import json
import os
import re
import ssl
import statistics
import sys
import time

import yaml  # python3-yaml (Debian) or PyYAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = os.path.join(ROOT, "target", "testenv")
NAMESPACE = "mvdns-measure"


class Api:
    def __init__(self):
        kubeconfig = open(os.path.join(ENV, "admin.kubeconfig")).read()
        self.token = re.search(r"token: (\S+)", kubeconfig).group(1)
        server = re.search(r"server: https://([^:]+):(\d+)", kubeconfig)
        context = ssl.create_default_context(cafile=os.path.join(ENV, "pki", "ca.crt"))
        self.conn = http.client.HTTPSConnection(server.group(1), int(server.group(2)), context=context)

    def call(self, method, path, body=None, content_type="application/json"):
        headers = {"Authorization": f"Bearer {self.token}"}
        if body is not None:
            headers["Content-Type"] = content_type
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def ok(self, method, path, body=None, content_type="application/json", allowed=(200, 201)):
        status, data = self.call(method, path, body, content_type)
        if status not in allowed:
            sys.exit(f"{method} {path}: {status} {data[:400]!r}")
        return json.loads(data) if data else None

    def request_seconds(self, resource, subresource):
        """Sum and count of apiserver_request_duration_seconds for writes of one resource."""
        _, text = self.call("GET", "/metrics")
        total = count = 0.0
        for line in text.decode().splitlines():
            if not line.startswith("apiserver_request_duration_seconds_"):
                continue
            if f'resource="{resource}"' not in line or f'subresource="{subresource}"' not in line:
                continue
            if not re.search(r'verb="(PATCH|APPLY|PUT|UPDATE)"', line):
                continue
            if line.startswith("apiserver_request_duration_seconds_sum"):
                total += float(line.split()[-1])
            elif line.startswith("apiserver_request_duration_seconds_count"):
                count += float(line.split()[-1])
        return total, count


def status(i):
    values = [{"value": f"10.1.0.{k}", "source": f"pod/web-{k}", "healthy": k != i % 10} for k in range(10)]
    conditions = [
        {"type": t, "status": s, "reason": r, "message": f"{t} {i % 2}", "observedGeneration": 1,
         "lastTransitionTime": "2026-12-01T12:00:00Z"}
        for t, s, r in [("Ready", "True", "Healthy"), ("Degraded", "True", "SomeUnhealthy"),
                        ("Conflict", "False", "NoConflict"), ("InvalidSpec", "False", "Valid")]
    ]
    return {"observedGeneration": 1, "healthyCount": 9, "totalCount": 10, "values": values, "conditions": conditions}


def crd_copy(group, change):
    crd = yaml.safe_load(open(os.path.join(ROOT, "crds", "mvdns.io_multivaluerecordsets.yaml")))
    crd["metadata"] = {"name": f"multivaluerecordsets.{group}"}
    crd["spec"]["group"] = group
    for version in crd["spec"]["versions"]:
        change(version)
    return crd


def conditions_as_map(version):
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]


def status_without_schema(version):
    props = version["schema"]["openAPIV3Schema"]["properties"]
    props["status"] = {"type": "object", "nullable": True, "x-kubernetes-preserve-unknown-fields": True}
    version.pop("additionalPrinterColumns", None)


class RecordSetWrites:
    def __init__(self, api, group, verb):
        self.api, self.group, self.verb = api, group, verb
        self.path = f"/apis/{group}/v1alpha1/namespaces/{NAMESPACE}/multivaluerecordsets/web"
        spec = {"name": f"web.{NAMESPACE}.example.internal.", "type": "A", "podSelector": {"matchLabels": {"app": "web"}}}
        body = {"apiVersion": f"{group}/v1alpha1", "kind": "MultiValueRecordSet", "metadata": {"name": "web"}, "spec": spec}
        api.ok("PATCH", f"{self.path}?fieldManager=measure&force=true", body, "application/apply-patch+yaml")

    def write(self, i):
        if self.verb == "apply":
            body = {"apiVersion": f"{self.group}/v1alpha1", "kind": "MultiValueRecordSet", "status": status(i)}
            self.api.ok("PATCH", f"{self.path}/status?fieldManager=mvdns-operator&force=true", body,
                        "application/apply-patch+yaml")
        else:
            patch = [{"op": "add", "path": "/status", "value": status(i)}]
            self.api.ok("PATCH", f"{self.path}/status?fieldManager=mvdns-operator", patch, "application/json-patch+json")

    def seconds(self):
        return self.api.request_seconds("multivaluerecordsets", "status")


class SliceWrites:
    def __init__(self, api):
        self.api = api
        self.path = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
        self.slice = self.api.ok("POST", self.path, self.body(0, None), allowed=(201,))

    def body(self, i, resource_version):
        endpoints = [{"addresses": [f"10.1.0.{k}"], "conditions": {"ready": k != i % 10},
                      "targetRef": {"kind": "Pod", "name": f"web-{k}", "namespace": NAMESPACE}} for k in range(10)]
        metadata = {"name": "web-x1", "labels": {"kubernetes.io/service-name": "web"}}
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": metadata,
                "addressType": "IPv4", "endpoints": endpoints, "ports": [{"name": "http", "port": 80}]}

    def write(self, i):
        version = self.slice["metadata"]["resourceVersion"]
        self.slice = self.api.ok("PUT", f"{self.path}/web-x1", self.body(i, version))

    def seconds(self):
        return self.api.request_seconds("endpointslices", "")


def main():
    writes = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    api = Api()
    api.ok("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}}, allowed=(201, 409))
    generated = yaml.safe_load(open(os.path.join(ROOT, "crds", "mvdns.io_multivaluerecordsets.yaml")))
    api.ok("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/multivaluerecordsets.mvdns.io"
           "?fieldManager=mvdns-measure&force=true", generated, "application/apply-patch+yaml")
    copies = {"mvdns-measure-map.io": conditions_as_map, "mvdns-measure-free.io": status_without_schema}
    print(f"installing the CRD and {len(copies)} copies of other shapes", flush=True)
    for group, change in copies.items():
        api.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd_copy(group, change),
               allowed=(201, 409))
    time.sleep(5)  # the copies' API groups are served a moment after creation
    variants = {
        "apply (the CRD as generated)": RecordSetWrites(api, "mvdns.io", "apply"),
        "apply, conditions as a map": RecordSetWrites(api, "mvdns-measure-map.io", "apply"),
        "apply, status without schema": RecordSetWrites(api, "mvdns-measure-free.io", "apply"),
        "json patch of /status": RecordSetWrites(api, "mvdns.io", "json"),
        "EndpointSlice PUT (built-in)": SliceWrites(api),
    }
    means = {name: [] for name in variants}
    for r in range(rounds):
        print(f"round {r + 1} of {rounds}: {len(variants)} variants x {writes} writes", flush=True)
        for name, variant in variants.items():
            for i in range(20):  # warm up caches and connections
                variant.write(i)
            total0, count0 = variant.seconds()
            for i in range(writes):
                variant.write(i)
            total1, count1 = variant.seconds()
            means[name].append((total1 - total0) / max(count1 - count0, 1) * 1000)
    print(f"\nAPI server time per write, ms (median of {rounds} rounds of {writes}; all rounds):")
    for name, values in means.items():
        print(f"  {name:32} {statistics.median(values):5.2f}   " + " ".join(f"{v:.2f}" for v in values))
    api.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
    for group in copies:
        api.call("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/multivaluerecordsets.{group}")


if __name__ == "__main__":
    main()
