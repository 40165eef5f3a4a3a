// Validate the custom resources in Kubernetes YAML files against their CRD schemas (offline once installed).
//   node validate.mjs FILE...   → one JSON line per custom resource; exit 1 if any is invalid.
// The schemas are Strimzi's and the Prometheus Operator's own CRDs, compiled by @kubernetes-models (pinned in
// package.json / package-lock.json). Built-in kinds are left to kubernetes-validate (tests/unit/test_deploy.py).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const PACKAGES = {
  "kafka.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
  "core.strimzi.io": "@kubernetes-models/strimzi-kafka-operator",
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

let failed = false;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    const resource = doc.toJS();
    if (!resource || !resource.apiVersion || !resource.apiVersion.includes("/")) continue;
    const [group, version] = resource.apiVersion.split("/");
    const pkg = PACKAGES[group];
    if (!pkg) continue;
    const result = { file, apiVersion: resource.apiVersion, kind: resource.kind, name: resource.metadata?.name };
    try {
      const module = await import(`${pkg}/${group}/${version}/${resource.kind}`);
      new module[resource.kind](resource).validate();
      result.ok = true;
    } catch (error) {
      result.ok = false;
      result.error = String(error.message ?? error).slice(0, 2000);
      failed = true;
    }
    console.log(JSON.stringify(result));
  }
}
process.exit(failed ? 1 : 0);
