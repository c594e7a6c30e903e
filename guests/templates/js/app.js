// {{ name }}: a Locker {{ kind }}.
//
// - `GET /` greets with its `greeting` setting;
// - `GET /call/SERVICE/PATH` asks another service (its manifest's `calls`
//   must name it);
// - `POST /publish/TOPIC` publishes `{}` on TOPIC and says what the host
//   answered (an undeclared topic is refused with a LockerError).
{%- if events %}
// - each `{{ name }}/ping` event is kept as `seen/ID.json` in its folder
//   (`GET /seen` lists them) and answered with a `{{ name }}/seen` event; a
//   payload `{"fail": true}` fails the handler, which the host retries and
//   then keeps as a dead letter.
{%- endif %}
{%- if jobs %}
// - the `tick` job publishes `{{ name }}/ticked`.
{%- endif %}
import { LockerError, call, config, files, onEvent, onJob, publishJson, serve } from 'locker-sdk';

serve(async (request) => {
  const path = new URL(request.url).pathname;
  if (path === '/') {
    return new Response(`${config.get('greeting') ?? 'Hello'} from {{ name }}\n`);
  }
  if (path === '/seen') {
    return new Response(files.list('seen').join('\n'));
  }
  if (path.startsWith('/call/')) {
    const [service, ...rest] = path.slice('/call/'.length).split('/');
    const answer = await call(service, `/${rest.join('/')}`);
    return new Response(await answer.text(), { status: answer.status });
  }
  if (request.method === 'POST' && path.startsWith('/publish/')) {
    try {
      const id = publishJson(path.slice('/publish/'.length), {});
      return new Response(`published ${id}\n`);
    } catch (e) {
      if (e instanceof LockerError) return new Response(`${e.code}\n`, { status: 400 });
      throw e;
    }
  }
  return new Response('no such page\n', { status: 404 });
});
{%- if events %}

export const eventHandler = onEvent((event) => {
  if (event.data.fail === true) {
    throw new Error(`event ${event.id} asked to fail`);
  }
  files.makeDir('seen');
  files.writeJson(`seen/${event.id}.json`, event.data);
  publishJson('{{ name }}/seen', { id: event.id, payload: event.data });
});
{%- endif %}
{%- if jobs %}

export const jobHandler = onJob((job) => {
  publishJson('{{ name }}/ticked', { job: job.name, scheduled: job.scheduled });
});
{%- endif %}
