// A Locker app in JavaScript: a standard `wasi:http` proxy component built
// with componentize-js. The host passes the path below the service's prefix
// and the prefix itself in `x-forwarded-prefix`.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === "POST" && url.pathname === "/echo") {
    const body = await request.text();
    return new Response(body, { headers: { "content-type": "text/plain" } });
  }
  const prefix = request.headers.get("x-forwarded-prefix") ?? "";
  return new Response(`hello from javascript at ${prefix}${url.pathname}\n`, {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
