// A Locker app in JavaScript: a standard `wasi:http` proxy component built
// with componentize-js. The service has its own origin, so it sees its paths
// from `/`; the host says who is calling in `x-locker-caller`.
addEventListener("fetch", (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === "POST" && url.pathname === "/echo") {
    const body = await request.text();
    return new Response(body, { headers: { "content-type": "text/plain" } });
  }
  const caller = request.headers.get("x-locker-caller") ?? "";
  return new Response(`hello from javascript at ${url.pathname}, to ${caller}\n`, {
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}
