//! The connector's page for the owner: which server, how the last sync
//! went, a "Sync now" button, and the contacts it keeps.

use crate::folder;

pub fn render() -> String {
    let state = folder::load_state().unwrap_or_default();
    let contacts = folder::all_contacts();
    let server = locker_sdk::config::get("server")
        .ok()
        .flatten()
        .unwrap_or_default();
    let last_sync = match &state.last_sync {
        None => "never yet".to_string(),
        Some(report) => match &report.error {
            Some(error) => format!(
                "<span class=bad>failed at {}: {}</span> (the contacts below are as the last good sync left them)",
                escape(&report.finished),
                escape(error)
            ),
            None => format!(
                "{}: {} changed, {} deleted, {} requests",
                escape(&report.finished),
                report.changed,
                report.deleted,
                report.requests
            ),
        },
    };
    let rows: String = contacts
        .iter()
        .map(|card| {
            format!(
                "<li><b>{}</b> <span>{}</span></li>",
                escape(&card.name),
                escape(
                    &card
                        .emails
                        .iter()
                        .chain(&card.phones)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" · ")
                )
            )
        })
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CardDAV contacts</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.4rem; margin-bottom: .2rem; }}
.meta {{ color: #555; }} .bad {{ color: #b00020; }}
button {{ font: inherit; padding: .35rem .9rem; border-radius: 6px; border: 1px solid #888; background: #f4f4f4; cursor: pointer; }}
ul {{ padding: 0; list-style: none; }} li {{ padding: .45rem 0; border-bottom: 1px solid #eee; }}
li span {{ color: #666; margin-left: .5rem; }}
</style></head><body>
<h1>CardDAV contacts</h1>
<p class="meta">From <code>{server}</code> · <span id="count">{count}</span> contacts · last sync: {last_sync}</p>
<p><button id="sync">Sync now</button> <span id="result" class="meta"></span></p>
<ul id="contacts">{rows}</ul>
<script>
document.getElementById('sync').onclick = async () => {{
  const result = document.getElementById('result');
  result.textContent = 'syncing…';
  const answer = await (await fetch('/sync', {{ method: 'POST' }})).json();
  result.textContent = answer.error ? 'failed: ' + answer.error
    : `${{answer.changed}} changed, ${{answer.deleted}} deleted`;
  if (!answer.error) setTimeout(() => location.reload(), 800);
}};
</script>
</body></html>"#,
        server = escape(&server),
        count = contacts.len(),
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
