// A Locker app in JavaScript that handles `wasi:http` directly instead of
// through a `fetch` event listener. StarlingMonkey's fetch event serves one
// request per instance (bytecodealliance/StarlingMonkey#247); a handler
// written against `wasi:http/incoming-handler` serves many, so this service
// can opt into instance reuse.
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from "wasi:http/types@0.2.10";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const incomingHandler = {
  handle(request, responseOut) {
    const path = (request.pathWithQuery() ?? "/").split("?")[0];
    const caller = request.headers().get("x-locker-caller");
    const to = caller.length ? decoder.decode(caller[0]) : "";
    const text = `hello from javascript at ${path}, to ${to}\n`;
    const headers = Fields.fromList([
      ["content-type", encoder.encode("text/plain; charset=utf-8")],
    ]);
    const response = new OutgoingResponse(headers);
    response.setStatusCode(200);
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: "ok", val: response });
    const stream = body.write();
    stream.blockingWriteAndFlush(encoder.encode(text));
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
