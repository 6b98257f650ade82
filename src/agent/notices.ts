// What the operator hears when a fact that keeps this node from standing
// changes: the kube-apiserver gate opening or closing, an operator draining
// the node. Each change is said once, with its gauge; the slots act on the
// facts themselves.
import type { GateChange } from "../health/gate.ts";
import type { VipdMetrics } from "../health/vipd-metrics.ts";
import type { Logger } from "../log.ts";

export class Notices {
  #drained: string | null = null;

  constructor(private readonly d: { readonly log: Logger; readonly metrics: VipdMetrics; readonly node: () => string }) {}

  /** The gate changed: says so. Its result: whether the gate opened or closed (not only its reason changed). */
  gate(c: GateChange): boolean {
    const { log, metrics } = this.d;
    metrics.gate(c.open);
    // A new kind of failure while closed (a wrong CA after "not ready yet")
    // is news to the operator; a changed reason while open is not.
    if (c.kind === "reason") {
      if (c.open) log.debug("kube-apiserver gate", { reason: c.reason });
      else log.warn("kube-apiserver gate still closed", { reason: c.reason });
      return false;
    }
    const fields = { node: this.d.node(), reason: c.reason };
    if (c.open) log.info("kube-apiserver gate opened", fields);
    else log.warn("kube-apiserver gate closed", fields);
    return true;
  }

  /** What etcd says of this node's drain now (why, or null), once the session is ready: said when it changes. */
  drain(drained: string | null): void {
    if (drained === this.#drained) return;
    const node = this.d.node();
    if (drained) this.d.log.info("this node is drained: standing for no VIP until `vipd undrain`", { node, reason: drained });
    else if (this.#drained) this.d.log.info("this node is no longer drained: standing for its VIPs again", { node });
    this.#drained = drained;
    this.d.metrics.drained(drained !== null);
  }
}
