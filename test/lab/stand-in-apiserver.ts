// A stand-in kube-apiserver for the lab: started inside a node's namespace, it
// answers on :6443 (every address of the namespace, so also the VIP while the
// node holds it) with
//   GET /         → the node name, so the client can tell who answered;
//   GET /readyz   → 200 "ok", or 500 while switched to failing;
//   PUT /lab/ready/{true|false} → switches /readyz (from inside the namespace).
// SIGUSR1 switches /readyz to 500, SIGUSR2 back to 200: the lab can flip it
// without a network path. With CERT and KEY it speaks HTTPS, as a real one does
// (the lab gives it kubeadm's apiserver.crt and .key: lab/certs.ts).
// Usage: bun stand-in-apiserver.ts NODE [PORT [CERT KEY]]
const node = process.argv[2];
const port = Number(process.argv[3] ?? 6443);
const [cert, key] = process.argv.slice(4);
if (!node || Boolean(cert) !== Boolean(key)) {
  console.error("usage: stand-in-apiserver.ts NODE [PORT [CERT KEY]]");
  process.exit(2);
}

let ready = true;
process.on("SIGUSR1", () => (ready = false));
process.on("SIGUSR2", () => (ready = true));
process.on("SIGTERM", () => process.exit(0));

Bun.serve({
  hostname: "::",
  port,
  ...(cert && key ? { tls: { cert: Bun.file(cert), key: Bun.file(key) } } : {}),
  fetch(req) {
    const path = new URL(req.url).pathname;
    if (req.method === "GET" && path === "/") return new Response(node, { headers: { connection: "close" } });
    if (req.method === "GET" && (path === "/readyz" || path === "/livez" || path === "/healthz")) {
      return new Response(ready ? "ok" : "not ready (lab switch)", { status: ready ? 200 : 500 });
    }
    const m = /^\/lab\/ready\/(true|false)$/.exec(path);
    if (req.method === "PUT" && m) {
      ready = m[1] === "true";
      return new Response(String(ready));
    }
    return new Response("not found", { status: 404 });
  },
});
console.log(`stand-in apiserver for ${node} on :${port}${cert ? " (HTTPS)" : ""}`);
